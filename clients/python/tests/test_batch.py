"""Batches from Python: a batch record with a callback, its jobs' results
read back page by page (Client.batch_jobs, Client.iter_batch_jobs)."""

import time
import uuid

import pytest

import drover


def test_batch_jobs_pages_and_callback(client: drover.Client) -> None:
    name = "py-" + uuid.uuid4().hex[:12]
    client.ctrl("batch.open", args={"name": name, "on_complete": "echo",
                                    "payload": {"from": "pytest"}})
    acks = client.submit_many([{"type": "echo", "payload": {"n": i}, "batch": name}
                               for i in range(25)])
    assert all(a.ok for a in acks)
    client.ctrl("batch.close", args={"name": name})
    results = client.wait([a.id for a in acks], timeout=60)
    assert all(r.ok for r in results.values())

    page = client.batch_jobs(name, limit=10)
    assert len(page["jobs"]) == 10 and page["more"] is True
    assert page["next"] == page["jobs"][-1]["id"]
    nxt = client.batch_jobs(name, after=page["next"], limit=10)
    assert nxt["jobs"][0]["id"] > page["next"]

    jobs = list(client.iter_batch_jobs(name, limit=7))
    assert [j["id"] for j in jobs] == sorted(a.id for a in acks)
    assert [j["result"]["n"] for j in jobs] == list(range(25))
    assert all(j["state"] == "succeeded" for j in jobs)

    # The callback: submitted once, its payload the batch's counts.
    deadline = time.monotonic() + 30
    show = client.ctrl("batch.show", args={"name": name})
    while show["state"] != "done" and time.monotonic() < deadline:
        time.sleep(0.1)
        show = client.ctrl("batch.show", args={"name": name})
    assert show["state"] == "done", show
    assert show["counts"]["total"] == 25 and show["counts"]["succeeded"] == 25
    cb = show["callbacks"][0]
    assert cb["on"] == "complete" and cb["state"] == "succeeded"
    done = client.wait([cb["id"]], timeout=10)[cb["id"]]
    assert done.result["batch"] == name and done.result["total"] == 25
    assert done.result["from"] == "pytest"

    # A closed batch takes no more jobs.
    late = client.submit_many([{"type": "echo", "batch": name}])
    assert not late[0].ok and late[0].code == "not_allowed"


def test_batch_jobs_bad_arguments(client: drover.Client) -> None:
    with pytest.raises(ValueError):
        client.batch_jobs("x", limit=0)
    with pytest.raises(ValueError):
        client.batch_jobs("x", after="not-an-id")
    assert client.batch_jobs("no-such-batch-" + uuid.uuid4().hex) == {"jobs": [], "more": False}
