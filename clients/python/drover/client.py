"""The synchronous client: a thin layer over libdrover's calls.

A :class:`Client` owns one libdrover client (one ZeroMQ connection). Its
calls block until the broker answered (or the timeout passed), as the C
calls do. libdrover clients are not thread-safe; a :class:`Client`
serialises its own calls with a lock, so sharing one between threads is
safe but gains nothing: give each thread its own for parallelism.
"""

from __future__ import annotations

import ctypes
import json
import queue as _queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence

from . import _lib
from .errors import BrokerUnreachable, DroverError, InvalidJob, WaitTimeout, from_code

_lib_ = _lib.lib

#: Jobs per drover_submit_many() call in Client.submit_many.
CHUNK = 10_000

_JOB_KEYS = frozenset(
    ("type", "payload", "queue", "priority", "delay", "max_attempts", "timeout",
     "key", "batch", "backoff", "result_ttl", "after", "after_any")
)


@dataclass
class Ack:
    """The broker's answer for one job of :meth:`Client.submit_many`.

    Attributes:
        id: the job id, or None when the job was not accepted.
        duplicate: its key had been seen: ``id`` is the first job's.
        error: why it was not accepted; None when it was.
        code: the broker's error code for a refusal (``"invalid_argument"``,
            ...), else None.
        unanswered: no answer came for it (``error`` says so): it may or
            may not have been stored.
    """

    id: Optional[str]
    duplicate: bool = False
    error: Optional[str] = None
    code: Optional[str] = None
    unanswered: bool = False

    @property
    def ok(self) -> bool:
        """The job was accepted (stored by the broker)."""
        return self.error is None


@dataclass
class Result:
    """One job's outcome, from :meth:`Client.wait` or
    :meth:`Client.as_completed`.

    Attributes:
        id: the job id.
        state: ``"succeeded"``, ``"dead"``, ``"cancelled"`` or
            ``"unknown"`` (the broker has no such job).
        attempts: attempts made.
        result: the handler's result, parsed from JSON (None unless
            succeeded).
        category: the last failure's category (``"timeout"``,
            ``"handler"``, ...), or None.
        error: the last failure's message, or None.
        finished_ms: when the job ended, epoch milliseconds (0 if unknown).
    """

    id: str
    state: str
    attempts: int = 0
    result: Any = None
    category: Optional[str] = None
    error: Optional[str] = None
    finished_ms: int = 0

    @property
    def ok(self) -> bool:
        """The job succeeded."""
        return self.state == "succeeded"


def _b(s: Optional[str]) -> Optional[bytes]:
    if s is None:
        return None
    return s.encode("utf-8") if isinstance(s, str) else bytes(s)


def _s(b: Optional[bytes]) -> Optional[str]:
    return None if b is None else b.decode("utf-8", "replace")


