"""Event callbacks: where a run's events go besides `RunResult.events` (``callback=`` on execute).

`make_sink(callback)` turns ``"stdout"``, ``"stdout_verbose"``, an http(s) URL or a Python callable
into an `EventSink`. Every sink receives events as the envelope ``{type, timestamp, payload,
metadata}`` (see `to_envelope`), with secrets scrubbed, and never raises into the run: a failing
or hanging receiver is logged, never fatal. The HTTP sink posts from a background thread, so the
run never waits for the network.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import IO, Any, Protocol, runtime_checkable

from owf_magics.errors import OWFError
from owf_magics.runs.agent_lines import DELTA, agent_line
from owf_magics.runs.store import scrub as scrub_secrets
from owf_magics.runs.store import to_json

logger = logging.getLogger("owf_magics.runs.callbacks")

Envelope = dict[str, Any]
ScrubFn = Callable[[Any], Any]

#: Keys of an executor event that are not part of its payload.
_ENVELOPE_KEYS = ("type", "timestamp", "payload", "metadata", "event_id")


@runtime_checkable
class EventSink(Protocol):
    """Receives a run's events. Calling it never raises and never blocks on I/O."""

    def __call__(self, event: Mapping[str, Any]) -> None: ...

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued (waiting at most `timeout` seconds), then release resources."""
        ...


def now_iso() -> str:
    """The current UTC time as ``2026-01-01T12:00:00.123Z`` (the executor's format)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_envelope(event: Mapping[str, Any]) -> Envelope:
    """An event as the callback envelope ``{type, timestamp, payload, metadata}``.

    Run events built by the helpers below (and by the executor) already have that shape. A step
    event (``step.execution.completed``, with top-level ``execution``, ``result``, ``step_id``...)
    keeps its fields in ``payload``. The event's ``event_id`` goes to ``metadata.event_id``.
    """
    metadata = dict(event.get("metadata") or {})
    if "event_id" in event:
        metadata.setdefault("event_id", event["event_id"])
    if "payload" in event:
        payload = event["payload"]
    else:
        payload = {k: v for k, v in event.items() if k not in _ENVELOPE_KEYS}
    return {
        "type": str(event.get("type", "")),
        "timestamp": event.get("timestamp") or now_iso(),
        "payload": payload,
        "metadata": metadata,
    }


# ------------------------------------------------------------------------------------------------
# run events


def run_started(
    run_id: str,
    workflow: str,
    *,
    version: str | None = None,
    inputs: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Envelope:
    """``run.started``: payload ``{run_id, workflow, inputs}``; pass inputs already scrubbed."""
    return {
        "type": "run.started",
        "timestamp": now_iso(),
        "payload": {"run_id": run_id, "workflow": workflow, "inputs": dict(inputs or {})},
        "metadata": {"workflow_version": version, **dict(metadata or {})},
    }


def run_event(
    run_id: str, name: str, data: Mapping[str, Any] | None = None, *, metadata: Mapping[str, Any] | None = None
) -> Envelope:
    """``run.event``: something happened to the run that is not a step result, e.g. ``name=
    "waiting_approval"`` with the pending requests, or ``"resumed"``. Payload ``{run_id, event, data}``."""
    return {
        "type": "run.event",
        "timestamp": now_iso(),
        "payload": {"run_id": run_id, "event": name, "data": dict(data or {})},
        "metadata": dict(metadata or {}),
    }


def run_completed(
    run_id: str,
    *,
    status: str = "completed",
    outputs: Mapping[str, Any] | None = None,
    duration_ms: float | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Envelope:
    """``run.completed``: payload ``{run_id, status, outputs}``; metadata ``{duration_ms}``."""
    return {
        "type": "run.completed",
        "timestamp": now_iso(),
        "payload": {"run_id": run_id, "status": status, "outputs": dict(outputs or {})},
        "metadata": {"duration_ms": duration_ms, **dict(metadata or {})},
    }


def run_failed(
    run_id: str,
    error: Mapping[str, Any] | Any,
    *,
    status: str = "failed",
    duration_ms: float | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Envelope:
    """``run.failed``: payload ``{run_id, status, error: {code, message, details}}``.

    Args:
        error: A mapping, or an object with ``to_dict()`` (`StepError`, `OWFError`).
    """
    if not isinstance(error, Mapping):
        to_dict = getattr(error, "to_dict", None)
        error = to_dict() if callable(to_dict) else {"code": "INTERNAL_ERROR", "message": str(error), "details": {}}
    return {
        "type": "run.failed",
        "timestamp": now_iso(),
        "payload": {"run_id": run_id, "status": status, "error": dict(error)},
        "metadata": {"duration_ms": duration_ms, **dict(metadata or {})},
    }


# ------------------------------------------------------------------------------------------------
# sinks


class _BaseSink:
    def __init__(self, scrub: ScrubFn | None) -> None:
        self._scrub = scrub

    def _prepare(self, event: Mapping[str, Any]) -> Envelope:
        env = to_envelope(event)
        if self._scrub is not None:
            env = self._scrub(env)
        return env

    def close(self, timeout: float | None = None) -> None:
        """Nothing to release."""


class StdoutSink(_BaseSink):
    """Prints one human-readable line per event; verbose mode adds outputs, errors and inputs.

    Args:
        verbose: ``stdout_verbose``: also print step outputs, errors and the run's outputs.
        stream: Where to print; None means ``sys.stdout`` at the time of each event (so Jupyter's
            capture of the cell sees it).
        scrub: Applied to each envelope before printing.
    """

    def __init__(self, *, verbose: bool = False, stream: IO[str] | None = None, scrub: ScrubFn | None = None):
        super().__init__(scrub)
        self.verbose = verbose
        self.stream = stream
        self._streaming = False  # in the middle of a line of streamed text

    def __call__(self, event: Mapping[str, Any]) -> None:
        try:
            out = self.stream or sys.stdout
            if event.get("type") == DELTA:  # streamed text: written as it comes (verbose only)
                if self.verbose:
                    env = self._prepare(event)
                    if not self._streaming:
                        print(f"    {env['payload'].get('agent', '')}: ", end="", file=out)
                    self._streaming = True
                    print(env["payload"].get("delta", ""), end="", file=out, flush=True)
                return
            if self._streaming:
                print(file=out)
                self._streaming = False
            line = format_event(self._prepare(event), verbose=self.verbose)
            print(line, file=out, flush=True)
        except Exception:  # a sink never stops the run
            logger.exception("stdout callback failed")


def _short(value: Any, limit: int = 300) -> str:
    text = to_json(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_event(env: Mapping[str, Any], *, verbose: bool = False) -> str:
    """One line (more when verbose) describing an envelope, as the stdout sinks print it."""
    kind = env.get("type", "")
    payload = env.get("payload") or {}
    meta = env.get("metadata") or {}
    ts = str(env.get("timestamp", ""))
    clock = ts[11:23] if len(ts) >= 23 else ts
    run = payload.get("run_id", "") if isinstance(payload, Mapping) else ""
    if kind == "step.execution.completed" and isinstance(payload, Mapping):
        result = payload.get("result") or {}
        execution = payload.get("execution") or {}
        step = payload.get("step_id", "?")
        if payload.get("iteration"):
            step = f"{step}[{payload['iteration']}]"
        text = f"[{clock}] step {step}: {result.get('status', '?')}"
        if execution.get("duration_ms") is not None:
            text += f" in {execution['duration_ms']} ms"
        if execution.get("backend"):
            text += f" ({execution['backend']})"
        usage = execution.get("token_usage") or {}
        if usage.get("total_tokens"):
            text += f", {usage['total_tokens']} tokens"
        if (payload.get("attempt") or 1) > 1:
            text += f", attempt {payload['attempt']}"
        error = result.get("error")
        if error:
            text += f" - {error.get('code')}: {error.get('message')}"
        if verbose and "output" in result:
            text += f"\n    output: {_short(result.get('output'))}"
        return text
    if kind == "run.started":
        text = f"[{clock}] run {run} started: {payload.get('workflow', '')}"
        if meta.get("workflow_version"):
            text += f"@{meta['workflow_version']}"
        if verbose and payload.get("inputs"):
            text += f"\n    inputs: {_short(payload['inputs'])}"
        return text
    if kind in ("run.completed", "run.failed", "run.canceled"):
        status = payload.get("status", kind.split(".")[-1])
        text = f"[{clock}] run {run} {status}"
        if meta.get("duration_ms") is not None:
            text += f" in {meta['duration_ms']} ms"
        error = payload.get("error")
        if error:
            text += f" - {error.get('code')}: {error.get('message')}"
        if verbose and payload.get("outputs"):
            text += f"\n    outputs: {_short(payload['outputs'], 2000)}"
        return text
    if kind == "run.event":
        text = f"[{clock}] run {run}: {payload.get('event', '')}"
        if verbose and payload.get("data"):
            text += f"\n    {_short(payload['data'])}"
        return text
    if kind.startswith("step.") and isinstance(payload, Mapping) and payload.get("step_id"):
        step = payload["step_id"] + (f"[{payload['iteration']}]" if payload.get("iteration") else "")
        verb = {
            "step.started": "started",
            "step.retrying": f"retrying (attempt {payload.get('next_attempt')} in {payload.get('delay_ms')} ms)",
            "step.failed": "failed",
            "step.skipped": f"skipped: {payload.get('reason', '')}",
            "step.waiting": "waiting",
        }.get(kind, kind)
        text = f"[{clock}] step {step} {verb}"
        error = payload.get("error")
        if error and kind != "step.skipped":
            text += f" - {error.get('code')}: {error.get('message')}"
        request = payload.get("request")
        if request:
            text += f" for {request.get('kind')} {request.get('id')}"
        return text
    line = agent_line(kind, payload, clock, verbose=verbose) if isinstance(payload, Mapping) else None
    if line is not None:
        return line
    if kind in ("run.resumed", "run.waiting"):
        text = f"[{clock}] run {run} {'resumed' if kind == 'run.resumed' else 'waiting'}"
        if meta.get("pending"):
            text += f" for {', '.join(map(str, meta['pending']))}"
        return text
    text = f"[{clock}] {kind}"
    if verbose:
        text += f" {_short(payload)}"
    return text


class CallableSink(_BaseSink):
    """Calls a Python function with each envelope; its exceptions are logged and swallowed."""

    def __init__(self, fn: Callable[[Envelope], Any], *, scrub: ScrubFn | None = None) -> None:
        super().__init__(scrub)
        self.fn = fn

    def __call__(self, event: Mapping[str, Any]) -> None:
        try:
            self.fn(self._prepare(event))
        except Exception:
            logger.exception("event callback %r failed (the run goes on)", getattr(self.fn, "__name__", self.fn))


_STOP = object()


class HttpSink(_BaseSink):
    """POSTs each envelope as JSON to a URL, from one background thread, in order.

    The run only puts events on a bounded queue (never blocking: when the queue is full the event
    is dropped and logged). Failed posts (connection errors, 5xx, 429) are retried up to
    `retries` times with exponential backoff; then the event is logged as lost. A hanging endpoint
    holds only the worker thread (each post has `timeout`), never the run.

    Args:
        url: An ``http://`` or ``https://`` URL.
        retries: Retries after the first attempt.
        backoff: First retry delay in seconds; doubles each retry, at most `max_backoff`.
        timeout: Seconds for one POST (connect, read, write).
        max_queue: Events waiting to be sent before new ones are dropped.
        headers: Extra request headers.
        scrub: Applied to each envelope before it is queued.

    Attributes:
        sent: Events delivered (2xx).
        failed: Events given up on after retries.
        dropped: Events never sent (queue full, or still queued when `close` gave up).
        attempts: POST attempts made.
    """

    def __init__(
        self,
        url: str,
        *,
        retries: int = 3,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        timeout: float = 10.0,
        max_queue: int = 10_000,
        headers: Mapping[str, str] | None = None,
        scrub: ScrubFn | None = None,
    ) -> None:
        super().__init__(scrub)
        self.url = url
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json", **dict(headers or {})}
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.attempts = 0
        self._count_lock = threading.Lock()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._closing = threading.Event()
        self._abandon = threading.Event()
        self._thread = threading.Thread(target=self._work, name=f"owf-callback {url}", daemon=True)
        self._thread.start()

    def _count(self, what: str) -> None:
        with self._count_lock:  # the producer and the worker both count
            setattr(self, what, getattr(self, what) + 1)

    def __call__(self, event: Mapping[str, Any]) -> None:
        if self._closing.is_set():
            logger.warning("event %s after the HTTP callback was closed; not sent", event.get("type"))
            self._count("dropped")
            return
        try:
            body = to_json(self._prepare(event))
            self._queue.put_nowait(body)
        except queue.Full:
            self._count("dropped")
            logger.warning("HTTP callback queue full; event %s dropped", event.get("type"))
        except Exception:
            logger.exception("could not queue event for the HTTP callback")

    def _work(self) -> None:
        import httpx

        with httpx.Client(timeout=self.timeout, headers=self.headers) as client:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    return
                if self._abandon.is_set():
                    self._count("dropped")
                    continue
                self._deliver(client, item)

    def _deliver(self, client: Any, body: str) -> None:
        import httpx

        for attempt in range(self.retries + 1):
            if attempt:
                delay = min(self.backoff * 2 ** (attempt - 1), self.max_backoff)
                if self._abandon.wait(delay):  # close() gave up: stop retrying
                    self._count("dropped")
                    return
            self._count("attempts")
            try:
                response = client.post(self.url, content=body.encode())
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 400:
                    self._count("sent")
                    return
                problem = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code not in (408, 429):
                    break  # the receiver refuses this event; retrying will not help
            logger.warning("HTTP callback to %s failed (attempt %d): %s", self.url, attempt + 1, problem)
        self._count("failed")
        logger.error("HTTP callback to %s: event lost after %d attempt(s)", self.url, self.attempts)

    def close(self, timeout: float | None = 5.0) -> None:
        """Send what is queued, waiting at most `timeout` seconds; after that, give up on the rest
        (counted in `dropped`) and return. The worker thread is a daemon and never keeps the
        interpreter alive."""
        if not self._closing.is_set():
            self._closing.set()
            self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abandon.set()
            logger.warning("HTTP callback to %s still busy after %ss; remaining events dropped", self.url, timeout)

    def __repr__(self) -> str:
        return f"HttpSink({self.url!r}, sent={self.sent}, failed={self.failed}, dropped={self.dropped})"


def make_sink(
    callback: str | Callable[[Envelope], Any] | EventSink | None,
    *,
    scrub: ScrubFn | None = None,
    secrets: Mapping[str, str] | None = None,
    stream: IO[str] | None = None,
    **http_options: Any,
) -> EventSink | None:
    """The sink for ``callback=`` on execute and resume.

    Args:
        callback: None (no sink), ``"stdout"``, ``"stdout_verbose"``, an ``http(s)://`` URL, an
            `EventSink` (returned as is), or a callable taking the envelope.
        scrub: A function applied to every envelope before it leaves (e.g. secret redaction).
        secrets: Secret values to replace with ``***`` (combined with `scrub`).
        stream: For the stdout sinks: where to print (default ``sys.stdout``).
        **http_options: For URLs: `HttpSink`'s options (retries, backoff, timeout, ...).

    Raises:
        OWFError: ``VALIDATION`` for a string that is neither a stdout mode nor an http(s) URL.
    """
    if callback is None:
        return None
    fn = _combine(scrub, secrets)
    if isinstance(callback, str):
        if callback in ("stdout", "stdout_verbose"):
            return StdoutSink(verbose=callback == "stdout_verbose", stream=stream, scrub=fn)
        if callback.startswith(("http://", "https://")):
            return HttpSink(callback, scrub=fn, **http_options)
        raise OWFError(
            f"callback must be 'stdout', 'stdout_verbose', an http(s) URL or a callable, got {callback!r}",
            code="VALIDATION",
            details={"callback": callback},
        )
    if isinstance(callback, _BaseSink):
        return callback
    if callable(callback):
        return CallableSink(callback, scrub=fn)
    raise OWFError(
        f"callback must be a string or a callable, not {type(callback).__name__}",
        code="VALIDATION",
        details={"callback": repr(callback)},
    )


def _combine(scrub: ScrubFn | None, secrets: Mapping[str, str] | None) -> ScrubFn | None:
    if not secrets:
        return scrub
    frozen = dict(secrets)

    def both(value: Any) -> Any:
        value = scrub_secrets(value, frozen)
        return scrub(value) if scrub is not None else value

    return both


def loads_envelope(body: bytes | str) -> Envelope:
    """Parse a posted envelope (for receivers and tests)."""
    data: Envelope = json.loads(body)
    return data
