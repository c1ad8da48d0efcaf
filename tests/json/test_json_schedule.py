"""`drover schedule`: add, list, show, pause, resume and remove, each
one's --json output against its schema, and the exit codes (not found 4,
usage 2, refused 1)."""

from conftest import validate


def test_schedule(cluster) -> None:
    r = cluster.run("schedule", "add", "json-tick", "--every", "1s",
                    "--type", "noop", "--queue", "json-sched", "--json")
    assert r.rc == 0, r.err
    doc = r.json()
    validate(doc, "schedule")
    assert doc["name"] == "json-tick" and doc["spec"] == "every 1s"
    assert doc["next_fire_at"] == doc["created_at"] + 1000
    r = cluster.run("schedule", "add", "json-cron", "--cron", "0 3 * * *",
                    "--tz", "UTC", "--type", "report", "--payload",
                    '{"full": true}', "--no-overlap", "--catch-up", "skip",
                    "--priority", "7", "--json")
    assert r.rc == 0, r.err
    doc = r.json()
    validate(doc, "schedule")
    assert doc["cron"] == "0 3 * * *" and doc["catch_up"] == "skip"
    assert doc["no_overlap"] is True and doc["priority"] == 7

    # Fires: the list shows the last firing and its job.
    def fired():
        d = cluster.run("schedule", "list", "--json").json()
        t = [s for s in d["schedules"] if s["name"] == "json-tick"]
        return d if t and t[0]["last_job"] else None
    doc = cluster.wait_for(fired, "json-tick fires")
    validate(doc, "schedule_list")
    assert [s["name"] for s in doc["schedules"]] == ["json-cron", "json-tick"]

    r = cluster.run("schedule", "show", "json-tick", "--json")
    assert r.rc == 0, r.err
    validate(r.json(), "schedule")
    r = cluster.run("schedule", "pause", "json-tick", "--json")
    assert r.rc == 0, r.err
    doc = r.json()
    validate(doc, "schedule")
    assert doc["paused"] is True and doc["next_fire_at"] is None
    r = cluster.run("schedule", "resume", "json-tick", "--json")
    assert r.rc == 0, r.err
    validate(r.json(), "schedule")
    for name in ("json-tick", "json-cron"):
        r = cluster.run("schedule", "remove", name, "--json")
        assert r.rc == 0, r.err
        doc = r.json()
        validate(doc, "schedule_remove")
        assert doc == {"name": name, "removed": True}


def test_schedule_errors(cluster) -> None:
    r = cluster.run("schedule", "show", "json-nosuch", "--json")
    assert r.rc == 4 and r.out == ""
    e = r.error()
    assert e["code"] == "not_found" and e["exit"] == 4
    r = cluster.run("schedule", "remove", "json-nosuch", "--json")
    assert r.rc == 4
    # Usage: no --type, both --cron and --every, an unknown action.
    r = cluster.run("schedule", "add", "x", "--every", "1s", "--json")
    assert r.rc == 2 and r.error()["code"] == "usage"
    r = cluster.run("schedule", "add", "x", "--every", "1s", "--cron",
                    "* * * * *", "--type", "noop", "--json")
    assert r.rc == 2
    r = cluster.run("schedule", "frobnicate", "--json")
    assert r.rc == 2
    # The broker's refusals name the field.
    r = cluster.run("schedule", "add", "x", "--every", "soon", "--type",
                    "noop", "--json")
    assert r.rc == 1
    e = r.error()
    assert e["code"] == "invalid_argument" and "every" in e["message"]
    r = cluster.run("schedule", "add", "x", "--cron", "61 * * * *", "--type",
                    "noop", "--json")
    assert r.rc == 1 and "cron" in r.error()["message"]
