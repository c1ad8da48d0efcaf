"""Fixtures for the --json shape tests: a real broker, worker and
collector on free loopback ports in a temp dir, and `drover` run as a
user would, its output checked against the JSON Schemas in docs/json/.

DROVER_BIN names the executable (ctest sets it). Processes run in their
own process groups and are ended by PID at teardown, also when a test
fails; the temp dir (with the logs) is kept when one did.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any, Dict, List, Optional

import jsonschema
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMAS = os.path.join(ROOT, "docs", "json")
DROVER_BIN = os.environ.get("DROVER_BIN")

if not DROVER_BIN:
    pytest.skip("DROVER_BIN (the drover executable) must be set; ctest's "
                "json_shapes test sets it", allow_module_level=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def schema(name: str) -> Dict[str, Any]:
    with open(os.path.join(SCHEMAS, name + ".schema.json")) as f:
        return json.load(f)


def validate(doc: Any, name: str) -> None:
    """Raises if doc does not fit docs/json/NAME.schema.json."""
    s = schema(name)
    jsonschema.Draft202012Validator.check_schema(s)
    jsonschema.Draft202012Validator(s).validate(doc)


class Run:
    def __init__(self, p: subprocess.CompletedProcess) -> None:
        self.rc = p.returncode
        self.out = p.stdout
        self.err = p.stderr

    def json(self) -> Any:
        return json.loads(self.out)

    def error(self) -> Dict[str, Any]:
        """The JSON error on stderr, checked against error.schema.json."""
        doc = json.loads(self.err)
        validate(doc, "error")
        return doc["error"]


class Cluster:
    """Broker, one worker and a collector; run() is `drover` pointed at
    them through DROVER_BROKER and DROVER_COLLECTOR."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.procs: List[subprocess.Popen] = []
        self.clients = f"tcp://127.0.0.1:{free_port()}"
        self.workers = f"tcp://127.0.0.1:{free_port()}"
        self.events = f"tcp://127.0.0.1:{free_port()}"
        self.collector = f"tcp://127.0.0.1:{free_port()}"
        self.http_port = free_port()
        self.env = dict(os.environ, DROVER_BROKER=self.clients,
                        DROVER_COLLECTOR=self.collector)
        for k in ("DROVER_CURVE_SECRET", "DROVER_CURVE_SERVER",
                  "DROVER_COLLECTOR_CURVE_SERVER"):
            self.env.pop(k, None)

    def spawn(self, args: List[str], log: str) -> subprocess.Popen:
        f = open(os.path.join(self.root, log), "ab")
        p = subprocess.Popen([DROVER_BIN] + args, stdout=f, stderr=subprocess.STDOUT,
                             env=self.env, cwd=self.root, start_new_session=True)
        f.close()
        self.procs.append(p)
        return p

    def start(self) -> None:
        self.spawn(["broker", "--store", os.path.join(self.root, "drover.db"),
                    "--clients", self.clients, "--workers", self.workers,
                    "--events", self.events, "--sync", "off", "--log-level", "warn"],
                   "broker.log")
        self.spawn(["collector", "--events", self.events, "--broker", self.clients,
                    "--bind", self.collector, "--http", f"127.0.0.1:{self.http_port}",
                    "--store", os.path.join(self.root, "collector.db"),
                    "--log-level", "warn"], "collector.log")
        self.spawn(["worker", "--broker", self.workers, "--name", "json-worker",
                    "--concurrency", "2", "--log-level", "warn",
                    "--exec", "fail=sh -c 'echo boom >&2; exit 1'",
                    "--exec", "sleep=sh -c 'sleep 30'"], "worker.log")

    def run(self, *args: str, timeout: float = 60, input: Optional[str] = None) -> Run:
        p = subprocess.run([DROVER_BIN] + list(args), capture_output=True, text=True,
                           env=self.env, timeout=timeout, input=input)
        return Run(p)

    def wait_for(self, cond, what: str, timeout: float = 20.0) -> Any:
        """Polls cond() until it returns something true; its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = cond()
            if v:
                return v
            time.sleep(0.1)
        raise AssertionError(f"not within {timeout} s: {what}; logs in {self.root}")

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
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs.clear()


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest):
    root = tempfile.mkdtemp(prefix="drover-json-")
    c = Cluster(root)
    try:
        c.start()
        # ready: the collector has seen the broker and the worker
        c.wait_for(lambda: c.run("workers", "--json").rc == 0
                   and c.run("workers", "--json").json().get("workers"),
                   "the collector shows the worker")
        yield c
    finally:
        c.stop()
    if request.session.testsfailed:
        print(f"\ndrover logs kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
