"""drover: a Python client for the drover job queue.

A ctypes binding of libdrover (the C client library; see docs/python.md),
standard library only:

    import drover
    with drover.Client("tcp://127.0.0.1:7700") as c:
        ids = [c.submit("echo", {"n": i}) for i in range(3)]
        for r in c.as_completed(ids):
            print(r.id, r.state, r.result)

:mod:`drover.aio` has the same calls for asyncio; :mod:`drover.handler`
helps write exec handlers.

libdrover.so is loaded on first use of a client name (``drover.Client``,
``drover.DroverError``, ...; see :mod:`drover._lib` for where it is looked
for), which raises :class:`DroverLibraryNotFound` when it cannot be found.
``from drover import handler`` does not load it: handlers need only the
standard library.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "Ack": "client", "CHUNK": "client", "Client": "client", "Result": "client",
    "BrokerUnreachable": "errors", "DroverError": "errors", "InvalidJob": "errors",
    "Rejected": "errors", "WaitTimeout": "errors",
    "DroverLibraryNotFound": "_lib",
}

if TYPE_CHECKING:
    from ._lib import DroverLibraryNotFound
    from .client import CHUNK, Ack, Client, Result
    from .errors import (BrokerUnreachable, DroverError, InvalidJob, Rejected,
                         WaitTimeout)


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'drover' has no attribute {name!r}")
    return getattr(importlib.import_module("." + mod, __name__), name)


__all__ = sorted(_LAZY)