def _fill(j: _lib.JobT, spec: Mapping[str, Any], keep: List[Any]) -> None:
    """Fills a job struct from a dict of Client.submit's keyword arguments
    (as drover_job_init() would, then the fields given). Encoded strings
    are appended to keep, which must outlive the C call."""
    extra = spec.keys() - _JOB_KEYS
    if extra:
        raise InvalidJob("unknown job field(s): " + ", ".join(sorted(extra)), _lib.EINVAL)
    t = spec.get("type")
    if not t:
        raise InvalidJob("a job needs a type", _lib.EINVAL)
    strs = [_b(t), json.dumps(spec.get("payload")).encode("utf-8"),
            _b(spec.get("queue")), _b(spec.get("key")), _b(spec.get("batch"))]
    keep.append(strs)
    j.type, j.payload_json, j.queue, j.key, j.batch = strs
    p = spec.get("priority")
    j.priority = -1 if p is None else int(p)
    j.delay_s = float(spec.get("delay") or 0)
    j.max_attempts = int(spec.get("max_attempts") or 0)
    j.timeout_s = float(spec.get("timeout") or 0)
    j.result_ttl_s = float(spec.get("result_ttl") or 0)
    for field in ("after", "after_any"):
        ids = spec.get(field)
        if ids is None:
            continue
        if isinstance(ids, (str, bytes)):
            raise InvalidJob(field + " must be a list of job ids", _lib.EINVAL)
        arr = (ctypes.c_char_p * max(len(ids), 1))(*[_b(i) for i in ids])
        keep.append(arr)
        setattr(j, field, ctypes.cast(arr, ctypes.POINTER(ctypes.c_char_p)))
        setattr(j, "n" + field, len(ids))
    bo = spec.get("backoff")
    if bo:
        unknown = set(bo) - {"base", "factor", "cap", "jitter"}
        if unknown:
            raise InvalidJob("unknown backoff field(s): " + ", ".join(sorted(unknown)), _lib.EINVAL)
        j.backoff_base_s = float(bo["base"]) if bo.get("base") is not None else -1.0
        j.backoff_factor = float(bo["factor"]) if bo.get("factor") is not None else -1.0
        j.backoff_cap_s = float(bo["cap"]) if bo.get("cap") is not None else -1.0
        j.backoff_jitter = -1 if bo.get("jitter") is None else int(bool(bo["jitter"]))
    else:
        j.backoff_base_s = j.backoff_factor = j.backoff_cap_s = -1.0
        j.backoff_jitter = -1


def _result(r: _lib.ResultT) -> Result:
    rj = r.result_json
    return Result(
        id=r.id.decode("ascii"),
        state=r.state.decode("ascii"),
        attempts=r.attempts,
        result=json.loads(rj) if rj is not None else None,
        category=_s(r.category),
        error=_s(r.error),
        finished_ms=r.finished_ms,
    )


