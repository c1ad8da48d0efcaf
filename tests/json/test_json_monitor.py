"""The collector-backed commands: status, workers, queues, jobs, job,
result, watch, health, top. Their --json against docs/json/, their exit
codes and JSON errors, and the collector's HTTP status codes."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Dict, Tuple

import pytest

from conftest import Cluster, free_port, validate

NOBODY = "01a20494-0000-7000-8000-000000000000"  # well-formed, no such job


def submit(cluster: Cluster, *args: str) -> str:
    r = cluster.run("submit", *args)
    assert r.rc == 0, r.err
    return r.out.split()[0]


def job_json(cluster: Cluster, jid: str) -> Dict[str, Any]:
    r = cluster.run("job", jid, "--json")
    assert r.rc == 0, r.err
    return r.json()


def ended(cluster: Cluster, jid: str, state: str) -> Dict[str, Any]:
    """The job's --json once the collector shows it in state."""
    def check():
        r = cluster.run("job", jid, "--json")
        return r.json() if r.rc == 0 and r.json()["state"] == state else None
    return cluster.wait_for(check, f"job {jid} is {state}")


def http(cluster: Cluster, path: str) -> Tuple[int, Any]:
    url = f"http://127.0.0.1:{cluster.http_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def jobs(cluster: Cluster) -> Dict[str, str]:
    """An echo job that succeeded, one that timed out twice and died, a batch of three echo jobs; the queue mon-limited paused and
    limited."""
    ok = submit(cluster, "--type", "echo", "--queue", "default",
                "--payload", '{"v": 1}')
    # a timeout is retryable: two attempts, then dead
    bad = submit(cluster, "--type", "sleep", "--queue", "default",
                 "--timeout", "0.3", "--max-attempts", "2",
                 "--backoff-base", "0.1", "--no-jitter")
    for _ in range(3):
        submit(cluster, "--type", "echo", "--queue", "default", "--batch", "mon-b")
    assert cluster.run("pause", "--create", "mon-limited-queue-with-a-long-name").rc == 0
    assert cluster.run("limit", "mon-limited-queue-with-a-long-name",
                       "--rate", "2.5", "--max-running", "3").rc == 0
    ended(cluster, ok, "succeeded")
    ended(cluster, bad, "dead")
    return {"ok": ok, "bad": bad}


# ---- status ------------------------------------------------------------------

def test_status(cluster: Cluster, jobs: Dict[str, str]) -> None:
    name = "mon-limited-queue-with-a-long-name"

    def limited():
        r = cluster.run("status", "--json")
        assert r.rc == 0, r.err
        doc = r.json()
        q = [q for q in doc["queues"] if q["name"] == name]
        return doc if q and q[0]["max_running"] == 3 else None
    doc = cluster.wait_for(limited, "status shows the queue's limits")
    validate(doc, "status")
    assert doc["source"] == "collector" and doc["note"] is None
    q = [q for q in doc["queues"] if q["name"] == name][0]
    assert q["paused"] is True and q["rate_limit"] == 2.5
    r = cluster.run("status")
    assert r.rc == 0
    assert "STATE" in r.out and "RATE LIMIT" in r.out and "MAX RUNNING" in r.out
    line = [ln for ln in r.out.splitlines() if ln.startswith("mon-limited")][0]
    assert "…" in line and "paused" in line and "2.5/s" in line
    assert name in cluster.run("status", "--wide").out


def test_status_without_collector(cluster: Cluster, jobs: Dict[str, str]) -> None:
    down = f"tcp://127.0.0.1:{free_port()}"
    r = cluster.run("status", "--json", "--collector", down)
    assert r.rc == 0, r.err
    doc = r.json()
    validate(doc, "status")
    assert doc["source"] == "broker" and doc["collector"] is None
    assert doc["health"] is None and "collector" in doc["note"]
    assert any(q["name"] == "default" for q in doc["queues"])
    r = cluster.run("status", "--collector", down)
    assert r.rc == 0 and "broker's own view" in r.err
    r = cluster.run("status", "--json", "--collector", down,
                    "--broker", f"tcp://127.0.0.1:{free_port()}")
    assert r.rc == 3 and r.out == ""
    assert r.error()["code"] == "unreachable"


# ---- listings ----------------------------------------------------------------

def test_workers(cluster: Cluster) -> None:
    r = cluster.run("workers", "--json")
    assert r.rc == 0
    validate(r.json(), "workers")
    out = cluster.run("workers").out
    assert "json-worker" in out and "LAST SEEN" in out


def test_queues(cluster: Cluster, jobs: Dict[str, str]) -> None:
    r = cluster.run("queues", "--json")
    assert r.rc == 0
    doc = r.json()
    validate(doc, "queues")
    assert any(q["name"] == "default" for q in doc["queues"])
    assert "MAX RUNNING" in cluster.run("queues").out


def test_jobs(cluster: Cluster, jobs: Dict[str, str]) -> None:
    r = cluster.run("jobs", "--json", "--queue", "default", "--limit", "100")
    assert r.rc == 0
    doc = r.json()
    validate(doc, "jobs")
    bad = [j for j in doc["jobs"] if j["id"] == jobs["bad"]][0]
    assert bad["attempt"] == 2 and "attempts" not in bad
    r = cluster.run("jobs", "--state", "dead", "--queue", "default")
    assert jobs["bad"] in r.out and "TRIES" in r.out and "UPDATED" in r.out
    r = cluster.run("jobs", "--json", "--state", "bogus")
    assert r.rc == 2 and r.error()["code"] == "usage"


# ---- job ---------------------------------------------------------------------

