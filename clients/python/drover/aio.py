"""asyncio client: :class:`AsyncClient`, the calls of
:class:`drover.Client` as coroutines.

libdrover's calls block, and a libdrover client must not be used by two
threads at once. So each :class:`AsyncClient` owns one worker thread (a
single-thread executor) and, created in that thread, its own
:class:`drover.Client`; every method hands its call to that thread and
awaits the future. The event loop never blocks, and calls of one
AsyncClient run one after another in the order they were made. For calls
that should overlap (say, a long ``wait`` next to new submits), use two
AsyncClients: each has its own thread and connection.

:meth:`AsyncClient.as_completed` is an async generator: the wait runs in
the client's thread, and its callback hands each result to the event loop
(``call_soon_threadsafe``) as it arrives. While it runs, the client's
other calls queue behind it. Leaving the ``async for`` early stops the
wait at the next result.

    async with AsyncClient("tcp://127.0.0.1:7700") as c:
        acks = await c.submit_many({"type": "echo", "payload": i} for i in range(10_000))
        results = await c.wait([a.id for a in acks])
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, AsyncIterator, Dict, Iterable, List, Mapping, Optional

from . import _lib
from .client import Ack, Client, Result
from .errors import WaitTimeout


class AsyncClient:
    """An asyncio front to a :class:`drover.Client` that lives in a
    thread of its own. Takes the arguments of :class:`drover.Client`; the
    connection is made in that thread on first use."""

    def __init__(self, endpoints: Optional[str] = None, timeout: float = 5.0,
                 curve_secret: Optional[str] = None, curve_server: Optional[str] = None) -> None:
        self._args = (endpoints, timeout, curve_secret, curve_server)
        self._ex = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="drover-aio")
        self._client: Optional[Client] = None
        self._closed = False

    def _client_here(self) -> Client:
        # Runs in the executor's thread only.
        if self._client is None:
            self._client = Client(*self._args)
        return self._client

    async def _call(self, name: str, *args: Any, **kw: Any) -> Any:
        if self._closed:
            raise RuntimeError("AsyncClient is closed")

        def call() -> Any:
            return getattr(self._client_here(), name)(*args, **kw)

        return await asyncio.get_running_loop().run_in_executor(self._ex, call)

    async def submit(self, type: str, payload: Any = None, **options: Any) -> str:
        """:meth:`drover.Client.submit` as a coroutine."""
        return await self._call("submit", type, payload, **options)

    async def submit_many(self, jobs: Iterable[Mapping[str, Any]], *, chunk: int = 10_000) -> List[Ack]:
        """:meth:`drover.Client.submit_many` as a coroutine (the jobs are
        read in the client's thread)."""
        return await self._call("submit_many", jobs, chunk=chunk)

    async def wait(self, ids: Iterable[str], timeout: Optional[float] = None) -> Dict[str, Result]:
        """:meth:`drover.Client.wait` as a coroutine."""
        return await self._call("wait", list(ids), timeout)

    async def cancel(self, id: str) -> None:
        """:meth:`drover.Client.cancel` as a coroutine."""
        await self._call("cancel", id)

    async def job(self, id: str) -> Dict[str, Any]:
        """:meth:`drover.Client.job` as a coroutine."""
        return await self._call("job", id)

    async def ctrl(self, verb: str, **kw: Any) -> Any:
        """:meth:`drover.Client.ctrl` as a coroutine."""
        return await self._call("ctrl", verb, **kw)

    async def schedule_add(self, name: str, type: str, **kw: Any) -> Dict[str, Any]:
        """:meth:`drover.Client.schedule_add` as a coroutine."""
        return await self._call("schedule_add", name, type, **kw)

    async def schedules(self) -> List[Dict[str, Any]]:
        """:meth:`drover.Client.schedules` as a coroutine."""
        return await self._call("schedules")

    async def schedule(self, name: str) -> Dict[str, Any]:
        """:meth:`drover.Client.schedule` as a coroutine."""
        return await self._call("schedule", name)

    async def schedule_pause(self, name: str) -> Dict[str, Any]:
        """:meth:`drover.Client.schedule_pause` as a coroutine."""
        return await self._call("schedule_pause", name)

    async def schedule_resume(self, name: str) -> Dict[str, Any]:
        """:meth:`drover.Client.schedule_resume` as a coroutine."""
        return await self._call("schedule_resume", name)

    async def schedule_remove(self, name: str) -> None:
        """:meth:`drover.Client.schedule_remove` as a coroutine."""
        await self._call("schedule_remove", name)

    async def as_completed(self, ids: Iterable[str], timeout: Optional[float] = None) -> AsyncIterator[Result]:
        """Yields each job's :class:`drover.Result` as it ends (order of
        completion). Raises WaitTimeout when ``timeout`` passes first,
        after yielding the results that came."""
        ids = list(ids)
        if not ids:
            return
        if self._closed:
            raise RuntimeError("AsyncClient is closed")
        loop = asyncio.get_running_loop()
        q: "asyncio.Queue[Any]" = asyncio.Queue()
        stop = threading.Event()

        def put(r: Result) -> bool:
            loop.call_soon_threadsafe(q.put_nowait, r)
            return stop.is_set()

        def run() -> int:
            return self._client_here()._wait(ids, timeout, put)

        fut = loop.run_in_executor(self._ex, run)
        getter: Optional[asyncio.Task[Any]] = None
        try:
            while True:
                getter = asyncio.ensure_future(q.get())
                await asyncio.wait({getter, fut}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                    continue
                getter.cancel()
                # The wait is over: drain what the loop has not handed out
                # yet (call_soon_threadsafe ran before the future was set).
                await asyncio.sleep(0)
                while not q.empty():
                    yield q.get_nowait()
                rc = fut.result()  # raises the wait's DroverError
                if rc == _lib.ETIMEOUT:
                    raise WaitTimeout(f"not every job had ended after {timeout} s", _lib.ETIMEOUT)
                return
        finally:
            stop.set()
            if getter is not None and not getter.done():
                getter.cancel()
            if not fut.done():
                # Left early: the wait ends at its next result; its outcome
                # is not wanted.
                fut.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def close(self) -> None:
        """Closes the connection and stops the thread (idempotent)."""
        if self._closed:
            return
        self._closed = True

        def close() -> None:
            if self._client is not None:
                self._client.close()

        await asyncio.get_running_loop().run_in_executor(self._ex, close)
        self._ex.shutdown(wait=False)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


__all__ = ["AsyncClient"]
