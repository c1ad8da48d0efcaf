"""Helpers for exec handlers written in Python (docs/handlers.md).

An exec handler gets the job's payload as JSON on stdin and writes its
result on stdout; progress and failure hints go as lines to the descriptor
named by ``DROVER_PROGRESS_FD``. :func:`run` does the plumbing::

    from drover import handler

    def resize(payload):
        handler.progress(1, 2, "loading")
        if busy():
            raise handler.RetryLater(after=30)       # retried in >= 30 s
        if not payload.get("url"):
            raise handler.Fail("invalid_input", "no url")  # not retried
        return {"ok": True}

    handler.run(resize)

and the worker runs it with ``--exec resize='python3 resize.py'``.

Exit codes: 0 on success; 75 (EX_TEMPFAIL: retryable) for
:class:`RetryLater` and for ``Fail(..., retryable=True)``; 1 (not
retried) for :class:`Fail` and for any other exception, whose traceback
goes to stderr. The failure's message is sent as a ``MESSAGE`` hint
(``ValueError: ...`` for an exception), and ``Fail``'s retryability as
``RETRYABLE``, so they do not depend on stderr's last line or the exit
status.

This module does not load libdrover: a handler needs only the standard
library.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any, Callable, Optional

EX_TEMPFAIL = 75


class RetryLater(Exception):
    """Fail this attempt and have the broker retry it no earlier than
    ``after`` seconds from now."""

    def __init__(self, after: float = 30, message: str = "") -> None:
        super().__init__(message or f"retry after {after} s")
        self.after = after
        self.message = message or f"retry after {after} s"


class Fail(Exception):
    """Fail this attempt with a category (``"invalid_input"``,
    ``"upstream"``, ``"rate_limited"``, ...) and a message; not retried
    unless ``retryable``."""

    def __init__(self, category: str, message: str = "", retryable: bool = False) -> None:
        super().__init__(message or category)
        self.category = category
        self.message = message or category
        self.retryable = retryable


def _one_line(s: str) -> str:
    return " ".join(str(s).split())


def hint(kind: str, *fields: Any) -> bool:
    """Writes one line ``KIND field...`` to the worker's hint descriptor
    (``DROVER_PROGRESS_FD``): ``PROGRESS``, ``RETRY_AFTER``, ``CATEGORY``,
    ``RETRYABLE``, ``MESSAGE``.
    Every line this module sends goes through here. Returns False (and
    writes nothing) when the handler does not run under a worker."""
    fd = os.environ.get("DROVER_PROGRESS_FD")
    if not fd:
        return False
    line = " ".join([kind] + [_one_line(f) for f in fields if f != ""]) + "\n"
    try:
        os.write(int(fd), line.encode("utf-8"))
    except (OSError, ValueError):
        return False
    return True


def progress(current: int, total: int = 0, message: str = "") -> bool:
    """Reports progress ``current`` of ``total`` (0: unknown) with an
    optional message. A no-op (False) outside a worker."""
    return hint("PROGRESS", int(current), int(total), message)


def _fmt_seconds(s: float) -> str:
    s = float(s)
    return str(int(s)) if s.is_integer() else repr(s)


def run(fn: Callable[[Any], Any], *, exit: Callable[[int], Any] = sys.exit) -> None:
    """Runs an exec handler: reads the payload (JSON on stdin; empty input
    is None), calls ``fn(payload)``, writes its return value as JSON to
    stdout, and exits (0 on success; see the module docstring for the
    failures). Never returns normally."""
    code = _run(fn)
    sys.stdout.flush()
    sys.stderr.flush()
    exit(code)


def _run(fn: Callable[[Any], Any]) -> int:
    try:
        text = sys.stdin.read()
        try:
            payload: Optional[Any] = json.loads(text) if text.strip() else None
        except ValueError as e:
            raise Fail("invalid_input", f"payload is not JSON: {e}") from None
        result = fn(payload)
        out = json.dumps(result)
    except RetryLater as e:
        hint("RETRY_AFTER", _fmt_seconds(e.after))
        print(_one_line(e.message), file=sys.stderr)
        return EX_TEMPFAIL
    except Fail as e:
        hint("CATEGORY", e.category)
        hint("RETRYABLE", "yes" if e.retryable else "no")
        hint("MESSAGE", e.message)
        print(_one_line(e.message), file=sys.stderr)
        return EX_TEMPFAIL if e.retryable else 1
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001 - reported, then a failed attempt
        hint("MESSAGE", "".join(traceback.format_exception_only(type(e), e)))
        traceback.print_exc(file=sys.stderr)
        return 1
    sys.stdout.write(out + "\n")
    return 0


__all__ = ["EX_TEMPFAIL", "Fail", "RetryLater", "hint", "progress", "run"]