def test_job_dead(cluster: Cluster, jobs: Dict[str, str]) -> None:
    doc = job_json(cluster, jobs["bad"])
    validate(doc, "job")
    assert doc["source"] == "collector" and doc["state"] == "dead"
    assert doc["attempt"] == 2 and len(doc["attempts"]) == 2
    assert doc["result"] is None and doc["result_note"]
    first, last = doc["attempts"]
    assert first["retry_note"].startswith("retried: attempt 2")
    assert doc["retry_note"] == last["retry_note"]
    assert last["retry_note"].startswith("dead")
    r = cluster.run("job", jobs["bad"])
    assert r.rc == 0 and "retried: attempt 2" in r.out and "retries   dead" in r.out


def test_job_succeeded(cluster: Cluster, jobs: Dict[str, str]) -> None:
    doc = job_json(cluster, jobs["ok"])
    validate(doc, "job")
    assert doc["state"] == "succeeded"
    assert doc["result"] is not None and doc["result_note"] is None
    assert doc["retry_note"] is None
    # what it was submitted with, from the broker's stored record
    assert doc["payload"] == {"v": 1} and doc["payload_bytes"] > 0
    assert doc["priority"] == 5 and doc["max_attempts"] >= 1
    assert doc["backoff"]["factor"] > 0 and doc["created_at"] > 0
    r = cluster.run("job", jobs["ok"])
    assert r.rc == 0 and 'payload   7 bytes of JSON: {"v":1}' in r.out, r.out
    assert "priority 5" in r.out


def test_job_errors(cluster: Cluster) -> None:
    r = cluster.run("job", NOBODY, "--json")
    assert r.rc == 4 and r.out == ""
    assert r.error()["code"] == "not_found"
    r = cluster.run("job", "nope", "--json")
    assert r.rc == 2 and r.error()["code"] == "usage"


def test_job_without_collector(cluster: Cluster, jobs: Dict[str, str]) -> None:
    down = f"tcp://127.0.0.1:{free_port()}"
    r = cluster.run("job", jobs["ok"], "--json", "--collector", down)
    assert r.rc == 0, r.err
    doc = r.json()
    validate(doc, "job")
    assert doc["source"] == "broker" and doc["note"]
    assert doc["payload"] == {"v": 1} and doc["priority"] == 5
    r = cluster.run("job", NOBODY, "--json", "--collector", down)
    assert r.rc == 3 and r.error()["code"] == "unreachable"


# ---- result ------------------------------------------------------------------

def test_result(cluster: Cluster, jobs: Dict[str, str]) -> None:
    want = job_json(cluster, jobs["ok"])["result"]
    r = cluster.run("result", jobs["ok"])
    assert r.rc == 0 and json.loads(r.out) == want
    r = cluster.run("result", jobs["ok"], "--json")
    assert r.rc == 0
    validate(r.json(), "result")
    assert r.json()["result"] == want
    r = cluster.run("result", "--wait", jobs["ok"])
    assert r.rc == 0 and json.loads(r.out) == want
    r = cluster.run("result", jobs["bad"], "--json")
    assert r.rc == 1 and r.out == "" and r.error()["code"] == "dead"
    r = cluster.run("result", NOBODY, "--json")
    assert r.rc == 4 and r.error()["code"] == "not_found"
    r = cluster.run("result", "nope", "--json")
    assert r.rc == 2 and r.error()["code"] == "usage"


def test_result_not_finished(cluster: Cluster) -> None:
    jid = submit(cluster, "--type", "sleep", "--queue", "default")
    try:
        r = cluster.run("result", jid, "--json")
        assert r.rc == 1 and r.error()["code"] == "not_finished"
        r = cluster.run("result", jid, "--wait", "--timeout", "0.5", "--json")
        assert r.rc == 6 and r.error()["code"] == "timeout"
    finally:
        cluster.run("cancel", jid)


# ---- watch, health, top --------------------------------------------------------

def test_watch(cluster: Cluster, jobs: Dict[str, str]) -> None:
    r = cluster.run("watch", "mon-b", "--json", "--interval", "0.2")
    assert r.rc == 0, r.err
    doc = r.json()
    validate(doc, "watch")
    assert doc["finished"] and doc["total"] == 3 and doc["counts"]["succeeded"] == 3
    r = cluster.run("watch", "mon-b", "--interval", "0.2")
    assert r.rc == 0 and "3/3 done" in r.out
    r = cluster.run("watch", "mon-nope", "--timeout", "0.3", "--json")
    assert r.rc == 6 and r.error()["code"] == "timeout"


def test_health(cluster: Cluster) -> None:
    r = cluster.run("health", "--json")
    assert r.rc in (0, 1)
    validate(r.json(), "health")
    assert r.json()["status"] == r.rc
    r = cluster.run("health", "--json", "--collector",
                    f"tcp://127.0.0.1:{free_port()}")
    assert r.rc == 3 and r.error()["code"] == "unreachable"


def test_top_snapshot(cluster: Cluster, jobs: Dict[str, str]) -> None:
    r = cluster.run("top", "--json")
    assert r.rc == 0
    validate(r.json(), "top")
    r = cluster.run("top")  # no terminal, no --json
    assert r.rc == 2


# ---- the collector's HTTP status codes -------------------------------------------

def test_http_status_codes(cluster: Cluster, jobs: Dict[str, str]) -> None:
    assert http(cluster, "/api/status")[0] == 200
    code, body = http(cluster, "/api/health")
    assert code == (503 if body["status"] == 2 else 200)
    assert http(cluster, "/api/batches/mon-b")[0] == 200
    assert http(cluster, "/api/jobs/" + jobs["ok"])[0] == 200
    for missing in ("/api/batches/nope", "/api/jobs/" + NOBODY, "/api/jobs/nope",
                    "/api/keys/nope", "/api/nope"):
        code, body = http(cluster, missing)
        assert code == 404, missing
        assert "error" in body
