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
retried) for :class:`Fail` and for any other exception. The failure's
message is sent as a ``MESSAGE`` hint (``ValueError: ...`` for an
exception), and ``Fail``'s retryability as ``RETRYABLE``, so they do not
depend on stderr's last line or the exit status. An exception's full
traceback goes as ``DETAIL`` lines: the broker keeps it with the attempt
and ``drover job ID`` shows it (stderr then gets one line saying so;
outside a worker the traceback goes to stderr as usual).

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

    def __init__(
        self,
        category: str,
        message: str = "",
        retryable: bool = False,
        details: str = "",
    ) -> None:
        super().__init__(message or category)
        self.category = category
        self.message = message or category
        self.retryable = retryable
        self.details = details


def _one_line(s: str) -> str:
    return " ".join(str(s).split())


def hint(kind: str, *fields: Any) -> bool:
    """Writes one line ``KIND field...`` to the worker's hint descriptor
    (``DROVER_PROGRESS_FD``): ``PROGRESS``, ``RETRY_AFTER``, ``CATEGORY``,
    ``RETRYABLE``, ``MESSAGE`` (each field on one line, runs of blanks made
    one space; :func:`detail` sends text as it is).
    Returns False (and writes nothing) when the handler does not run
    under a worker."""
    return _send(" ".join([kind] + [_one_line(f) for f in fields if f != ""]) + "\n")


def _send(text: str) -> bool:
    """Writes whole lines to the hint descriptor; every line this module
    sends goes through here."""
    fd = os.environ.get("DROVER_PROGRESS_FD")
    if not fd:
        return False
    data = text.encode("utf-8", errors="replace")
    try:
        fdn = int(fd)
        while data:
            data = data[os.write(fdn, data) :]
    except (OSError, ValueError):
        return False
    return True


def detail(text: str) -> bool:
    """Adds ``text`` (any number of lines, indentation kept) to the
    failure's details, which the broker keeps with the attempt if it then
    fails (the last 8 KB; ``drover job ID`` shows them). Sent as one
    ``DETAIL`` line per line. False (nothing sent) outside a worker."""
    lines = str(text).replace("\r", "").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return _send("".join(f"DETAIL {line}\n" for line in lines))


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
        if e.details:
            detail(e.details)
        print(_one_line(e.message), file=sys.stderr)
        return EX_TEMPFAIL if e.retryable else 1
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001 - reported, then a failed attempt
        summary = _one_line("".join(traceback.format_exception_only(type(e), e)))
        hint("MESSAGE", summary)
        if detail(traceback.format_exc()):
            print(f"{summary} (traceback in the attempt's details)", file=sys.stderr)
        else:
            traceback.print_exc(file=sys.stderr)
        return 1
    sys.stdout.write(out + "\n")
    return 0


__all__ = ["EX_TEMPFAIL", "Fail", "RetryLater", "detail", "hint", "progress", "run"]
