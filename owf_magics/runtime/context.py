"""What a running step sees: the run's context, its host, and the signals a step raises.

The engine creates one `RunContext` per run; connectors, the agent loop and backend adapters
receive it (they never import the engine). `Host` is what a run needs from the `OpenWorkflow`
that started it, as a protocol, so nothing below the facade imports the facade.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from owf_magics.errors import OWFError
from owf_magics.manifest.render import redact
from owf_magics.runtime.results import StepError


class Host(Protocol):
    """What a run uses of the registry that started it (`OpenWorkflow` implements it)."""

    @property
    def catalog(self) -> Any: ...
    @property
    def environment(self) -> Mapping[str, str] | None: ...
    @property
    def prices(self) -> Any: ...
    @property
    def rate_limiter(self) -> Any: ...
    def backend(self, name: str) -> Any: ...
    def thread_pool(self) -> ThreadPoolExecutor: ...
    def workflow(self, name: str | None = None, version: str | None = None) -> Any: ...
    def plan_loaded(self, item: Any, prefer_backend: str | None = None) -> Any: ...


_run_counter = itertools.count(1)


_id_second: list[Any] = [0, ""]  # [whole second, its run id prefix]: formatted once per second


def new_run_id() -> str:
    """Timestamp plus a process-wide sequence number (the OpenFlow protocol's format):
    ``20261121_201856_000001``."""
    whole = int(time.time())
    cached = _id_second
    if whole != cached[0]:
        cached = [whole, time.strftime("%Y%m%d_%H%M%S_", time.gmtime(whole))]
        _id_second[:] = cached
    return f"{cached[1]}{next(_run_counter):06d}"


_second: list[Any] = [0, ""]  # [whole second, its text]: formatted once per second


def now() -> str:
    """UTC now as ISO 8601 with milliseconds (``2026-11-21T20:18:56.123Z``), cheaply."""
    return stamp(time.time())


def stamp(now: float | str) -> str:
    """A `time.time()` value as `now()` formats it (a string is returned as it is)."""
    if isinstance(now, str):
        return now
    whole = int(now)
    cached = _second
    if whole != cached[0]:
        cached = [whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))]
        _second[:] = cached
    return f"{cached[1]}.{int((now - whole) * 1000):03d}Z"


def to_step_error(exc: BaseException) -> StepError:
    """Any exception as the SDK taxonomy's error."""
    if isinstance(exc, OWFError):
        return StepError(exc.code, exc.message, dict(exc.details))
    if isinstance(exc, TimeoutError):
        return StepError("TIMEOUT", "the step exceeded its timeout", {})
    if isinstance(exc, asyncio.CancelledError):
        return StepError("CANCELED", "the step was canceled", {})
    details: dict[str, Any] = {"original_error": type(exc).__name__}
    trace = user_traceback(exc)
    if trace:
        details["traceback"] = trace
    return StepError("BACKEND_ERROR", f"{type(exc).__name__}: {exc}", details)


def _users(filename: str, libraries: tuple[str, ...]) -> bool:
    """A frame of the user's code: a file of theirs (not a library's, not a compiled module's
    ``jq.pyx``), or a cell of terminal IPython (``<ipython-input-...>``)."""
    import os

    if filename.startswith("<ipython-input"):
        return True
    return os.path.isabs(filename) and not filename.startswith(libraries)


def user_traceback(exc: BaseException, limit: int = 30) -> str | None:
    """The traceback into the user's code (a handler function and what it called), without the
    engine's and the standard library's frames; None when no frame of it is the user's."""
    import os
    import sysconfig
    import traceback

    ours = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # owf_magics/
    paths = sysconfig.get_paths()
    libraries = (ours, paths["stdlib"] + os.sep, paths["purelib"] + os.sep, paths["platlib"] + os.sep)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(ours)]
    # from the user's first frame on (what their function called, libraries included)
    first = next((i for i, f in enumerate(frames) if _users(f.filename, libraries)), None)
    if first is None:
        return None
    frames = frames[first:]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames[-limit:])]
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines).rstrip()


class StepFailed(Exception):
    """Raised inside the executor to carry a step's error up to the block that runs it."""

    def __init__(self, error: StepError, attempts: int = 0) -> None:
        super().__init__(error.message)
        self.error = error
        self.attempts = attempts  # a `try` step's body passes, when it failed after retrying them


