"""drover submit and drover up: --json shapes, exit codes, errors.

submit runs against the session's cluster (conftest.py); each up test runs
its own tree on free loopback ports, ended by PID at the end of the test
also when it fails."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any, Dict, List, Optional

import pytest

from conftest import DROVER_BIN, Run, free_port, validate

ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def write(tmp_path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


# ---- submit -------------------------------------------------------------------


def test_submit_one(cluster) -> None:
    r = cluster.run("submit", "echo", '{"a": 1}', "--queue", "sub-one",
                    "--delay", "600", "--json")
    assert r.rc == 0, r.err
    assert r.err == ""
    doc = r.json()
    validate(doc, "submit")
    assert ID.match(doc["id"]) and doc["duplicate"] is False
    # The same key twice: the first job's id, marked as a duplicate.
    args = ("submit", "echo", "--queue", "sub-one", "--delay", "600", "--key",
            f"k-{os.getpid()}", "--json")
    first = cluster.run(*args).json()
    again = cluster.run(*args).json()
    validate(again, "submit")
    assert again == {"id": first["id"], "duplicate": True}
    # A negative number and "-" (stdin) as PAYLOAD are arguments.
    r = cluster.run("submit", "echo", "-5", "--queue", "sub-one", "--delay",
                    "600", "--json")
    assert r.rc == 0, r.err
    r = cluster.run("submit", "echo", "-", "--queue", "sub-one", "--delay",
                    "600", "--json", input='{"from": "stdin"}')
    assert r.rc == 0, r.err
    jid = r.json()["id"]
    j = cluster.run("job", jid, "--json")
    assert j.rc == 0, j.err
    assert j.json().get("payload") in (None, {"from": "stdin"})


def test_submit_wait_one(cluster) -> None:
    r = cluster.run("submit", "echo", '{"n": 7}', "--wait", "--json")
    assert r.rc == 0, r.err
    doc = r.json()
    validate(doc, "submit")
    assert doc["state"] == "succeeded" and doc["attempts"] == 1
    # A job that ends dead: exit 1, the document says why.
    r = cluster.run("submit", "fail", "--max-attempts", "1", "--wait", "--json")
    assert r.rc == 1
    doc = r.json()
    validate(doc, "submit")
    assert doc["state"] == "dead" and "error" in doc


def test_submit_text_rate(cluster) -> None:
    """One job in well under a second is not "0 jobs/s"."""
    r = cluster.run("submit", "echo", "1", "--wait")
    assert r.rc == 0, r.err
    m = re.search(r"^1 job in (\S+) \((\S+) jobs/s\): 1 succeeded", r.err, re.M)
    assert m, r.err
    assert m.group(2) != "0"


def test_submit_file(cluster, tmp_path) -> None:
    f = write(tmp_path, "jobs.jsonl",
              '{"payload": 1}\n# a comment\n\n{"payload": [2]}\n'
              '{"type": "fail", "max_attempts": 1}\n')
    r = cluster.run("submit", "--file", f, "--type", "echo", "--json", "--ids")
    assert r.rc == 0, r.err
    doc = r.json()
    validate(doc, "submit")
    assert doc["jobs"] == 3 and doc["submitted"] == 3 and doc["refused"] == 0
    assert len(doc["ids"]) == 3 and all(ID.match(i) for i in doc["ids"])
    assert doc["rate"] >= 0 and doc["elapsed_ms"] >= 0
    # Without --ids, no ids.
    r = cluster.run("submit", "--file", f, "--type", "echo", "--json")
    assert "ids" not in r.json()
    # --wait: the outcome counts; the results go only to --out.
    out = str(tmp_path / "results.jsonl")
    r = cluster.run("submit", "--file", f, "--type", "echo", "--wait", "--out",
                    out, "--json")
    assert r.rc == 1, r.err  # the "fail" line ends dead
    doc = r.json()
    validate(doc, "submit")
    assert (doc["succeeded"], doc["dead"], doc["unfinished"]) == (2, 1, 0)
    assert sum(c["count"] for c in doc["failures"].values()) == 1
    with open(out) as fh:
        lines = [json.loads(x) for x in fh]
    assert sorted(x["line"] for x in lines) == [1, 4, 5]


def test_submit_bad_line(cluster, tmp_path) -> None:
    key = f"bad-line-{os.getpid()}"
    f = write(tmp_path, "bad.jsonl",
              '{"payload": 1, "key": "%s"}\n{"priority": 12}\nnot json\n' % key)
    r = cluster.run("submit", "--file", f, "--type", "echo", "--json")
    assert r.rc == 2 and r.out == ""
    e = r.error()
    assert e["code"] == "bad_line" and e["exit"] == 2
    assert e["message"].startswith("line 2: priority must be 0..9")
    assert "2 bad lines" in e["message"] and "nothing was submitted" in e["message"]
    # Text: each bad line with its number.
    r = cluster.run("submit", "--file", f, "--type", "echo")
    assert r.rc == 2
    assert "drover submit: line 2: priority must be 0..9\n" in r.err
    assert "drover submit: line 3: invalid JSON" in r.err
    # Nothing was lost: line 1 was not submitted, its key is still free.
    r = cluster.run("submit", "echo", "--key", key, "--json")
    assert r.rc == 0 and r.json()["duplicate"] is False


def test_submit_wait_timeout(cluster) -> None:
    r = cluster.run("submit", "echo", "--queue", "sub-late", "--delay", "600",
                    "--wait", "--wait-timeout", "0.5", "--json")
    assert r.rc == 6
    doc = r.json()
    validate(doc, "submit")
    assert doc["state"] == "unfinished"
    e = r.error()
    assert e["code"] == "timeout" and e["exit"] == 6
    assert cluster.run("cancel", doc["id"]).rc == 0


def test_submit_errors(cluster) -> None:
    r = cluster.run("submit", "--json")
    assert r.rc == 2 and r.out == ""
    assert r.error()["code"] == "usage"
    r = cluster.run("submit", "echo", "1", "2")
    assert r.rc == 2
    assert r.err.startswith("drover submit: unexpected argument '2'\nusage: ")
    r = cluster.run("submit", "echo", "--priority", "12")
    assert r.rc == 2 and "--priority must be 0..9, not '12'" in r.err
    r = cluster.run("submit", "echo", "--broker", f"tcp://127.0.0.1:{free_port()}",
                    "--connect-timeout", "0.3", "--json")
    assert r.rc == 3 and r.out == ""
    assert r.error()["code"] == "unreachable"


# ---- up -----------------------------------------------------------------------


def up_port() -> int:
    """A base port P with P..P+3 and P+80 free on 127.0.0.1."""
    for _ in range(200):
        p = free_port()
        if p + 80 > 65400:
            continue
        ok = True
        for q in (p, p + 1, p + 2, p + 3, p + 80):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", q))
                except OSError:
                    ok = False
                    break
        if ok:
            return p
    raise AssertionError("no free run of ports")


def children(pid: int) -> Dict[int, str]:
    """The live child processes of pid: {pid: command line}."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out[int(d)] = cmd
    return out


