#!/usr/bin/env python3
"""An exec handler in Python: counts words in payload["text"] (or in the
file payload["path"]), reporting progress per line, and shows one way to
be idempotent under at-least-once delivery: a result already computed for
this job id is returned again instead of redoing the work.

    drover worker --exec wordcount=/path/to/wordcount.py
    drover submit --type wordcount --payload '{"text": "a b\\nc"}' --wait

Exit codes: 0 success, 75 retry later (EX_TEMPFAIL), 65 bad input (not
worth retrying). The last line on stderr becomes the failure message.
"""
import json
import os
import sys
import tempfile

EX_DATAERR = 65
EX_TEMPFAIL = 75

# Where finished results are remembered, keyed by job id. Use shared,
# durable storage (a database table with a unique key) in production.
DONE_DIR = os.environ.get("WORDCOUNT_DONE_DIR",
                          os.path.join(tempfile.gettempdir(), "wordcount-done"))


def progress(current, total, message=""):
    fd = os.environ.get("DROVER_PROGRESS_FD")
    if fd is None:
        return
    os.write(int(fd), f"PROGRESS {current} {total} {message}\n".encode())


def main():
    try:
        payload = json.load(sys.stdin)
    except ValueError as e:
        print(f"payload is not JSON: {e}", file=sys.stderr)
        return EX_DATAERR

    job_id = os.environ.get("DROVER_JOB_ID", "")
    marker = os.path.join(DONE_DIR, job_id) if job_id else None
    if marker and os.path.exists(marker):
        # A retry of a job that already finished once (the first outcome
        # was lost on the way to the broker): answer the same again.
        with open(marker) as f:
            sys.stdout.write(f.read())
        return 0

    if not isinstance(payload, dict):
        print("payload must be an object with text or path", file=sys.stderr)
        return EX_DATAERR
    if "path" in payload:
        try:
            with open(payload["path"]) as f:
                text = f.read()
        except FileNotFoundError:
            print(f"no such file: {payload['path']}", file=sys.stderr)
            return EX_DATAERR
        except OSError as e:
            # Maybe a network file system hiccup: let the broker retry.
            print(f"cannot read {payload['path']}: {e}", file=sys.stderr)
            return EX_TEMPFAIL
    else:
        text = str(payload.get("text", ""))

    lines = text.splitlines()
    words = 0
    for i, line in enumerate(lines, 1):
        words += len(line.split())
        progress(i, len(lines), f"line {i}")

    result = json.dumps({"lines": len(lines), "words": words,
                         "chars": len(text)})
    if marker:
        os.makedirs(DONE_DIR, exist_ok=True)
        tmp = marker + ".tmp"
        with open(tmp, "w") as f:
            f.write(result)
        os.replace(tmp, marker)  # atomic: never a half-written marker
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
