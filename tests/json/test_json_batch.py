"""drover batch open|add|close|show|jobs|forget: each --json output against
its schema (docs/json/batch*.schema.json), and the exit codes (not found 4,
refused 1, usage 2)."""

import os
import tempfile

from conftest import validate


def test_batch_lifecycle(cluster) -> None:
    r = cluster.run("batch", "open", "json-b1", "--on-complete", "echo",
                    "--on-failure", "fail", "--payload", '{"k": 1}', "--json")
    assert r.rc == 0, r.err
    doc = r.json()
    validate(doc, "batch")
    assert doc["state"] == "open" and doc["record"] is True
    assert [c["on"] for c in doc["callbacks"]] == ["complete", "failure"]

    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for i in range(5):
            f.write('{"type": "echo", "payload": {"i": %d}}\n' % i)
        path = f.name
    try:
        r = cluster.run("batch", "add", "json-b1", "--file", path, "--json")
        assert r.rc == 0, r.err
        validate(r.json(), "submit")
        r = cluster.run("batch", "close", "json-b1", "--json")
        assert r.rc == 0, r.err
        validate(r.json(), "batch")

        def done():
            r = cluster.run("batch", "show", "json-b1", "--json")
            return r.json() if r.rc == 0 and r.json()["state"] == "done" else None
        doc = cluster.wait_for(done, "the batch is done")
        validate(doc, "batch")
        assert doc["counts"]["total"] == 5 and doc["counts"]["succeeded"] == 5
        assert doc["callbacks"][0]["state"] == "succeeded"
        assert "id" not in doc["callbacks"][1]  # no failure: not called

        r = cluster.run("batch", "jobs", "json-b1", "--limit", "2", "--json")
        assert r.rc == 0, r.err
        page = r.json()
        validate(page, "batch_jobs")
        assert len(page["jobs"]) == 2 and page["more"] is True
        r = cluster.run("batch", "jobs", "json-b1", "--after", page["next"], "--json")
        validate(r.json(), "batch_jobs")
        assert len(r.json()["jobs"]) == 3 and r.json()["more"] is False
        r = cluster.run("batch", "jobs", "json-b1", "--all", "--json")
        allj = r.json()
        validate(allj, "batch_jobs")
        assert [j["result"]["i"] for j in allj["jobs"]] == list(range(5))

        # closed: more jobs are refused (exit 1)
        r = cluster.run("batch", "add", "json-b1", "--file", path)
        assert r.rc == 1 and "is closed" in r.err
        # open again while done: refused until forgotten
        r = cluster.run("batch", "open", "json-b1", "--json")
        assert r.rc == 1 and r.error()["code"] == "not_allowed"
        r = cluster.run("batch", "forget", "json-b1", "--json")
        assert r.rc == 0, r.err
        validate(r.json(), "batch_forget")
    finally:
        os.unlink(path)


def test_batch_label_and_errors(cluster) -> None:
    r = cluster.run("submit", "echo", "1", "--batch", "json-label")
    assert r.rc == 0, r.err
    r = cluster.wait_for(lambda: (lambda r: r if r.rc == 0 and r.json()["complete"] else None)(
        cluster.run("batch", "show", "json-label", "--json")), "the label is complete")
    doc = r.json()
    validate(doc, "batch")
    assert doc["record"] is False and doc["counts"]["total"] == 1
    r = cluster.run("batch", "show", "json-nosuch", "--json")
    assert r.rc == 4 and r.error()["code"] == "not_found"
    r = cluster.run("batch", "close", "json-nosuch", "--json")
    assert r.rc == 4
    r = cluster.run("batch", "frobnicate", "x", "--json")
    assert r.rc == 2 and r.error()["code"] == "usage"
    r = cluster.run("batch", "jobs", "x", "--after", "nope", "--json")
    assert r.rc == 2
