#!/usr/bin/env python3
"""Submit throughput: Client.submit_many from Python against
`drover submit --file` of the same JSON Lines, on one broker.

    DROVER_LIB=build/producer/libdrover.so PYTHONPATH=clients/python \\
        python3 clients/python/bench_submit.py --drover build/cli/drover [-n 100000]

Starts a broker of its own (store in a temp dir, default --sync full, no
worker: the jobs stay queued) unless --broker names one. One run each,
Python first; the figures include reading the job file for both.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--drover", required=True, help="the drover executable")
    ap.add_argument("--broker", help="client endpoint of a running broker")
    ap.add_argument("-n", type=int, default=100_000)
    ap.add_argument("--sync", default="full", help="the started broker's --sync")
    a = ap.parse_args()

    import drover

    tmp = tempfile.mkdtemp(prefix="drover-bench-py-")
    broker = None
    try:
        ep = a.broker
        if not ep:
            ep = f"tcp://127.0.0.1:{free_port()}"
            broker = subprocess.Popen(
                [a.drover, "broker", "--store", os.path.join(tmp, "drover.db"), "--clients", ep,
                 "--workers", f"tcp://127.0.0.1:{free_port()}",
                 "--events", f"tcp://127.0.0.1:{free_port()}", "--sync", a.sync,
                 "--log-level", "warn"], stderr=subprocess.DEVNULL, start_new_session=True)
        path = os.path.join(tmp, "jobs.jsonl")
        with open(path, "w") as f:
            for i in range(a.n):
                f.write(json.dumps({"type": "noop", "payload": {"i": i}}) + "\n")
        with drover.Client(ep) as c:
            c.status()  # connected, broker up
            t0 = time.perf_counter()
            with open(path) as f:
                acks = c.submit_many(json.loads(line) for line in f)
            py = time.perf_counter() - t0
        assert sum(ack.ok for ack in acks) == a.n
        t0 = time.perf_counter()
        subprocess.run([a.drover, "submit", "--broker", ep, "--file", path, "-q"], check=True,
                       stdout=subprocess.DEVNULL)
        cli = time.perf_counter() - t0
        print(f"python submit_many: {a.n} jobs in {py:.2f} s ({a.n / py:,.0f} jobs/s)")
        print(f"drover submit --file: {a.n} jobs in {cli:.2f} s ({a.n / cli:,.0f} jobs/s)")
    finally:
        if broker is not None:
            os.kill(broker.pid, signal.SIGTERM)
            broker.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
