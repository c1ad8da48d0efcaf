#!/usr/bin/env python3
"""An exec handler with drover.handler: counts the words of payload.text,
line by line, reporting progress.

    drover worker --exec wordcount='python3 examples/python/wordcount.py'
    drover submit --type wordcount --payload '{"text": "a b\\nc"}' --wait
"""
from drover import handler


def wordcount(payload):
    if not isinstance(payload, dict) or not isinstance(payload.get("text"), str):
        raise handler.Fail("invalid_input", 'payload must be {"text": "..."}')
    lines = payload["text"].splitlines()
    words = 0
    for i, line in enumerate(lines, 1):
        words += len(line.split())
        handler.progress(i, len(lines), f"line {i}")
    return {"lines": len(lines), "words": words}


handler.run(wordcount)