class Up:
    """`drover up ARGS` in a session of its own; stop() ends it by PID."""

    def __init__(self, tmp_path, *args: str) -> None:
        self.err_path = str(tmp_path / f"up-{time.monotonic_ns()}.err")
        self.err_file = open(self.err_path, "w")
        env = dict(os.environ)
        for k in ("DROVER_BROKER", "DROVER_COLLECTOR"):
            env.pop(k, None)
        self.p = subprocess.Popen([DROVER_BIN, "up", *args], stdout=subprocess.PIPE,
                                  stderr=self.err_file, env=env,
                                  start_new_session=True)

    def err(self) -> str:
        with open(self.err_path) as f:
            return f.read()

    def doc(self, timeout: float = 30) -> Dict[str, Any]:
        """The JSON object --json prints once everything answers."""
        deadline = time.monotonic() + timeout
        text = b""
        fd = self.p.stdout.fileno()
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                text += chunk
                if b"\n}\n" in text:
                    return json.loads(text[:text.index(b"\n}\n") + 2])
            elif self.p.poll() is not None:
                break
        raise AssertionError(f"no JSON from up within {timeout} s: {text!r} "
                             f"{self.err()}")

    def wait_for(self, cond, what: str, timeout: float = 20) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = cond()
            if v:
                return v
            time.sleep(0.1)
        raise AssertionError(f"not within {timeout} s: {what}; {self.err()}")

    def stop(self) -> None:
        if self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(timeout=45)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
        for pid in children(self.p.pid):  # none once up reaped them
            os.kill(pid, signal.SIGKILL)
        self.p.stdout.close()
        self.err_file.close()