@dataclass(slots=True)
class RunContext:
    """What one run shares across its steps."""

    host: Host
    run_id: str
    secrets: dict[str, str]
    env: Mapping[str, str]
    pool: ThreadPoolExecutor
    callback: Callable[[dict[str, Any]], Any] | None
    delivered: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    trace: list[tuple[tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)
    usage: list[tuple[tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)
    events: list[tuple[tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)
    event_seq: itertools.count[int] = field(default_factory=itertools.count)
    functions: dict[str, Any] = field(default_factory=dict)  # handlers resolved this run
    deadline: datetime | None = None  # from the workflow's timeout; backends see it in their context
    # durable runs: the store, what an earlier run recorded, and requests made or answered
    store: Any = None
    recorded: dict[str, Any] = field(default_factory=dict)  # step key -> StepRecord, served, not run
    replay: bool = False  # serve recorded outputs, and fail when a step's resolved input differs
    answers: dict[str, list[Any]] = field(default_factory=dict)  # step key -> its PendingRequests
    pending: list[Any] = field(default_factory=list)  # requests this run waits for
    unsaved: list[dict[str, Any]] = field(default_factory=list)  # events not yet in the store
    uncommitted: list[Any] = field(default_factory=list)  # StepRecords not yet in the store (group commit)
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)  # step key -> its input and usage
    approved: set[str] = field(default_factory=set)  # connectors approved for this run (first_use)
    budget: Any = None  # the workflow's policies.cost, for the whole run
    trigger: dict[str, Any] = field(default_factory=dict)  # what started the run (templates: trigger.*)
    last_agent: str | None = None  # the agent that acted last (handoffs move it; RunResult.last_agent)
    env_copy: dict[str, str] | None = None  # `env` as a dict, read once per run (backends' context)
    scratch: Any = None  # the run's scratch directory (runtime.scratch.Scratch), made on first use
    # lazy bookkeeping: with no callback nobody reads events or trace rows while the run goes on,
    # so steps append compact records here and `engine.trace.Bookkeeping` turns them into rows and
    # events (in the same order, with the same ids) when the result is read; a store reads them
    # as it writes (`engine.trace.drain`): the log up to `flushed` is written, and `next_event`
    # is the number the next event there gets
    log: list[tuple[Any, ...] | None] | None = None
    flushed: int = 0
    next_event: int = 0
    plain: bool | None = None  # the run's secrets redact nothing its step events always hold

    def emit(self, key: tuple[Any, ...], event: dict[str, Any]) -> None:
        log = self.log
        if log is not None:  # redacted and numbered when built, in this order
            log.append((0, key, event))
            return
        if self.secrets:
            event = redact(event, self.secrets)
        event.setdefault("event_id", f"evt_{self.run_id}_{next(self.event_seq):05d}")
        self.events.append((key, event))
        if self.store is not None:
            self.unsaved.append(event)
        if self.callback is not None:
            with contextlib.suppress(Exception):  # a callback never stops the run
                self.callback(event)


#: The kind of a `Waiting` whose request a step inside already opened (a workflow run as a tool).
NESTED_WAIT = "nested"


class Waiting(BaseException):
    """Raised where a step needs something from outside: an approval, an event, a time to come.

    A BaseException, like cancellation, so that no ``except Exception`` on its way up (a handler,
    an adapter, a framework) turns it into a failure: the step that raised it catches it.
    """

    def __init__(self, kind: str, payload: dict[str, Any]) -> None:
        super().__init__(kind)
        self.kind = kind
        self.payload = payload


CURRENT_KEY: contextvars.ContextVar[str] = contextvars.ContextVar("owf_step_key", default="")

#: The run span's W3C trace id (32 hex digits) when OpenTelemetry tracing is on: set by the run's
#: tracer when the run starts, read for `ExecutionContext.trace_id` (the run id otherwise).
W3C_TRACE_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("owf_w3c_trace_id", default=None)


WAIT_FLAGS: contextvars.ContextVar[tuple[list[bool], ...]] = contextvars.ContextVar("owf_wait_flags", default=())

#: Inside the body of a `try` step with a retry policy: the last attempt number of each step
#: execution so far (by execution key), so a retried body's steps count on (attempt 2, 3...) in
#: their trace rows, events and ``attempts``. None elsewhere (and such steps take no direct path).
TRY_ATTEMPTS: contextvars.ContextVar[dict[str, int] | None] = contextvars.ContextVar("owf_try_attempts", default=None)


def find_request(run: RunContext, key: str, kind: str, match: Mapping[str, Any]) -> Any:
    """The request of this step of that kind whose payload has `match`, answered or not (or None)."""
    for request in run.answers.get(key, ()):
        if request.kind == kind and all(request.payload.get(k) == v for k, v in match.items()):
            return request
    return None


def open_request(run: RunContext, key: str, wait: Waiting) -> Any:
    """Record what a waiting step needs (reusing the request an earlier attempt of the run made)."""
    from owf_magics.runtime.records import PendingRequest

    request = find_request(run, key, wait.kind, wait.payload)
    if request is None:
        payload = redact(wait.payload, run.secrets) if run.secrets else wait.payload
        if run.store is not None:
            request = run.store.add_pending(run.run_id, key, wait.kind, payload)
        else:
            request_id = f"req_{run.run_id}_{len(run.pending) + 1}"
            request = PendingRequest(request_id, run.run_id, key, wait.kind, payload, datetime.now(UTC))
        run.answers.setdefault(key, []).append(request)
    run.pending.append(request)
    flag_wait()
    return request


def flag_wait() -> None:
    """Tell the step or block this one runs inside that something in it waits (it passes it on
    when it ends, unless it decides otherwise: a parallel step that finished without the branch)."""
    flags = WAIT_FLAGS.get()
    if flags:
        flags[-1][0] = True


def record_input(run: RunContext, data: Any) -> None:
    if run.store is not None:
        run.seen.setdefault(CURRENT_KEY.get(), {})["input"] = redact(data, run.secrets) if run.secrets else data


def redact_error(error: StepError, secrets: Mapping[str, str]) -> StepError:
    return StepError(error.code, redact(error.message, secrets), redact(error.details, secrets))


def new_uuid() -> str:
    return uuid.uuid4().hex
