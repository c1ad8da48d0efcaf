#!/usr/bin/env python3
"""Submits a JSON Lines file of prompts as one batch and writes the results.

    python3 submit_prompts.py prompts.jsonl results.jsonl [TYPE]

Each input line is a payload ({"prompt": ...}); TYPE defaults to "llm".
"""
import json
import sys

import drover

src, dst = sys.argv[1], sys.argv[2]
jtype = sys.argv[3] if len(sys.argv) > 3 else "llm"
with open(src) as f:
    jobs = [{"type": jtype, "payload": json.loads(line), "batch": src}
            for line in f if line.strip()]

with drover.Client() as c, open(dst, "w") as out:
    acks = c.submit_many(jobs)
    ids = [a.id for a in acks if a.ok]
    for a in acks:
        if not a.ok:
            print(f"refused: {a.error}", file=sys.stderr)
    done = {"succeeded": 0, "dead": 0, "cancelled": 0, "unknown": 0}
    for r in c.as_completed(ids):
        done[r.state] += 1
        out.write(json.dumps({"id": r.id, "state": r.state, "result": r.result,
                              "error": r.error}) + "\n")
        print(f"\r{sum(done.values())}/{len(ids)} {done}", end="", file=sys.stderr)
    print(file=sys.stderr)
sys.exit(0 if done["succeeded"] == len(jobs) else 1)
