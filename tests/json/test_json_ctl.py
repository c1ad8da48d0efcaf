"""The control verbs through the broker: cancel, retry, pause, resume,
purge, limit, drain, check, keys, keygen. Each one's --json output against
its schema, and the exit codes they share (not found 4, usage 2,
unreachable 3)."""

import os
import re
import tempfile

from conftest import validate

UNKNOWN_ID = "01a20470-abfa-73fc-8402-859771cc63e2"


def submit(cluster, *args: str) -> str:
    """Submits one job; its id."""
    r = cluster.run("submit", *args)
    assert r.rc == 0, r.err
    m = re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                  r.out)
    assert m, r.out
    return m.group(0)


def not_found(r) -> None:
    assert r.rc == 4 and r.out == ""
    e = r.error()
    assert e["code"] == "not_found" and e["exit"] == 4


def test_cancel(cluster) -> None:
    jid = submit(cluster, "--queue", "ctl-cancel", "--type", "sleep",
                 "--delay", "600")
    r = cluster.run("cancel", jid, "--json")
    assert r.rc == 0, r.err
    doc = r.json()
    validate(doc, "cancel")
    assert doc == {"id": jid, "state": "cancelled", "cancelled": True}
    # Already ended: refused (1), and the document says why.
    r = cluster.run("cancel", jid, "--json")
    assert r.rc == 1
    doc = r.json()
    validate(doc, "cancel")
    assert doc["cancelled"] is False and doc["state"] == "cancelled"
    assert "already" in doc["reason"]
    # Several: an array, in order; the exit code says one failed.
    r = cluster.run("cancel", jid, UNKNOWN_ID, "--json")
    assert r.rc == 1
    doc = r.json()
    validate(doc, "cancel")
    assert [d["id"] for d in doc] == [jid, UNKNOWN_ID]
    assert doc[1]["state"] == "unknown"


def test_cancel_not_found(cluster) -> None:
    not_found(cluster.run("cancel", UNKNOWN_ID, "--json"))
    # not a job id at all: a usage error, as for every command taking one
    r = cluster.run("cancel", "notanid", "--json")
    assert r.rc == 2 and r.error()["code"] == "usage"
    r = cluster.run("cancel", "notanid")
    assert r.rc == 2 and r.err.startswith("drover cancel: 'notanid' is not a job id")


def test_retry(cluster) -> None:
    # A worker of its own: other tests' queues keep their dead jobs.
    cluster.spawn(["worker", "--broker", cluster.workers, "--name",
                   "ctl-retrier", "--queues", "ctl-retry", "--log-level",
                   "warn", "--exec", "fail=sh -c 'exit 1'"],
                  "worker-retry.log")
    jid = submit(cluster, "--queue", "ctl-retry", "--type", "fail",
                 "--max-attempts", "1")
    # Once it is dead, it can be retried.
    r = cluster.wait_for(lambda: (lambda r: r if r.rc == 0 else None)(
        cluster.run("retry", jid, "--json")), "the job is dead and retried")
    doc = r.json()
    validate(doc, "retry")
    assert doc == {"id": jid, "retried": 1}
    r = cluster.run("retry", "--dead", "--queue", "ctl-retry", "--json")
    assert r.rc == 0, r.err
    doc = r.json()
    validate(doc, "retry")
    assert doc["queue"] == "ctl-retry" and doc["retried"] >= 0
    not_found(cluster.run("retry", UNKNOWN_ID, "--json"))
    r = cluster.run("retry", "nope", "--json")
    assert r.rc == 2 and r.error()["code"] == "usage"
    r = cluster.run("retry", "--dead", "--json")
    assert r.rc == 2 and r.error()["code"] == "usage"


def test_pause_needs_a_known_queue(cluster) -> None:
    r = cluster.run("pause", "ctl-nosuchqueue", "--json")
    not_found(r)
    assert "--create" in r.error()["message"]
    r = cluster.run("pause", "ctl-nosuchqueue")
    assert r.rc == 4
    assert "no queue 'ctl-nosuchqueue'" in r.err and "--create" in r.err
    not_found(cluster.run("resume", "ctl-nosuchqueue", "--json"))
    not_found(cluster.run("limit", "ctl-nosuchqueue", "--rate", "5", "--json"))
    not_found(cluster.run("limit", "ctl-nosuchqueue", "--json"))
    not_found(cluster.run("purge", "ctl-nosuchqueue", "--yes", "--json"))

    r = cluster.run("pause", "--create", "ctl-nosuchqueue", "--json")
    assert r.rc == 0, r.err
    doc = r.json()
    validate(doc, "pause")
    assert doc == {"queue": "ctl-nosuchqueue", "paused": True, "rate_limit": 0,
                   "max_running": 0}
    # Known from now on.
    r = cluster.run("resume", "ctl-nosuchqueue", "--json")
    assert r.rc == 0, r.err
    doc = r.json()
    validate(doc, "resume")
    assert doc["paused"] is False


