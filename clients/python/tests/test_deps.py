"""Job dependencies from Python: submit(after=...) waits for its
dependencies to succeed; a dead dependency cancels the job; after_any runs
whatever the end; an unknown id is refused."""

import uuid

import pytest

import drover


def _job(client: drover.Client, id: str) -> dict:
    return client.ctrl("job", id=id)


def test_after_runs_in_order(client: drover.Client) -> None:
    a = client.submit("py_sleep", {"sleep": 0.3, "n": 1})
    b = client.submit("py_sleep", {"sleep": 0.01, "n": 2}, after=[a])
    assert _job(client, b)["state"] == "waiting"
    res = client.wait([a, b], timeout=60)
    assert res[a].ok and res[b].ok
    assert res[b].finished_ms >= res[a].finished_ms
    jb = _job(client, b)
    assert jb["waits_for"] == [{"id": a, "state": "succeeded", "any": False}]
    assert _job(client, a)["waited_by"][0]["id"] == b


def test_dead_dependency_cancels_and_after_any_runs(client: drover.Client) -> None:
    bad = client.submit("py_fail", {}, max_attempts=1)
    dep = client.submit("py_echo", {"x": 1}, after=[bad])
    anyway = client.submit("py_echo", {"x": 2}, after_any=[bad])
    res = client.wait([bad, dep, anyway], timeout=60)
    assert res[bad].state == "dead"
    assert res[dep].state == "cancelled"
    assert res[dep].error == f"dependency {bad} ended dead"
    assert res[anyway].ok


def test_unknown_dependency_refused(client: drover.Client) -> None:
    none = str(uuid.UUID(int=1))
    with pytest.raises(drover.Rejected) as e:
        client.submit("py_echo", {}, after=[none])
    assert "no job" in str(e.value)
    acks = client.submit_many([{"type": "py_echo", "after": [none]},
                               {"type": "py_echo"}])
    assert acks[0].error is not None and acks[0].code == "not_found"
    assert acks[1].ok
