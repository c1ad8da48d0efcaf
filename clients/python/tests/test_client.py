"""The Python client against a real broker and worker (see conftest.py)."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid

import pytest

import drover
from drover.aio import AsyncClient


def test_submit_and_wait_1000(client: drover.Client) -> None:
    ids = [client.submit("echo", {"n": i}) for i in range(1000)]
    assert len(set(ids)) == 1000
    results = client.wait(ids, timeout=120)
    assert len(results) == 1000
    for i, jid in enumerate(ids):
        r = results[jid]
        assert r.state == "succeeded", r
        assert r.result == {"n": i}
        assert r.attempts == 1
        assert r.finished_ms > 0


def test_submit_many_acks(client: drover.Client) -> None:
    jobs = [{"type": "echo", "payload": [i, "x"], "priority": 7} for i in range(25)]
    jobs.append({"type": "echo", "priority": 42})  # not valid: nothing sent for it
    acks = client.submit_many(jobs, chunk=10)
    assert len(acks) == 26
    assert all(a.ok and a.id for a in acks[:25])
    assert not acks[25].ok and acks[25].id is None and "priority" in acks[25].error
    results = client.wait([a.id for a in acks[:25]], timeout=60)
    assert [results[a.id].result for a in acks[:25]] == [[i, "x"] for i in range(25)]


def test_as_completed_order_of_completion(client: drover.Client) -> None:
    # Submitted slowest first; they run at once (concurrency 8), so they end
    # fastest first.
    sleeps = [2.4, 1.6, 0.8, 0.0]
    ids = [client.submit("py_sleep", {"sleep": s, "n": i}) for i, s in enumerate(sleeps)]
    seen = [r for r in client.as_completed(ids, timeout=60)]
    assert sorted(r.id for r in seen) == sorted(ids)  # each once
    assert [r.result["n"] for r in seen] == [3, 2, 1, 0]
    assert all(r.state == "succeeded" for r in seen)


def test_as_completed_timeout(client: drover.Client) -> None:
    ids = [client.submit("py_sleep", {"sleep": 0}), client.submit("echo", 1, delay=3600)]
    got = []
    with pytest.raises(drover.WaitTimeout):
        for r in client.as_completed(ids, timeout=3):
            got.append(r.id)
    assert got == [ids[0]]
    client.cancel(ids[1])
    assert client.job(ids[1])["state"] == "cancelled"


def test_async_10000_in_flight(cluster) -> None:
    async def main() -> None:
        # Another coroutine runs while the calls block in the client's thread.
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        t = asyncio.ensure_future(ticker())
        async with AsyncClient(cluster.clients) as c:
            acks = await c.submit_many({"type": "noop", "payload": {"i": i}} for i in range(10_000))
            assert len(acks) == 10_000 and all(a.ok for a in acks)
            ids = [a.id for a in acks]
            results = await c.wait(ids, timeout=300)
            t.cancel()
            assert len(results) == 10_000
            assert all(r.state == "succeeded" for r in results.values())
            assert ticks > 0
            n = 0
            async for r in c.as_completed(ids[:100], timeout=60):
                assert r.state == "succeeded"
                n += 1
            assert n == 100
            async for r in c.as_completed(ids[:10]):
                break  # leaving early: the client stays usable
            assert (await c.submit("echo", 5))
            assert (await c.job(ids[0]))["state"] == "succeeded"

    asyncio.run(main())


def test_handler_progress(client: drover.Client) -> None:
    jid = client.submit("py_progress", {"steps": 5})
    r = client.wait([jid], timeout=60)[jid]
    assert r.state == "succeeded", r
    # Every PROGRESS line was written to the worker's descriptor.
    assert r.result == {"steps": 5, "sent": 5}


def test_retry_later_waits(client: drover.Client, tmp_path) -> None:
    log = str(tmp_path / "attempts.jsonl")
    jid = client.submit("py_retry", {"log": log, "after": 2}, max_attempts=3,
                        backoff={"base": 0.1, "jitter": False})
    r = client.wait([jid], timeout=60)[jid]
    assert r.state == "succeeded", r
    assert r.attempts == 2 and r.result == {"attempt": 2}
    with open(log) as f:
        rows = [json.loads(line) for line in f]
    failed = next(x["failed"] for x in rows if x.get("attempt") == 1 and "failed" in x)
    second = next(x["start"] for x in rows if x.get("attempt") == 2 and "start" in x)
    assert second - failed >= 2.0, rows


def test_value_error_fails_job(client: drover.Client) -> None:
    jid = client.submit("py_value_error", {"x": 1}, max_attempts=1)
    r = client.wait([jid], timeout=60)[jid]
    assert r.state == "dead"
    assert "ValueError" in (r.error or ""), r
    assert r.attempts == 1


def test_value_error_traceback_kept(client: drover.Client, cluster) -> None:
    """The broker keeps the traceback (details) and stderr's end with the
    attempt; ``job()`` and ``drover job`` show them."""
    import subprocess
    from conftest import DROVER_BIN, free_port
    jid = client.submit("py_value_error", {"x": 2}, max_attempts=1)
    assert client.wait([jid], timeout=60)[jid].state == "dead"
    deadline = time.monotonic() + 20
    attempts = []
    while time.monotonic() < deadline:  # the attempt row lands with its group
        attempts = client.job(jid).get("attempts") or []
        if attempts and attempts[-1].get("details"):
            break
        time.sleep(0.05)
    assert len(attempts) == 1, attempts
    a = attempts[0]
    assert a["attempt"] == 1 and a["category"] == "handler", a
    details = a["details"]
    assert details.startswith("Traceback (most recent call last):"), details
    assert '    raise ValueError("bad value " + str(p))' in details  # indentation kept
    assert details.rstrip().endswith("ValueError: bad value {'x': 2}"), details
    assert "warming up" in a["stderr"], a
    # The CLI with no collector to ask: the broker's view, with the attempt.
    cmd = [DROVER_BIN, "job", "--broker", cluster.clients,
           "--collector", f"tcp://127.0.0.1:{free_port()}", jid]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "\n        Traceback (most recent call last):\n" in p.stdout, p.stdout
    assert '\n            raise ValueError("bad value " + str(p))\n' in p.stdout
    assert "ValueError: bad value {'x': 2}" in p.stdout
    assert "warming up" in p.stdout
    p = subprocess.run(cmd[:2] + ["--json"] + cmd[2:], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["attempts"][0]["details"] == details


def test_fail_sets_category(client: drover.Client) -> None:
    jid = client.submit("py_fail", None, max_attempts=3)
    r = client.wait([jid], timeout=60)[jid]
    assert r.state == "dead" and r.attempts == 1  # not retried
    assert r.category == "invalid_input", r
    assert r.error == "no such thing"


def test_broker_down() -> None:
    from conftest import free_port
    c = drover.Client(f"tcp://127.0.0.1:{free_port()}", timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(drover.BrokerUnreachable) as ei:
        c.submit("echo", 1)
    assert time.monotonic() - t0 < 3.0
    assert ei.value.category == "unreachable"
    with pytest.raises(drover.BrokerUnreachable):
        c.submit_many([{"type": "echo"}] * 3)
    c.close()


def test_same_key_same_id(client: drover.Client) -> None:
    key = "pytest-" + uuid.uuid4().hex
    a = client.submit("echo", 1, key=key)
    b = client.submit("echo", 2, key=key)
    assert a == b
    acks = client.submit_many([{"type": "echo", "key": key}])
    assert acks[0].id == a and acks[0].duplicate


def test_errors(client: drover.Client) -> None:
    with pytest.raises(drover.InvalidJob):
        client.submit("echo", 1, priority=12)
    with pytest.raises(drover.Rejected) as ei:
        client.job(str(uuid.uuid4()))
    assert ei.value.code == "not_found"
    assert isinstance(ei.value, drover.DroverError) and ei.value.category == "rejected"


def test_handler_without_worker(tmp_path) -> None:
    """drover.handler outside a worker: progress is a no-op; exit codes."""
    import subprocess
    import sys
    script = tmp_path / "h.py"
    script.write_text(
        "import sys\nfrom drover import handler\n"
        "def fn(p):\n"
        "    assert handler.progress(1, 2) is False\n"
        "    if p == 'retry': raise handler.RetryLater(after=3)\n"
        "    return {'got': p}\n"
        "handler.run(fn)\n")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env.pop("DROVER_PROGRESS_FD", None)
    env.pop("DROVER_LIB", None)  # a handler does not need libdrover
    p = subprocess.run([sys.executable, str(script)], input='{"a": 1}', capture_output=True,
                       text=True, env=env)
    assert p.returncode == 0 and json.loads(p.stdout) == {"got": {"a": 1}}
    p = subprocess.run([sys.executable, str(script)], input='"retry"', capture_output=True,
                       text=True, env=env)
    assert p.returncode == 75 and "retry after 3" in p.stderr


def test_schedules(client: drover.Client) -> None:
    """A schedule the broker fires every second: its jobs come, it can be
    paused, shown and removed; bad arguments name their field."""
    name = "py-" + uuid.uuid4().hex[:8]
    s = client.schedule_add(name, "echo", every="1s", payload={"n": 1}, no_overlap=True)
    assert s["name"] == name and s["spec"] == "every 1s" and s["no_overlap"] is True
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        s = client.schedule(name)
        if s["firings"] >= 2 and s["last_job_state"] == "succeeded":
            break
        time.sleep(0.1)
    assert s["firings"] >= 2, s
    r = client.wait([s["last_job"]], timeout=10)
    assert r[s["last_job"]].result == {"n": 1}
    assert name in [x["name"] for x in client.schedules()]
    assert client.schedule_pause(name)["paused"] is True
    assert client.schedule_resume(name)["paused"] is False
    client.schedule_remove(name)
    with pytest.raises(drover.Rejected) as ei:
        client.schedule(name)
    assert ei.value.code == "not_found"
    with pytest.raises(drover.Rejected) as ei:
        client.schedule_add(name, "echo", every="soon")
    assert ei.value.code == "invalid_argument" and "every" in str(ei.value)