def test_limit_shows_and_sets(cluster) -> None:
    assert cluster.run("pause", "--create", "ctl-limit").rc == 0
    r = cluster.run("limit", "ctl-limit", "--json")
    assert r.rc == 0, r.err
    doc = r.json()
    validate(doc, "limit")
    assert doc == {"queue": "ctl-limit", "paused": True, "rate_limit": 0,
                   "max_running": 0}
    r = cluster.run("limit", "ctl-limit", "--rate", "2.5", "--max-running",
                    "3", "--json")
    assert r.rc == 0, r.err
    doc = r.json()
    validate(doc, "limit")
    assert doc["rate_limit"] == 2.5 and doc["max_running"] == 3
    # Without flags: shows them, as text too.
    r = cluster.run("limit", "ctl-limit")
    assert r.rc == 0
    assert r.out == ("ctl-limit: paused; at most 2.5 started/s; at most 3 "
                     "running at once\n")
    r = cluster.run("limit", "ctl-limit", "--max-running", "2.5", "--json")
    assert r.rc == 2 and r.error()["code"] == "usage"
    assert cluster.run("limit", "ctl-limit", "--rate", "0",
                       "--max-running", "0").rc == 0


def test_purge(cluster) -> None:
    for _ in range(3):
        submit(cluster, "--queue", "ctl-purge", "--type", "sleep",
               "--delay", "600")
    # Not a terminal, no --yes: nothing done, a usage error.
    r = cluster.run("purge", "ctl-purge", "--json", input="")
    assert r.rc == 2 and r.out == ""
    e = r.error()
    assert e["code"] == "usage" and "--yes" in e["message"]
    r = cluster.run("purge", "ctl-purge", input="y\n")
    assert r.rc == 2 and "--yes" in r.err
    r = cluster.run("purge", "--yes", "ctl-purge", "--json")
    assert r.rc == 0, r.err
    doc = r.json()
    validate(doc, "purge")
    assert doc == {"queue": "ctl-purge", "purged": 3}
    r = cluster.run("purge", "-y", "ctl-purge")
    assert r.rc == 0 and r.out == "purged 0 waiting jobs of queue 'ctl-purge'\n"


def test_drain(cluster) -> None:
    not_found(cluster.run("drain", "ctl-nobody", "--json"))
    cluster.spawn(["worker", "--broker", cluster.workers, "--name",
                   "ctl-drained", "--queues", "ctl-drain", "--log-level",
                   "warn", "--exec", "sleep=sh -c 'sleep 30'"],
                  "worker-drained.log")
    r = cluster.wait_for(lambda: (lambda r: r if r.rc != 4 else None)(
        cluster.run("drain", "ctl-drained", "--json")),
        "the broker knows the worker ctl-drained")
    assert r.rc == 0, r.err
    doc = r.json()
    validate(doc, "drain")
    assert doc == {"worker": "ctl-drained", "draining": True}


def test_check(cluster) -> None:
    r = cluster.run("check", "--json")
    assert r.rc == 0, r.err
    doc = r.json()
    validate(doc, "check")
    assert doc["ok"] is True and doc["differences"] == 0


def test_keys(cluster) -> None:
    r = cluster.run("keys", "--json")
    assert r.rc == 0, r.err
    doc = r.json()
    validate(doc, "keys")
    assert doc["keys"] == []
    not_found(cluster.run("keys", "enable", "no-such-key", "--json"))
    r = cluster.run("keys", "enable", "--json")
    assert r.rc == 2 and r.error()["code"] == "usage"


def test_keygen_files(cluster) -> None:
    with tempfile.TemporaryDirectory(prefix="drover-json-keygen-") as d:
        r = cluster.run("keygen", "ctl-k", "--dir", d, "--json")
        assert r.rc == 0, r.err
        doc = r.json()
        validate(doc, "keygen")
        assert doc["name"] == "ctl-k"
        assert os.path.exists(doc["public"]) and os.path.exists(doc["secret"])
        assert os.stat(doc["secret"]).st_mode & 0o777 == 0o600
        # Never overwritten.
        r = cluster.run("keygen", "ctl-k", "--dir", d, "--json")
        assert r.rc == 1 and r.error()["code"] == "failed"


def test_unreachable(cluster) -> None:
    for args in (["pause", "q"], ["keys"]):
        r = cluster.run(*args, "--json", "--broker", "tcp://127.0.0.1:1")
        assert r.rc == 3, (args, r.err)
        assert r.error()["code"] == "unreachable"
