"""The run queue: at most N runs at once (the OpenFlow protocol's global limit, default 3),
the rest wait in FIFO order.

`RunQueue` starts submitted zero-argument callables (``async def`` functions, or plain functions,
which run in a worker thread) in submission order on its own event loop in a background thread,
so it works the same from plain Python and from inside a running loop (a Jupyter kernel).
`submit` returns a `RunHandle`; run ids are a UTC timestamp plus a zero-padded sequence number.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import itertools
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from owf_magics.errors import CanceledError, OWFError

T = TypeVar("T")

#: The OpenFlow protocol's global limit on concurrent runs.
DEFAULT_MAX_CONCURRENT = 3
#: Handle statuses while the callable has not produced a result.
HANDLE_STATUSES = ("queued", "running", "completed", "failed", "canceled")


@dataclass(frozen=True, slots=True)
class QueueStatus:
    """A snapshot of a `RunQueue`.

    Attributes:
        max_concurrent: The limit.
        running: Ids of runs in progress, in start order.
        queued: Ids of runs waiting, in the order they will start.
        completed: How many finished with a result.
        failed: How many raised an error.
        canceled: How many were canceled (queued or running).
    """

    max_concurrent: int
    running: list[str] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)
    completed: int = 0
    failed: int = 0
    canceled: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_concurrent": self.max_concurrent,
            "running": list(self.running),
            "queued": list(self.queued),
            "completed": self.completed,
            "failed": self.failed,
            "canceled": self.canceled,
        }


class RunHandle(Generic[T]):
    """A submitted run: its id, its status, and its result once done.

    Attributes:
        run_id: The run's id.
        label: What the submitter called it (e.g. the workflow's name).
    """

    def __init__(self, queue: RunQueue, run_id: str, fn: Callable[[], Any], label: str | None) -> None:
        self.run_id = run_id
        self.label = label
        self._queue = queue
        self._fn = fn
        self._future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._state = "queued"
        self._task: asyncio.Task[None] | None = None
        self.submitted_at = datetime.now(UTC)
        self.started_at: datetime | None = None
        self.finished_at: datetime | None = None

    @property
    def status(self) -> str:
        """``queued``, ``running``, ``completed``, ``failed`` or ``canceled``. When the result has a
        string ``status`` (a `RunResult`: ``completed``, ``failed``, ``waiting_approval``...),
        that is the status once done."""
        if self._state == "completed":
            result = self._future.result()
            inner = getattr(result, "status", None)
            if isinstance(inner, str):
                return inner
        return self._state

    def done(self) -> bool:
        """Whether the run has finished (with a result, an error, or canceled)."""
        return self._future.done()

    def result(self, timeout: float | None = None) -> T:
        """Wait for the run and return what the callable returned.

        Raises:
            TimeoutError: The run did not finish within `timeout` seconds (it goes on).
            CanceledError: The run was canceled.
            Exception: Whatever the callable raised.
            RuntimeError: Called from inside the queue's own event loop (it would wait forever).
        """
        if self._queue._in_loop_thread():
            raise RuntimeError("RunHandle.result() would block the run queue's own loop; use `await aresult()`")
        try:
            return self._future.result(timeout)
        except concurrent.futures.CancelledError:
            raise self._canceled() from None
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"run {self.run_id} did not finish within {timeout}s") from None

    async def aresult(self) -> T:
        """`result` for async code (any event loop)."""
        try:
            return await asyncio.wrap_future(self._future)
        except (asyncio.CancelledError, concurrent.futures.CancelledError):
            if self._future.cancelled():
                raise self._canceled() from None
            raise

    def cancel(self) -> bool:
        """Cancel the run: a queued run never starts; a running one has its task canceled (the
        executor then ends the run as ``canceled``). Returns False when it had already finished."""
        return self._queue._cancel(self)

    def _canceled(self) -> CanceledError:
        return CanceledError(f"run {self.run_id} was canceled", details={"run_id": self.run_id})

    def __repr__(self) -> str:
        label = f" {self.label!r}" if self.label else ""
        return f"<RunHandle {self.run_id}{label} {self.status}>"


class RunQueue:
    """Runs submitted callables at most `max_concurrent` at a time, starting them in FIFO order.

    Args:
        max_concurrent: The global limit (OpenFlow's default is 3).
        name: Name of the background thread.
    """

    def __init__(self, max_concurrent: int = DEFAULT_MAX_CONCURRENT, *, name: str = "owf-run-queue") -> None:
        if max_concurrent < 1:
            raise OWFError(f"max_concurrent must be at least 1, got {max_concurrent}", code="VALIDATION")
        self.max_concurrent = max_concurrent
        self.name = name
        self._lock = threading.Lock()
        self._queued: deque[RunHandle[Any]] = deque()
        self._running: dict[str, RunHandle[Any]] = {}
        self._counts = {"completed": 0, "failed": 0, "canceled": 0}
        self._seq = itertools.count(1)
        self._last_stamp = ""
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- ids ------------------------------------------------------------------------------------

    def new_run_id(self) -> str:
        """``20260101_120000_000001``: UTC time to the second plus a per-queue sequence number,
        zero-padded so ids sort in submission order (the OpenFlow protocol's format, wider)."""
        with self._lock:
            return self._new_id_locked()

    def _new_id_locked(self) -> str:
        stamp = f"{datetime.now(UTC):%Y%m%d_%H%M%S}"
        stamp = max(stamp, self._last_stamp)  # never backwards, even if the wall clock is
        self._last_stamp = stamp
        return f"{stamp}_{next(self._seq):06d}"

    # -- submitting -----------------------------------------------------------------------------

    def submit(
        self, fn: Callable[[], Awaitable[T]] | Callable[[], T], *, run_id: str | None = None, label: str | None = None
    ) -> RunHandle[T]:
        """Queue a run; it starts when fewer than `max_concurrent` runs are running and every run
        submitted before it has started.

        Args:
            fn: A zero-argument callable: an ``async def`` function (awaited on the queue's loop)
                or a plain function (run in a worker thread; if it returns an awaitable, that is
                awaited too).
            run_id: The id to use; default `new_run_id`.
            label: A name for `queue_status` and reprs.

        Raises:
            TypeError: `fn` is a coroutine object rather than a function making one.
            OWFError: ``UNAVAILABLE`` after `shutdown`.
        """
        if inspect.iscoroutine(fn) or not callable(fn):
            raise TypeError("submit() takes a zero-argument callable, e.g. `lambda: wf.aexecute()`, not a coroutine")
        with self._lock:
            if self._closed:
                raise OWFError("the run queue is shut down", code="UNAVAILABLE")
            handle: RunHandle[T] = RunHandle(self, run_id or self._new_id_locked(), fn, label)
            self._queued.append(handle)
            loop = self._ensure_loop()
        loop.call_soon_threadsafe(self._pump)
        return handle

    def queue_status(self) -> QueueStatus:
        """What is running, what waits, and how many finished."""
        with self._lock:
            return QueueStatus(
                self.max_concurrent,
                list(self._running),
                [h.run_id for h in self._queued],
                **self._counts,
            )

    # -- shutting down --------------------------------------------------------------------------

    def shutdown(self, *, cancel_queued: bool = True, wait: bool = True, timeout: float | None = None) -> None:
        """Stop taking runs.

        Args:
            cancel_queued: Cancel the runs that have not started (they never start; their
                handles raise `CanceledError`). Otherwise they still run.
            wait: Wait for the runs still to finish (at most `timeout` seconds), then stop the
                background loop. Without waiting, the loop stops by itself after the last run.
            timeout: Bound on the wait, in seconds.
        """
        with self._lock:
            self._closed = True
            canceled: list[RunHandle[Any]] = []
            if cancel_queued:
                while self._queued:
                    canceled.append(self._queued.popleft())
            loop, thread = self._loop, self._thread
        for handle in canceled:
            self._mark_canceled(handle)
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(self._stop_if_idle)
        if wait and not self._in_loop_thread():
            thread.join(timeout)

    def __enter__(self) -> RunQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- internals ------------------------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._thread = threading.Thread(target=self._serve, args=(loop,), name=self.name, daemon=True)
            self._thread.start()
        return self._loop

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    def _in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def _pump(self) -> None:
        """Start queued runs while there is room (always on the queue's loop, so starts are in order)."""
        assert self._loop is not None
        starting: list[RunHandle[Any]] = []
        with self._lock:
            while len(self._running) < self.max_concurrent and self._queued:
                handle = self._queued.popleft()
                if not handle._future.set_running_or_notify_cancel():
                    continue
                handle._state = "running"
                handle.started_at = datetime.now(UTC)
                self._running[handle.run_id] = handle
                starting.append(handle)
        for handle in starting:
            handle._task = self._loop.create_task(self._run(handle), name=f"owf-run-{handle.run_id}")

    async def _run(self, handle: RunHandle[Any]) -> None:
        outcome = "completed"
        try:
            fn = handle._fn
            if inspect.iscoroutinefunction(fn):
                value = await fn()
            else:
                value = await asyncio.to_thread(fn)
                if inspect.isawaitable(value):
                    value = await value
        except asyncio.CancelledError:
            outcome = "canceled"
            handle._future.set_exception(handle._canceled())
        except BaseException as exc:
            outcome = "failed"
            handle._future.set_exception(exc)
        else:
            handle._future.set_result(value)
        finally:
            handle._state = outcome
            handle.finished_at = datetime.now(UTC)
            with self._lock:
                self._running.pop(handle.run_id, None)
                self._counts[outcome] += 1
            self._pump()
            self._stop_if_idle()

    def _stop_if_idle(self) -> None:
        with self._lock:
            idle = self._closed and not self._running and not self._queued
        if idle and self._loop is not None:
            self._loop.stop()

    def _cancel(self, handle: RunHandle[Any]) -> bool:
        with self._lock:
            if handle in self._queued:
                self._queued.remove(handle)
                queued = True
            else:
                queued = False
            loop = self._loop
        if queued:
            self._mark_canceled(handle)
            return True
        if handle.done() or loop is None:
            return False
        # the task may be a moment from being created by _pump: cancel it from the loop, after
        loop.call_soon_threadsafe(self._cancel_task, handle)
        return True

    @staticmethod
    def _cancel_task(handle: RunHandle[Any]) -> None:
        if handle._task is not None and not handle._task.done():
            handle._task.cancel()

    def _mark_canceled(self, handle: RunHandle[Any]) -> None:
        handle._future.cancel()
        handle._state = "canceled"
        handle.finished_at = datetime.now(UTC)
        with self._lock:
            self._counts["canceled"] += 1