class Client:
    """A connection to a drover broker (or a list of them, with failover).

    Args:
        endpoints: comma-separated broker endpoints
            (``"tcp://b1:7700,tcp://b2:7700"``); None means the
            ``DROVER_BROKER`` environment variable, else
            ``tcp://127.0.0.1:7700``.
        timeout: seconds a request waits for an answer before the client
            fails over to the next endpoint; a request is tried once on
            each endpoint before it raises :class:`BrokerUnreachable`.
        curve_secret: CurveZMQ: path of our certificate's secret file; None
            means ``DROVER_CURVE_SECRET``, ``""`` none.
        curve_server: path of the broker's public certificate; None means
            ``DROVER_CURVE_SERVER``, ``""`` none.

    Connecting does not contact the broker: an unreachable one shows up on
    the first request. Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, endpoints: Optional[str] = None, timeout: float = 5.0,
                 curve_secret: Optional[str] = None, curve_server: Optional[str] = None) -> None:
        self._conf = (endpoints, timeout, curve_secret, curve_server)
        self._mu = threading.Lock()
        o = _lib.OptsT()
        _lib_.drover_opts_init(ctypes.byref(o))
        o.endpoints = _b(endpoints)
        o.timeout_ms = max(1, int(timeout * 1000)) if timeout and timeout > 0 else 0
        o.curve_secret = _b(curve_secret)
        o.curve_server = _b(curve_server)
        h = _lib_.drover_connect_opts(ctypes.byref(o))
        if not h:
            msg = _s(_lib_.drover_last_error(None)) or "cannot create client"
            raise DroverError(msg, _lib.EINVAL)
        self._h: Optional[int] = h

    # -- plumbing ----------------------------------------------------------

    def _handle(self) -> int:
        if self._h is None:
            raise DroverError("client is closed", _lib.EINVAL)
        return self._h

    def _error(self, rc: int) -> DroverError:
        msg = _s(_lib_.drover_last_error(self._h)) or _lib.strerror(rc)
        code = _s(_lib_.drover_last_code(self._h)) if rc == _lib.EREJECTED else None
        return from_code(rc, msg, code)

    def close(self) -> None:
        """Closes the connection (idempotent)."""
        with self._mu:
            if self._h is not None:
                h = ctypes.c_void_p(self._h)
                _lib_.drover_close(ctypes.byref(h))
                self._h = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    @property
    def endpoint(self) -> str:
        """The broker endpoint in use now (it changes on failover)."""
        with self._mu:
            return _s(_lib_.drover_endpoint(self._handle())) or ""

    # -- submitting --------------------------------------------------------

    def submit(self, type: str, payload: Any = None, *, queue: Optional[str] = None,
               priority: Optional[int] = None, delay: Optional[float] = None,
               max_attempts: Optional[int] = None, timeout: Optional[float] = None,
               key: Optional[str] = None, batch: Optional[str] = None,
               backoff: Optional[Mapping[str, Any]] = None,
               result_ttl: Optional[float] = None,
               after: Optional[Sequence[str]] = None,
               after_any: Optional[Sequence[str]] = None) -> str:
        """Submits one job and returns its id once the broker has stored it.

        Args:
            type: the handler name.
            payload: any JSON-serialisable value (sent as JSON text).
            queue: queue name (default ``"default"``).
            priority: 0..9, higher first (default 5).
            delay: seconds; run no earlier than now + delay.
            max_attempts: 1..1000 (broker default 5).
            timeout: seconds, limit per attempt (worker default).
            key: idempotency key: a key seen before returns the first
                job's id and adds nothing.
            batch: batch name.
            backoff: retry policy, a dict of ``base``, ``factor``, ``cap``
                (seconds) and ``jitter`` (bool); missing ones are defaults.
            result_ttl: seconds the broker keeps the result.
            after: ids of jobs that must all succeed before this one runs
                (until then its state is ``"waiting"``; if one of them
                ends dead or cancelled, this one is cancelled).
            after_any: ids of jobs that must all end, however, before
                this one runs. At most 100 ids each; every id must name
                an existing job (else :class:`Rejected`, code
                ``not_found``).

        Raises:
            InvalidJob, Rejected, BrokerUnreachable, DroverError.
        """
        spec = {k: v for k, v in dict(
            type=type, payload=payload, queue=queue, priority=priority, delay=delay,
            max_attempts=max_attempts, timeout=timeout, key=key, batch=batch,
            backoff=backoff, result_ttl=result_ttl, after=after,
            after_any=after_any).items() if v is not None}
        j = _lib.JobT()
        keep: List[Any] = []
        _fill(j, spec, keep)
        out = ctypes.create_string_buffer(_lib.ID_SIZE)
        with self._mu:
            rc = _lib_.drover_submit(self._handle(), ctypes.byref(j), out)
            if rc != _lib.OK:
                raise self._error(rc)
        return out.value.decode("ascii")

    def submit_many(self, jobs: Iterable[Mapping[str, Any]], *, chunk: int = CHUNK) -> List[Ack]:
        """Submits many jobs, pipelined, and returns one :class:`Ack` per
        job in input order.

        Each job is a dict with the keyword arguments of :meth:`submit`
        (``type`` required). Jobs go to ``drover_submit_many`` ``chunk`` at
        a time. A job was accepted exactly when its ``ack.error`` is None.
        A job dict with an unknown key raises :class:`InvalidJob` before
        anything of its chunk is sent.

        When the broker stops answering, the jobs without an answer get
        ``unanswered=True`` and the rest are not sent (their ack says so);
        if no job at all was answered, :class:`BrokerUnreachable` is raised
        instead.
        """
        acks: List[Ack] = []
        it = iter(jobs)
        answered = False
        while True:
            batch: List[Mapping[str, Any]] = []
            for spec in it:
                batch.append(spec)
                if len(batch) >= chunk:
                    break
            if not batch:
                return acks
            n = len(batch)
            arr = (_lib.JobT * n)()
            keep: List[Any] = []
            for i, spec in enumerate(batch):
                _fill(arr[i], spec, keep)
            out = (_lib.AckT * n)()
            with self._mu:
                rc = _lib_.drover_submit_many(self._handle(), arr, n, out)
                err = self._error(rc) if rc != _lib.OK else None
            if rc not in (_lib.OK, _lib.EUNREACHABLE, _lib.ETIMEOUT):
                assert err is not None
                raise err
            for a in out:
                e = a.error
                if not a.unanswered:
                    answered = True
                acks.append(Ack(
                    id=a.id.decode("ascii") if not e and a.id else None,
                    duplicate=bool(a.duplicate),
                    error=e.decode("utf-8", "replace") if e else None,
                    code=_s(a.code),
                    unanswered=bool(a.unanswered),
                ))
            if rc != _lib.OK:
                if not answered:
                    assert err is not None
                    raise err
                for spec in it:
                    acks.append(Ack(id=None, error="not sent: no answer from broker",
                                    unanswered=True))
                return acks

    # -- waiting -----------------------------------------------------------

    def _wait(self, ids: Sequence[str], timeout: Optional[float],
              on_result: Callable[[Result], bool]) -> int:
        """drover_wait() over ids; on_result(result) -> True stops. An
        exception in on_result stops the wait and is re-raised here (it
        never propagates into C). Returns the drover_err_t."""
        n = len(ids)
        arr = (ctypes.c_char_p * n)(*[_b(i) for i in ids])
        raised: List[BaseException] = []

        def cb(rp: Any, _arg: Any) -> int:
            try:
                return 1 if on_result(_result(rp.contents)) else 0
            except BaseException as e:  # noqa: BLE001 - must not unwind into C
                raised.append(e)
                return 1

        ccb = _lib.RESULT_CB(cb)
        tmo = -1 if timeout is None else max(0, int(timeout * 1000))
        with self._mu:
            rc = _lib_.drover_wait(self._handle(), arr, n, tmo, ccb, None)
            err = self._error(rc) if rc not in (_lib.OK, _lib.ETIMEOUT) else None
        if raised:
            raise raised[0]
        if err is not None:
            raise err
        return rc

    def wait(self, ids: Iterable[str], timeout: Optional[float] = None) -> Dict[str, Result]:
        """Waits until every job in ids has ended and returns id ->
        :class:`Result`.

        Args:
            ids: job ids (an id given twice is reported once).
            timeout: seconds; None waits for ever.

        Raises:
            WaitTimeout: the timeout passed first (``.results`` has what
                arrived).
            InvalidJob: an id is not a job id. Rejected, DroverError.
        """
        ids = list(ids)
        out: Dict[str, Result] = {}
        if not ids:
            return out

        def put(r: Result) -> bool:
            out[r.id] = r
            return False

        rc = self._wait(ids, timeout, put)
        if rc == _lib.ETIMEOUT:
            missing = len(set(ids)) - len(out)
            raise WaitTimeout(f"{missing} of {len(set(ids))} jobs had not ended after {timeout} s",
                              _lib.ETIMEOUT, results=out)
        return out

    def as_completed(self, ids: Iterable[str], timeout: Optional[float] = None) -> Iterator[Result]:
        """Yields a :class:`Result` for each job as it ends, in order of
        completion.

        The wait runs in a background thread with a client of its own (same
        endpoints and options), which passes each result through a queue;
        the callback from C only enqueues, so nothing raises into C. This
        client stays free for other calls meanwhile. Closing the generator
        early stops the wait at the next result (the thread is a daemon; a
        wait without timeout for jobs that never end lasts as long as the
        process).

        Raises (from the generator): WaitTimeout when ``timeout`` passes
        before every job ended (after yielding those that did), and any
        other DroverError of the wait.
        """
        ids = list(ids)
        if not ids:
            return
        q: "_queue.Queue[Any]" = _queue.Queue()
        stop = threading.Event()
        done = object()
        endpoints, tmo, secret, server = self._conf
        other = Client(endpoints, tmo, secret, server)

        def run() -> None:
            try:
                def put(r: Result) -> bool:
                    q.put(r)
                    return stop.is_set()

                rc = other._wait(ids, timeout, put)
                if rc == _lib.ETIMEOUT:
                    q.put(WaitTimeout(f"not every job had ended after {timeout} s", _lib.ETIMEOUT))
            except BaseException as e:  # noqa: BLE001 - handed to the consumer
                q.put(e)
            finally:
                other.close()
                q.put(done)

        t = threading.Thread(target=run, name="drover-as-completed", daemon=True)
        t.start()
        try:
            while True:
                item = q.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()

    # -- control -----------------------------------------------------------

    def cancel(self, id: str) -> None:
        """Cancels a job (queued, scheduled or running).

        Raises:
            Rejected: the broker said no (e.g. the job has already ended).
        """
        with self._mu:
            rc = _lib_.drover_cancel(self._handle(), _b(id))
            if rc != _lib.OK:
                raise self._error(rc)

    def ctrl(self, verb: str, *, id: Optional[str] = None, queue: Optional[str] = None,
             worker: Optional[str] = None, dead: bool = False, value: Optional[float] = None,
             args: Optional[Mapping[str, Any]] = None) -> Any:
        """Sends a control verb (docs/protocol.md: ``status``, ``job``,
        ``retry``, ``pause``, ...) and returns the answer's body, parsed
        from JSON (None when it has none)."""
        req = _lib.CtrlT()
        keep = [_b(verb), _b(id), _b(queue), _b(worker),
                json.dumps(args).encode("utf-8") if args is not None else None]
        req.verb, req.id, req.queue, req.worker, req.args_json = keep
        req.dead = int(bool(dead))
        if value is not None:
            req.has_value = 1
            req.value = float(value)
        body = ctypes.c_void_p()
        with self._mu:
            rc = _lib_.drover_ctrl_ex(self._handle(), ctypes.byref(req), ctypes.byref(body))
            if rc != _lib.OK:
                _lib.free(body.value)
                raise self._error(rc)
        if not body.value:
            return None
        try:
            text = ctypes.string_at(body.value)
        finally:
            _lib.free(body.value)
        return json.loads(text)

    def job(self, id: str) -> Dict[str, Any]:
        """The broker's view of one job: ``{id, queue, type, state,
        attempt, result?, category?, error?, attempts, options}``, where
        ``options`` is what it was submitted with (priority, max_attempts,
        timeout_ms, backoff, batch, key, payload, ...) and
        ``attempts`` lists the failed attempts the broker keeps, each with
        its category, message, and ``details`` (a traceback) and
        ``stderr`` (the end of its stderr) when the handler gave them.

        Raises:
            Rejected: ``code == "not_found"`` for an unknown id.
        """
        body = self.ctrl("job", id=id)
        return body if isinstance(body, dict) else {}

    def batch_jobs(self, name: str, after: Optional[str] = None,
                   limit: int = 100) -> Dict[str, Any]:
        """One page of the jobs of batch ``name`` (docs/batches.md), in id
        order, after job id ``after``: ``{"jobs": [{id, type, state,
        attempt, result?, category?, error?, finished?}], "more": bool,
        "next"?: id}``. While ``more``, pass ``next`` as ``after``. A client
        under CurveZMQ sees only its own jobs.

        Raises:
            ValueError: a bad name, ``after`` or ``limit`` (1..1000).
            Rejected: the broker refused.
        """
        if not 1 <= limit <= 1000:
            raise ValueError("limit is 1..1000")
        body = ctypes.c_void_p()
        with self._mu:
            rc = _lib_.drover_batch_jobs(self._handle(), _b(name), _b(after), int(limit),
                                         ctypes.byref(body))
            if rc != _lib.OK:
                _lib.free(body.value)
                err = self._error(rc)
                if rc == _lib.EINVAL:
                    raise ValueError(str(err))
                raise err
        try:
            text = ctypes.string_at(body.value)
        finally:
            _lib.free(body.value)
        page = json.loads(text)
        return page if isinstance(page, dict) else {"jobs": [], "more": False}

    def iter_batch_jobs(self, name: str, *, limit: int = 1000) -> Iterator[Dict[str, Any]]:
        """Every job of batch ``name`` with its result, page after page
        (``limit`` jobs a page), in id order."""
        after: Optional[str] = None
        while True:
            page = self.batch_jobs(name, after=after, limit=limit)
            jobs = page.get("jobs") or []
            yield from jobs
            if not page.get("more") or not jobs:
                return
            after = page.get("next") or jobs[-1]["id"]

    def status(self) -> Dict[str, Any]:
        """The broker's ``status`` body (queues, workers, counters)."""
        body = self.ctrl("status")
        return body if isinstance(body, dict) else {}

    # ---- schedules: periodic jobs the broker submits itself ----------------

    def schedule_add(self, name: str, type: str, *, every: Optional[str] = None,
                     cron: Optional[str] = None, tz: Optional[str] = None,
                     queue: Optional[str] = None, payload: Any = None,
                     priority: Optional[int] = None,
                     max_attempts: Optional[int] = None,
                     timeout: Optional[float] = None, no_overlap: bool = False,
                     catch_up: Optional[str] = None) -> Dict[str, Any]:
        """Adds a schedule: a job of ``type`` at each firing, ``every`` an
        interval (``"30s"``, ``"1h30m"``) or at the times of ``cron`` (5
        fields, or 6 with seconds first) in time zone ``tz``. ``timeout``
        is seconds per attempt; ``catch_up`` ``"once"`` (default) or
        ``"skip"``. Returns the schedule (docs/json/schedule.schema.json).

        Raises:
            Rejected: ``code == "invalid_argument"`` with the field named
            in the message (``every: ...``), or a name taken already.
        """
        args: Dict[str, Any] = {"name": name, "type": type}
        for k, v in (("every", every), ("cron", cron), ("tz", tz),
                     ("queue", queue), ("priority", priority),
                     ("max_attempts", max_attempts), ("catch_up", catch_up)):
            if v is not None:
                args[k] = v
        if payload is not None:
            args["payload"] = payload
        if timeout is not None:
            args["timeout_ms"] = int(timeout * 1000)
        if no_overlap:
            args["no_overlap"] = True
        return self._schedule_verb("add", args)

    def schedules(self) -> List[Dict[str, Any]]:
        """Every schedule, by name, with its next and last firing, its last
        job and that job's state."""
        body = self.ctrl("schedule.list")
        return list(body.get("schedules", [])) if isinstance(body, dict) else []

    def schedule(self, name: str) -> Dict[str, Any]:
        """One schedule. Raises Rejected (``not_found``) for an unknown
        name."""
        return self._schedule_verb("show", {"name": name})

    def schedule_pause(self, name: str) -> Dict[str, Any]:
        """Pauses a schedule (kept across restarts); returns it."""
        return self._schedule_verb("pause", {"name": name})

    def schedule_resume(self, name: str) -> Dict[str, Any]:
        """Resumes a schedule; the firings it missed are not made up for."""
        return self._schedule_verb("resume", {"name": name})

    def schedule_remove(self, name: str) -> None:
        """Removes a schedule."""
        self._schedule_verb("remove", {"name": name})

    def _schedule_verb(self, verb: str, args: Mapping[str, Any]) -> Dict[str, Any]:
        body = self.ctrl("schedule." + verb, args=args)
        return body if isinstance(body, dict) else {}


__all__ = ["Ack", "Client", "Result", "CHUNK"]
