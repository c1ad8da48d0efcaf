"""Shapes every command shares: version, and errors under --json."""

from conftest import validate


def test_version(cluster) -> None:
    r = cluster.run("version", "--json")
    assert r.rc == 0
    validate(r.json(), "version")
    assert cluster.run("--version").out.startswith("drover ")


def test_usage_error_is_json(cluster) -> None:
    r = cluster.run("version", "--json", "extra")
    assert r.rc == 2 and r.out == ""
    e = r.error()
    assert e["code"] == "usage" and e["exit"] == 2