def run_with(env_doc: Dict[str, Any], *args: str, timeout: float = 60) -> Run:
    env = dict(os.environ, DROVER_BROKER=env_doc["broker"])
    if env_doc.get("collector"):
        env["DROVER_COLLECTOR"] = env_doc["collector"]
    return Run(subprocess.run([DROVER_BIN, *args], capture_output=True, text=True,
                              env=env, timeout=timeout))


def test_up_port_in_use(tmp_path) -> None:
    port = up_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        for json_flag in ([], ["--json"]):
            t0 = time.monotonic()
            p = subprocess.run([DROVER_BIN, "up", "--port", str(port), "--dir",
                                str(tmp_path / "up"), *json_flag],
                               capture_output=True, text=True, timeout=30)
            assert time.monotonic() - t0 < 10
            assert p.returncode == 1
            assert p.stdout == ""
            want = (f"the broker cannot bind tcp://127.0.0.1:{port}: "
                    "Address already in use")
            if json_flag:
                e = Run(p).error()
                assert e["code"] == "not_started" and want in e["message"]
            else:
                assert p.stderr.startswith("drover up: " + want), p.stderr
                assert "export" not in p.stderr and "Ctrl-C" not in p.stderr
    # --dir is never removed.
    assert os.path.isdir(tmp_path / "up")


def test_up_json_restart_term(tmp_path) -> None:
    up = Up(tmp_path, "--json", "--port", str(up_port()), "--concurrency", "1")
    try:
        doc = up.doc()
        validate(doc, "up")
        assert doc["pid"] == up.p.pid and doc["worker_count"] == 1
        assert os.path.isdir(doc["dir"])
        # The next command talks to this tree through the endpoints.
        r = run_with(doc, "submit", "echo", '{"x": 1}', "--wait", "--json")
        assert r.rc == 0, r.err
        assert r.json()["state"] == "succeeded"
        # A worker killed is started again, and serves.
        workers = [p for p, c in children(up.p.pid).items() if " worker " in c]
        assert len(workers) == 1
        os.kill(workers[0], signal.SIGKILL)
        up.wait_for(lambda: [p for p, c in children(up.p.pid).items()
                             if " worker " in c and p != workers[0]],
                    "a new worker process")
        up.wait_for(lambda: "worker 1 restarted" in up.err(), "the restart said")
        assert "worker 1 exited (killed by signal 9)" in up.err()
        r = run_with(doc, "submit", "echo", "2", "--wait", "--wait-timeout",
                     "30", "--json")
        assert r.rc == 0, r.err
        # SIGTERM: exit 0, the directory it made is gone.
        os.kill(up.p.pid, signal.SIGTERM)
        assert up.p.wait(timeout=45) == 0
        assert not os.path.exists(doc["dir"])
    finally:
        up.stop()


def test_up_keep(tmp_path) -> None:
    up = Up(tmp_path, "--json", "--keep", "--workers", "0", "--no-collector",
            "--port", str(up_port()))
    try:
        doc = up.doc()
        validate(doc, "up")
        assert doc["collector"] is None and doc["http"] is None
        os.kill(up.p.pid, signal.SIGTERM)
        assert up.p.wait(timeout=45) == 0
        assert os.path.isfile(os.path.join(doc["dir"], "broker.log"))
    finally:
        up.stop()
        if "doc" in locals():
            subprocess.run(["rm", "-rf", "--", doc["dir"]], check=False)


def test_up_text_export(tmp_path) -> None:
    port = up_port()
    up = Up(tmp_path, "--port", str(port), "--workers", "0", "--dir",
            str(tmp_path / "dir"))
    try:
        want = (f"  export DROVER_BROKER=tcp://127.0.0.1:{port} "
                f"DROVER_COLLECTOR=tcp://127.0.0.1:{port + 3}\n")
        up.wait_for(lambda: want in up.err(), "the export line")
        os.kill(up.p.pid, signal.SIGINT)
        assert up.p.wait(timeout=45) == 0
        assert os.path.isdir(tmp_path / "dir")
    finally:
        up.stop()
