"""The end-to-end no-op benchmark on Celery with Redis as broker and result
backend: the app (a no-op task) and the producer, in one module.

The worker is this module's app, started by bench/peers/run.sh:

    celery -A celery_bench worker --pool prefork --concurrency 2 ...

The producer (python3 celery_bench.py --jobs N) waits until a worker
answers a ping, then takes the fast path Celery documents for many jobs
whose results are wanted: apply_async in a loop on one producer taken
from the pool (app.producer_or_acquire: one connection, one message per
task), then waits for the results with the result backend's get_many:
MGET of the outstanding results every 0.5 s (Celery's default interval),
as Celery waits on a key-value backend without pub/sub. --native waits
with ResultSet.get() instead (join_native: pub/sub on the Redis backend),
which in one run of 100,000 tasks here did not return: every result was
stored, and the wait went on to its timeout.
--group sends the tasks as one group (group(...).apply_async()): the same
messages, about half as fast to send here. Timed from the first message
sent to the last result in; prints one line:

    celery: 100000 jobs, 1 producer, 2 worker processes: put N jobs/s,
    end-to-end N jobs/s (S s)

PEERS_REDIS_URL names Redis (default redis://127.0.0.1:6379/0).
"""

import argparse
import os
import sys
import time

from celery import Celery, group

URL = os.environ.get("PEERS_REDIS_URL", "redis://127.0.0.1:6379/0")

app = Celery("celery_bench", broker=URL, backend=URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
)


@app.task(name="noop")
def noop():
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=100000)
    p.add_argument("--workers", type=int, default=2,
                   help="the worker's processes (only printed)")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--native", action="store_true",
                   help="wait with ResultSet.get() (join_native, by "
                   "pub/sub) instead of polling the results")
    p.add_argument("--group", action="store_true",
                   help="send the jobs as one group (else apply_async in a "
                   "loop on one producer)")
    a = p.parse_args()

    deadline = time.monotonic() + 60
    while not app.control.ping(timeout=1.0):
        if time.monotonic() > deadline:
            print("celery_bench: no worker answered within 60 s",
                  file=sys.stderr)
            return 1

    if a.group:
        sigs = [noop.s() for _ in range(a.jobs)]
        t0 = time.monotonic()
        res = group(sigs).apply_async()
    else:
        t0 = time.monotonic()
        with app.producer_or_acquire() as producer:
            res = app.ResultSet([noop.apply_async(producer=producer)
                                 for _ in range(a.jobs)])
    t_put = time.monotonic()
    ok = 0
    if a.native:
        res.get(timeout=a.timeout)
        ok = a.jobs if res.successful() else 0
    else:
        ids = [r.id for r in res.results]
        for _, meta in app.backend.get_many(ids, timeout=a.timeout):
            ok += meta["status"] == "SUCCESS"
    t_end = time.monotonic()
    if ok != a.jobs:
        print(f"celery_bench: {ok} of {a.jobs} tasks succeeded",
              file=sys.stderr)
        return 1
    total = t_end - t0
    print(f"celery: {a.jobs} jobs, 1 producer, {a.workers} worker processes: "
          f"put {a.jobs / (t_put - t0):.0f} jobs/s, "
          f"end-to-end {a.jobs / total:.0f} jobs/s ({total:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
