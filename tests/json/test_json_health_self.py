"""drover health --self: one process's liveness, for probes. A broker and a
collector that answer are alive (0), an endpoint nobody listens on is not
(2) within --timeout; a worker is alive while the file its --health-file
touches at every heartbeat is fresher than --max-age. Output against
docs/json/health_self.schema.json."""

from __future__ import annotations

import os
import signal
import time

from conftest import Cluster, free_port, validate


def self_check(cluster: Cluster, *args: str):
    r = cluster.run("health", "--json", "--self", *args, timeout=30)
    assert r.rc in (0, 2), r.err
    doc = r.json()
    validate(doc, "health_self")
    assert doc["status"] == r.rc and doc["alive"] == (r.rc == 0)
    return r.rc, doc


def test_broker_alive(cluster: Cluster) -> None:
    rc, doc = self_check(cluster, "broker", "--broker", cluster.clients)
    assert rc == 0, doc
    assert doc["self"] == "broker" and doc["endpoint"] == cluster.clients
    assert doc["role"] == "active" and doc["reason"] is None


def test_broker_nobody_listens(cluster: Cluster) -> None:
    nobody = f"tcp://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    rc, doc = self_check(cluster, "broker", "--broker", nobody, "--timeout", "1")
    assert rc == 2 and doc["reason"], doc
    assert time.monotonic() - t0 < 5
    # text output: says so, same exit status
    r = cluster.run("health", "--self", "broker", "--broker", nobody,
                    "--timeout", "0.5")
    assert r.rc == 2 and r.out.startswith("not alive: broker"), r.out


def test_collector_alive_and_not(cluster: Cluster) -> None:
    rc, doc = self_check(cluster, "collector", "--collector", cluster.collector)
    assert rc == 0 and doc["endpoint"] == cluster.collector, doc
    t0 = time.monotonic()
    rc, doc = self_check(cluster, "collector", "--collector",
                         f"tcp://127.0.0.1:{free_port()}", "--timeout", "1")
    assert rc == 2 and doc["reason"], doc
    assert time.monotonic() - t0 < 5


def test_worker_health_file(cluster: Cluster) -> None:
    path = os.path.join(cluster.root, "worker.health")
    p = cluster.spawn(["worker", "--broker", cluster.workers, "--name",
                       "health-self-worker", "--queues", "health-self",
                       "--concurrency", "1", "--heartbeat", "0.2",
                       "--health-file", path, "--log-level", "warn"],
                      "worker-health.log")
    try:
        cluster.wait_for(lambda: os.path.exists(path), "the health file")
        rc, doc = self_check(cluster, "worker", "--health-file", path,
                             "--max-age", "10")
        assert rc == 0, doc
        assert doc["health_file"] == path and doc["max_age_ms"] == 10000
        assert 0 <= doc["age_ms"] <= 10000
        # touched at every heartbeat
        old = time.time() - 60
        os.utime(path, (old, old))
        cluster.wait_for(lambda: os.stat(path).st_mtime > old + 30,
                         "the health file touched again")
    finally:
        os.kill(p.pid, signal.SIGTERM)
        p.wait(timeout=30)
    # gone with the worker
    assert not os.path.exists(path)
    rc, doc = self_check(cluster, "worker", "--health-file", path)
    assert rc == 2 and doc["age_ms"] is None, doc


def test_worker_health_file_stale(cluster: Cluster, tmp_path) -> None:
    path = str(tmp_path / "stale.health")
    with open(path, "w"):
        pass
    old = time.time() - 30
    os.utime(path, (old, old))
    rc, doc = self_check(cluster, "worker", "--health-file", path,
                         "--max-age", "10s")
    assert rc == 2 and doc["age_ms"] >= 29000, doc
    assert "--max-age" in doc["reason"]
    rc, doc = self_check(cluster, "worker", "--health-file", path,
                         "--max-age", "1m")
    assert rc == 0, doc


def test_self_usage(cluster: Cluster) -> None:
    r = cluster.run("health", "--self", "nobody", "--json")
    assert r.rc == 2 and r.error()["code"] == "usage"
    r = cluster.run("health", "--self", "worker", "--json")
    assert r.rc == 2 and r.error()["code"] == "usage"
