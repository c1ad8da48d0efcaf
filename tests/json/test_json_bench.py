"""drover bench: its --json document against the schema on the real broker
and worker of the session, and its exit codes (unreachable 3, timeout 6,
usage 2)."""

from conftest import free_port, validate


def test_bench(cluster) -> None:
    r = cluster.run("bench", "--jobs", "300", "--json")
    assert r.rc == 0, r.err
    doc = r.json()
    validate(doc, "bench")
    assert doc["jobs"] == 300 and doc["succeeded"] == 300
    assert doc["failed"] == 0 and doc["queue"] == "default"
    assert doc["broker"] == cluster.clients
    assert doc["submit_per_s"] > 0 and doc["end_to_end_per_s"] > 0
    assert doc["elapsed_ms"] >= doc["submit_ms"]
    assert 0 < doc["dispatch_p50_us"] <= doc["dispatch_p99_us"]


def test_bench_text(cluster) -> None:
    r = cluster.run("bench", "--jobs", "50")
    assert r.rc == 0, r.err
    assert "submitted 50 no-op jobs to queue 'default'" in r.out
    assert "jobs/s end to end (50 succeeded, 0 did not)" in r.out
    assert "dispatch latency" in r.out


def test_bench_unreachable(cluster) -> None:
    r = cluster.run("bench", "--json", "--connect-timeout", "0.3", "--broker",
                    f"tcp://127.0.0.1:{free_port()}")
    assert r.rc == 3 and r.out == ""
    e = r.error()
    assert e["code"] == "unreachable" and e["exit"] == 3


def test_bench_timeout(cluster) -> None:
    # No worker serves the queue: the jobs wait past --timeout.
    r = cluster.run("bench", "--json", "--jobs", "5", "--queue",
                    "bench-nobody", "--timeout", "0.5")
    try:
        assert r.rc == 6 and r.out == ""
        e = r.error()
        assert e["code"] == "timeout" and e["exit"] == 6
    finally:
        assert cluster.run("purge", "--yes", "bench-nobody").rc == 0


def test_bench_usage(cluster) -> None:
    r = cluster.run("bench", "--jobs", "0", "--json")
    assert r.rc == 2 and r.out == ""
    assert r.error()["code"] == "usage"
