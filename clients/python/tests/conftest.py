"""Fixtures: a real broker and worker on free loopback ports in a temp dir.

Nothing is built here. DROVER_BIN names the `drover` executable and
DROVER_LIB libdrover.so (ctest sets both); without them every test is
skipped. Processes are started with their own process group and ended by
PID at teardown, also when a test fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Dict, Iterator, List, Optional

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PKG_ROOT = os.path.dirname(HERE)  # clients/python

DROVER_BIN = os.environ.get("DROVER_BIN")
DROVER_LIB = os.environ.get("DROVER_LIB")

if not DROVER_BIN or not DROVER_LIB:
    pytest.skip(
        "DROVER_BIN (the drover executable) and DROVER_LIB (libdrover.so) must be set; "
        "ctest's python_client test sets both",
        allow_module_level=True,
    )

if PKG_ROOT not in sys.path:
    sys.path.insert(0, PKG_ROOT)

# Python handlers the worker runs (with this interpreter), by job type.
HANDLERS: Dict[str, str] = {
    "py_echo": """
        from drover import handler
        handler.run(lambda p: p)
    """,
    "py_sleep": """
        import time
        from drover import handler
        def fn(p):
            time.sleep(p["sleep"])
            return {"slept": p["sleep"], "n": p.get("n")}
        handler.run(fn)
    """,
    "py_progress": """
        from drover import handler
        def fn(p):
            sent = [handler.progress(i, p["steps"], f"step {i}") for i in range(1, p["steps"] + 1)]
            return {"steps": p["steps"], "sent": sum(sent)}
        handler.run(fn)
    """,
    "py_retry": """
        import json, os, time
        from drover import handler
        def fn(p):
            log = p["log"]
            attempt = int(os.environ["DROVER_ATTEMPT"])
            with open(log, "a") as f:
                f.write(json.dumps({"attempt": attempt, "start": time.time()}) + "\\n")
            if attempt == 1:
                with open(log, "a") as f:
                    f.write(json.dumps({"attempt": attempt, "failed": time.time()}) + "\\n")
                raise handler.RetryLater(after=p["after"])
            return {"attempt": attempt}
        handler.run(fn)
    """,
    "py_value_error": """
        import sys
        from drover import handler
        def fn(p):
            print("warming up", file=sys.stderr, flush=True)
            raise ValueError("bad value " + str(p))
        handler.run(fn)
    """,
    "py_fail": """
        from drover import handler
        def fn(p):
            raise handler.Fail("invalid_input", "no such thing")
        handler.run(fn)
    """,
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """One broker and one worker; ``clients`` is the producers' endpoint."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.procs: List[subprocess.Popen] = []
        p1, p2, p3 = free_port(), free_port(), free_port()
        self.clients = f"tcp://127.0.0.1:{p1}"
        self.workers = f"tcp://127.0.0.1:{p2}"
        self.events = f"tcp://127.0.0.1:{p3}"

    def _spawn(self, args: List[str], log: str, env: Optional[Dict[str, str]] = None) -> subprocess.Popen:
        f = open(os.path.join(self.root, log), "ab")
        p = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, env=env,
                             cwd=self.root, start_new_session=True)
        f.close()
        self.procs.append(p)
        return p

    def start_broker(self) -> None:
        assert DROVER_BIN
        self._spawn([DROVER_BIN, "broker", "--store", os.path.join(self.root, "drover.db"),
                     "--clients", self.clients, "--workers", self.workers,
                     "--events", self.events, "--sync", "off", "--log-level", "warn"],
                    "broker.log")

    def start_worker(self, concurrency: int = 8) -> None:
        assert DROVER_BIN
        hdir = os.path.join(self.root, "handlers")
        os.makedirs(hdir, exist_ok=True)
        args = [DROVER_BIN, "worker", "--broker", self.workers, "--name", "pytest-worker",
                "--concurrency", str(concurrency), "--log-level", "warn"]
        for t, src in HANDLERS.items():
            path = os.path.join(hdir, t + ".py")
            with open(path, "w") as f:
                f.write(textwrap.dedent(src))
            args += ["--exec", f"{t}={sys.executable} {path}"]
        env = dict(os.environ)
        env["PYTHONPATH"] = PKG_ROOT + os.pathsep + env.get("PYTHONPATH", "")
        self._spawn(args, "worker.log", env)

    def wait_ready(self, timeout: float = 20.0) -> None:
        import drover
        deadline = time.monotonic() + timeout
        last: Optional[Exception] = None
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{p.args[1]} exited with {p.returncode}; see {self.root}")
            try:
                with drover.Client(self.clients, timeout=1.0) as c:
                    st = c.status()
                if st.get("workers"):
                    return
            except drover.DroverError as e:
                last = e
            time.sleep(0.2)
        raise RuntimeError(f"broker/worker not ready in {timeout} s: {last}")

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in reversed(self.procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                # Its own process group (start_new_session): the worker's
                # children go with it.
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs.clear()


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    root = tempfile.mkdtemp(prefix="drover-pytest-")
    c = Cluster(root)
    try:
        c.start_broker()
        c.start_worker()
        c.wait_ready()
        yield c
    finally:
        c.stop()
    # Kept, with the broker's and worker's logs, when a test failed.
    if request.session.testsfailed:
        print(f"\ndrover logs kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def client(cluster: Cluster):
    import drover
    with drover.Client(cluster.clients, timeout=5.0) as c:
        yield c
