"""The native executor: runs a frozen plan with asyncio, deterministically.

Each block of steps (the top level, a branch, a loop body) is a small DAG from the plan's graph:
every step starts as soon as the steps it reads have finished, so independent steps overlap.
Sync handlers run in a bounded thread pool (`OpenWorkflow(max_workers=...)`); templates and logic
steps run inline. Trace rows and events are sorted by the graph's order, iteration and attempt,
so the same inputs give the same outputs and the same trace whatever the timing.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import contextvars
import fnmatch
import functools
import importlib
import inspect
import itertools
import json
import math
import os
import re
import signal
import threading
import time
import uuid
from collections import ChainMap
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from .backends.base import ExecutionContext
from .errors import BackendError, OWFError, StepTimeoutError, UnavailableError
from .graph import ROOT, BlockKey, Graph
from .models import (
    LOGIC_STEP_TYPES,
    Action,
    ActionStep,
    Agent,
    AgentStep,
    Connector,
    ForEachStep,
    HandoffStep,
    IfStep,
    ParallelStep,
    RetryPolicy,
    StepBase,
    SwitchStep,
    ToolsetEntry,
    TransformStep,
    TryStep,
    WaitStep,
    WorkflowStep,
)
from .normalize import parse_duration
from .providers import Usage, make_model
from .queries import jq_program, jsonpath
from .refs import parse_ref
from .render import TemplateError, redact, render, render_string, truthy
from .resolution import Plan, step_models
from .results import RunResult, StepError, StepResult

if TYPE_CHECKING:
    from .backends.native import FunctionCall
    from .catalog import Loaded
    from .registry import OpenWorkflow

DEFAULT_MAX_WORKERS = 8
_run_counter = itertools.count(1)
_TRUSTED_SECRET_KEYS = re.compile(r"(header|auth|token|password|secret|key|credential)", re.I)
_PLACEHOLDER = re.compile(r"\$\{\s*([A-Za-z_][\w.]*)\s*\}")


def new_run_id() -> str:
    """Timestamp plus a process-wide sequence number (the OpenFlow protocol's format)."""
    stamp = _now()  # 2026-11-21T20:18:56.123Z
    return f"{stamp[0:4]}{stamp[5:7]}{stamp[8:10]}_{stamp[11:13]}{stamp[14:16]}{stamp[17:19]}_{next(_run_counter):06d}"


_second: list[Any] = [0, ""]  # [whole second, its text]: formatted once per second


def _now() -> str:
    """UTC now as ISO 8601 with milliseconds (``2026-11-21T20:18:56.123Z``), cheaply."""
    now = time.time()
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
    return StepError("BACKEND_ERROR", f"{type(exc).__name__}: {exc}", {"original_error": type(exc).__name__})


class StepFailed(Exception):
    """Raised inside the executor to carry a step's error up to the block that runs it."""

    def __init__(self, error: StepError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(slots=True)
class _Run:
    """What one run shares across its steps."""

    ow: OpenWorkflow
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
    functions: dict[str, FunctionCall] = field(default_factory=dict)  # handlers resolved this run
    deadline: datetime | None = None  # from the workflow's timeout; backends see it in their context
    # durable runs: the store, what an earlier run recorded, and requests made or answered
    store: Any = None
    recorded: dict[str, Any] = field(default_factory=dict)  # step key -> StepRecord, served, not run
    replay: bool = False  # serve recorded outputs, and fail when a step's resolved input differs
    answers: dict[str, list[Any]] = field(default_factory=dict)  # step key -> its PendingRequests
    pending: list[Any] = field(default_factory=list)  # requests this run waits for
    unsaved: list[dict[str, Any]] = field(default_factory=list)  # events not yet in the store
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)  # step key -> its input and usage
    approved: set[str] = field(default_factory=set)  # connectors approved for this run (first_use)
    budget: Any = None  # the workflow's policies.cost, for the whole run
    trigger: dict[str, Any] = field(default_factory=dict)  # what started the run (templates: trigger.*)

    def emit(self, key: tuple[Any, ...], event: dict[str, Any]) -> None:
        if self.secrets:
            event = redact(event, self.secrets)
        event.setdefault("event_id", f"evt_{self.run_id}_{next(self.event_seq):05d}")
        self.events.append((key, event))
        if self.store is not None:
            self.unsaved.append(event)
        if self.callback is not None:
            with contextlib.suppress(Exception):  # a callback never stops the run
                self.callback(event)


@dataclass(slots=True)
class _Frame:
    """The scope a block runs in: its plan, results, and loop or error variables."""

    plan: Plan
    models: dict[str, StepBase]
    inputs: dict[str, Any]
    views: ChainMap[str, Any]
    results: dict[str, StepResult]
    iteration: tuple[int, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    order: dict[str, float] = field(default_factory=dict)
    prefix: str = ""
    _scope: dict[str, Any] | None = None

    def scope(self, run: _Run) -> dict[str, Any]:
        """The template scope; built once per frame (it holds the live views, so it stays current)."""
        scope = self._scope
        if scope is None:
            scope = self._scope = {
                "inputs": self.inputs,
                "steps": self.views,
                "env": run.env,
                "secrets": run.secrets,
                "trigger": run.trigger,
                **self.extra,
            }
        return scope

    def child(self, *, iteration: tuple[int, ...] | None = None, extra: dict[str, Any] | None = None) -> _Frame:
        return _Frame(
            self.plan,
            self.models,
            self.inputs,
            self.views.new_child() if iteration is not None else self.views,
            self.results,
            iteration if iteration is not None else self.iteration,
            {**self.extra, **(extra or {})},
            self.order,
            self.prefix,
        )


@dataclass
class Resume:
    """How a run starts from an earlier record: resumed in place, replayed, or forked.

    Attributes:
        recorded: Step records by step key: successful leaf steps are served from here, not run.
        answers: Resolved (and open) pending requests by step key.
        continuing: True when this continues the same run id (resume); False for a new run.
        replay: Fail a step whose resolved input differs from the record.
        metadata: Stored with a new run (e.g. ``{"replay_of": run_id}``).
    """

    recorded: dict[str, Any] = field(default_factory=dict)
    answers: dict[str, list[Any]] = field(default_factory=dict)
    continuing: bool = False
    replay: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    first_event: int = 0  # events the run already has in the store (their ids are not reused)


class Executor:
    """Runs one plan. Create one per run."""

    def __init__(
        self,
        ow: OpenWorkflow,
        plan: Plan,
        *,
        inputs: Mapping[str, Any] | None = None,
        secrets: Mapping[str, str] | None = None,
        callback: Callable[[dict[str, Any]], Any] | None = None,
        run_id: str | None = None,
        events: Mapping[str, Any] | None = None,
        item: Loaded[Any] | None = None,
        store: Any = None,
        resume: Resume | None = None,
        trigger: Mapping[str, Any] | None = None,
    ) -> None:
        self.trigger = dict(trigger or {})
        self.store = store
        self.resume = resume
        self.ow = ow
        self.plan = plan
        self.item: Loaded[Any] = item if item is not None else ow.workflow(plan.workflow, plan.version).item
        self.inputs = dict(inputs or {})
        self.secrets = {str(k): str(v) for k, v in (secrets or {}).items()}
        self.callback = callback
        self.run_id = run_id or new_run_id()
        self.delivered = dict(events or {})

    # -- entry points -------------------------------------------------------------------------

    def _create_record(self, store: Any, wf: Any, inputs: dict[str, Any], resume: Resume | None) -> None:
        """The run's record; a run id another process took in the same second gets the next one."""
        for _ in range(100):
            try:
                store.create_run(
                    self.run_id,
                    wf.name,
                    workflow_version=wf.version,
                    inputs=redact(inputs, self.secrets),
                    metadata={
                        "prefer_backend": self.plan.prefer_backend,
                        **({"trigger": redact(self.trigger, self.secrets)} if self.trigger else {}),
                        **(resume.metadata if resume else {}),
                    },
                )
                return
            except OWFError as exc:
                if "already" not in exc.message:
                    raise
                self.run_id = new_run_id()
        raise OWFError("no free run id", code="INTERNAL_ERROR")

    async def arun(self) -> RunResult:
        memo = self.plan.memo
        if "available" not in memo:
            self.plan.check_available()
            memo["available"] = True
        wf = self.item.model
        inputs = resolve_inputs(wf, self.inputs)
        pool = self.ow.thread_pool()
        env = self.ow.environment if self.ow.environment is not None else os.environ
        run = _Run(self.ow, self.run_id, self.secrets, env, pool, self.callback, self.delivered)
        started = time.perf_counter()
        store = run.store = self.store
        run.trigger = self.trigger
        if wf.policies is not None:
            from .limits import run_budget

            run.budget = run_budget(wf)
        resume = self.resume
        if resume is not None:
            run.recorded, run.replay, run.answers = resume.recorded, resume.replay, resume.answers
            run.event_seq = itertools.count(resume.first_event)
        if store is not None and (resume is None or not resume.continuing):
            self._create_record(store, wf, inputs, resume)
            run.run_id = self.run_id
        run.emit(
            (-1,),
            {
                "type": "run.resumed" if resume is not None and resume.continuing else "run.started",
                "timestamp": _now(),
                "payload": {"workflow": wf.name, "run_id": self.run_id},
                "metadata": {"workflow_version": wf.version},
            },
        )
        if "models" not in memo:  # once per plan: step models by id, and each step's rank in graph order
            memo["models"] = step_models(wf)
            memo["order"] = {sid: float(i) for i, sid in enumerate(self.plan.graph.topological())}
        frame = _Frame(self.plan, memo["models"], inputs, ChainMap({}), {}, order=memo["order"])
        limit = parse_duration(wf.timeout) if wf.timeout is not None else None
        if limit is not None:
            run.deadline = datetime.now(UTC) + timedelta(seconds=limit)
        try:
            if limit is None:
                outcome = await _run_block(run, frame, ROOT)
            else:  # the workflow's timeout is the run's deadline: steps in flight are canceled
                async with asyncio.timeout(limit):
                    outcome = await _run_block(run, frame, ROOT)
            status = "completed" if outcome is None else "failed"
            if status == "completed" and run.pending:
                status = "waiting_approval"
        except TimeoutError:
            outcome = StepError(
                "TIMEOUT",
                f"workflow '{wf.name}' exceeded its timeout of {limit:g}s",
                {"timeout_ms": int((limit or 0) * 1000), "elapsed_ms": round((time.perf_counter() - started) * 1000)},
            )
            status = "failed"
            _mark_unfinished(frame)
        except asyncio.CancelledError:
            # the caller canceled the run: finish the record (steps in flight are marked canceled)
            outcome = StepError("CANCELED", "the run was canceled", {"canceled_at": _now()})
            status = "canceled"
            _mark_unfinished(frame)
        outputs = _render_outputs(wf.outputs, frame.scope(run))
        result = _finish(run, wf.name, status, redact(outputs, self.secrets), frame.results, outcome)
        result.duration_ms = round((time.perf_counter() - started) * 1000, 3)
        final = {
            "completed": "run.completed",
            "canceled": "run.canceled",
            "waiting_approval": "run.waiting",
        }.get(status, "run.failed")
        run.emit(
            (10**9,),
            {
                "type": final,
                "timestamp": _now(),
                "payload": {"status": status, "run_id": self.run_id},
                "metadata": {"duration_ms": result.duration_ms, "pending": [p.id for p in run.pending]},
            },
        )
        result.events = [e for _, e in sorted(run.events, key=lambda kv: kv[0])]
        result.pending = list(run.pending)
        if store is not None:
            store.append_events(self.run_id, run.unsaved)
            run.unsaved = []
            if status == "waiting_approval":
                store.set_status(self.run_id, status)
            else:
                for request in store.get_pending(self.run_id):  # nothing waits for them any more
                    store.resolve_pending(request.id, None)
                store.finish_run(
                    self.run_id,
                    status,
                    outputs=result.outputs,
                    error=result.error.to_dict() if result.error else None,
                )
        return result

    def run(self) -> RunResult:
        """Run synchronously, also from inside a running event loop (a Jupyter kernel).

        Outside a loop the run uses this thread's own reusable loop; inside one (a kernel) it runs
        on a background loop thread while this thread waits. Ctrl-C / KeyboardInterrupt cancels
        the run: steps in flight end ``canceled`` and the canceled result is returned.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return _run_here(self.arun())
        future = asyncio.run_coroutine_threadsafe(self.arun(), _background_loop())
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()  # cancels the run's task; arun records the cancellation and returns
            with contextlib.suppress(concurrent.futures.CancelledError):
                return future.result()
            raise


_main_loop: list[asyncio.AbstractEventLoop] = []
_sig: Any = importlib.import_module("_signal")  # signal's C module
_background: list[asyncio.AbstractEventLoop] = []
_background_lock = threading.Lock()


def _run_here(coro: Coroutine[Any, Any, RunResult]) -> RunResult:
    """Run on an event loop in this thread; the main thread keeps one for every run.

    In the main thread, Ctrl-C (SIGINT) cancels the run's task, so the cancellation is recorded
    (steps in flight end ``canceled``) and the canceled result returned; a second Ctrl-C raises
    KeyboardInterrupt. A SIGINT handler the program installed itself is left alone.
    """
    if threading.current_thread() is not threading.main_thread():
        with asyncio.Runner() as runner:  # other threads may end at any time: their loop closes now
            return runner.run(coro)
    if not _main_loop or _main_loop[0].is_closed():
        _main_loop[:] = [asyncio.new_event_loop()]
        atexit.register(_main_loop[0].close)
    loop = _main_loop[0]
    task = loop.create_task(coro)

    def on_sigint(signum: int, frame: Any) -> None:
        if task.done() or task.cancelling():  # a second Ctrl-C: stop waiting
            raise KeyboardInterrupt
        loop.call_soon_threadsafe(task.cancel)

    # the C-level calls: signal.signal() converts handlers to enums, which costs a run ~15 µs
    ours = _sig.getsignal(signal.SIGINT) is signal.default_int_handler
    if ours:
        _sig.signal(signal.SIGINT, on_sigint)
    try:
        return loop.run_until_complete(task)
    finally:
        if ours:
            _sig.signal(signal.SIGINT, signal.default_int_handler)


def _mark_unfinished(frame: _Frame) -> None:
    for sid in frame.plan.order:
        if sid not in frame.results:
            frame.results[sid] = StepResult(sid, "canceled", backend=frame.plan[sid].backend)


def _background_loop() -> asyncio.AbstractEventLoop:
    """The loop runs started from inside another running loop (a Jupyter kernel) execute on."""
    with _background_lock:
        if not _background:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="owf-runs", daemon=True).start()
            _background.append(loop)
        return _background[0]


def resolve_inputs(wf: Any, given: Mapping[str, Any]) -> dict[str, Any]:
    """Declared defaults filled in, required inputs checked, basic types checked."""
    out = dict(given)
    problems = []
    for name in given:
        if name not in wf.inputs:  # a misspelt input would otherwise be ignored, and a default used
            from .errors import did_you_mean

            best = did_you_mean(name, list(wf.inputs))
            hint = f" (did you mean '{best}'?)" if best else f" (it declares {', '.join(wf.inputs) or 'none'})"
            problems.append(f"the workflow declares no input '{name}'{hint}")
    types: dict[str, type | tuple[type, ...]] = {
        "string": str,
        "number": (int, float),
        "integer": int,
        "boolean": bool,
        "array": list,
        "object": dict,
    }
    for name, spec in wf.inputs.items():
        if name not in out:
            if spec.default is not None:
                out[name] = spec.default
            elif spec.required:
                problems.append(f"input '{name}' is required")
            else:
                out[name] = None
            continue
        value = out[name]
        expected = types.get(spec.type or "")
        if expected is not None and value is not None:
            ok = isinstance(value, expected) and not (spec.type in ("number", "integer") and isinstance(value, bool))
            if not ok:
                problems.append(f"input '{name}' must be {spec.type}, got {type(value).__name__}")
        if spec.enum is not None and value not in spec.enum:
            problems.append(f"input '{name}' must be one of {spec.enum}, got {value!r}")
    if problems:
        raise OWFError("; ".join(problems), code="VALIDATION", details={"problems": problems})
    return out


def _render_outputs(outputs: Mapping[str, Any], scope: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, spec in outputs.items():
        try:
            out[name] = render(spec.value, scope)
        except TemplateError:
            out[name] = None  # the step it reads did not run (a branch not taken, a failure)
    return out


def _first(kv: tuple[Any, Any]) -> Any:
    return kv[0]


def _finish(
    run: _Run, name: str, status: str, outputs: dict[str, Any], results: dict[str, StepResult], error: StepError | None
) -> RunResult:
    trace = [r for _, r in sorted(run.trace, key=_first)]
    usage = [r for _, r in sorted(run.usage, key=_first)]
    if run.secrets:
        trace = [redact(r, run.secrets) for r in trace]
        for res in results.values():
            res.output = redact(res.output, run.secrets)
            if res.error is not None:
                res.error = redact_error(res.error, run.secrets)
    return RunResult(
        run.run_id,
        name,
        status,
        outputs,
        results,
        [],
        trace,
        usage,
        redact_error(error, run.secrets) if error else None,
    )


def redact_error(error: StepError, secrets: Mapping[str, str]) -> StepError:
    return StepError(error.code, redact(error.message, secrets), redact(error.details, secrets))


# ------------------------------------------------------------------------------------------------
# blocks


async def _run_block(run: _Run, frame: _Frame, key: BlockKey) -> StepError | None:
    """Run a block's steps as a DAG; returns the first failure (in graph order), or None.

    A step starts when the last step it waits for finishes, in the coroutine that finished it: a
    chain runs in one task with no scheduling between its steps, and only steps that become ready
    together get tasks of their own (so they overlap).
    """
    sched = frame.plan.graph.schedule(key)
    if not sched.members:
        return None
    waits = dict(sched.waits)
    blocked: set[str] = set()
    held: set[str] = set()  # waiting for something from outside, or after a step that is
    failures: dict[str, StepError] = {}
    tasks: list[asyncio.Task[None]] = []

    async def chain(sid: str | None) -> None:
        while sid is not None:
            step = frame.models[sid]
            if sid in blocked:
                _skip(run, frame, step, "an earlier step failed")
            elif sid in held:
                _hold(frame, step)
            else:
                try:
                    res = await _run_step(run, frame, step)
                except BaseException:
                    blocked.add(sid)
                    raise
                if res.status == "failed" and not step.continueOnError:
                    failures[sid] = res.error or StepError("INTERNAL_ERROR", "failed")
                    blocked.add(sid)
                elif res.status == "waiting":
                    held.add(sid)
            ready = []
            for nxt in sched.after[sid]:
                if sid in blocked:
                    blocked.add(nxt)
                elif sid in held:
                    held.add(nxt)
                waits[nxt] -= 1
                if not waits[nxt]:
                    ready.append(nxt)
            for other in ready[1:]:
                tasks.append(asyncio.create_task(chain(other)))
            sid = ready[0] if ready else None

    roots = [sid for sid in sched.members if not waits[sid]]
    tasks.extend(asyncio.create_task(chain(sid)) for sid in roots[1:])
    try:
        await chain(roots[0])
        i = 0
        while i < len(tasks):  # tasks may start more tasks while we wait
            await tasks[i]
            i += 1
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for sid in sched.members:
        if sid in failures:
            return failures[sid]
    return None


_VIEW_KEYS = frozenset({"output", "status", "error", "attempts"})


def _view(res: StepResult, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    view = {
        "output": res.output,
        "status": res.status,
        "error": res.error.to_dict() if res.error else None,
        "attempts": res.attempts,
    }
    if extra:
        view.update(extra)
    return view


def _store(frame: _Frame, res: StepResult, extra: Mapping[str, Any] | None = None) -> None:
    frame.results[res.step_id] = res
    frame.views[res.step_id] = _view(res, extra)


def _skip(run: _Run, frame: _Frame, step: StepBase, reason: str) -> None:
    res = StepResult(step.id, "skipped", backend=frame.plan[step.id].backend)
    _store(frame, res)
    started = _now()
    _trace(run, frame, step, res, attempt=0, started=started, duration=0.0, note=reason)
    _step_event(run, frame, step, "step.skipped", 0, started, reason=reason)
    _checkpoint(run, frame, step, res)
    for child in _descendants(frame.plan.graph, step.id):
        if child not in frame.results:
            cres = StepResult(child, "skipped", backend=frame.plan[child].backend)
            _store(frame, cres)


def _hold(frame: _Frame, step: StepBase) -> None:
    """A step that cannot start before a waiting step finishes: it waits too (it runs on resume)."""
    _store(frame, StepResult(step.id, "waiting", backend=frame.plan[step.id].backend))
    for child in _descendants(frame.plan.graph, step.id):
        if child not in frame.results:
            _store(frame, StepResult(child, "waiting", backend=frame.plan[child].backend))


def _descendants(graph: Graph, sid: str) -> list[str]:
    out: list[str] = []
    for key in graph.child_blocks.get(sid, ()):
        for child in graph.order.get(key, ()):
            out.append(child)
            out.extend(_descendants(graph, child))
    return out


def _trace(
    run: _Run,
    frame: _Frame,
    step: StepBase,
    res: StepResult,
    *,
    attempt: int,
    started: str,
    duration: float,
    usage: Usage | None = None,
    cost: float = 0.0,
    note: str | None = None,
    event: bool = True,
) -> None:
    entry = frame.plan.entries[step.id]
    key = (frame.order.get(step.id, 0), frame.iteration, attempt)
    duration = round(duration, 3)
    row = {
        "run_id": run.run_id,
        "step_id": frame.prefix + step.id,
        "type": step.type,  # type: ignore[attr-defined]
        "backend": entry.backend,
        "backend_source": entry.source,
        "status": res.status,
        "attempt": attempt,
        "iteration": ".".join(map(str, frame.iteration)) if frame.iteration else "",
        "parent": entry.parent or "",
        "started_at": started,
        "duration_ms": duration,
        "prompt_tokens": usage.prompt_tokens if usage else 0,
        "completion_tokens": usage.completion_tokens if usage else 0,
        "total_tokens": usage.total_tokens if usage else 0,
        "cost_usd": cost,
        "error_code": res.error.code if res.error else None,
    }
    run.trace.append((key, row))
    if res.status in ("skipped", "waiting") or not event:
        return
    execution: dict[str, Any] = {
        "backend": entry.backend,
        "runtime": entry.runtime,
        "adapter_version": entry.adapter_version,
        "duration_ms": duration,
    }
    if usage is not None:
        execution["token_usage"] = {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        }
    result: dict[str, Any] = {"status": "success" if res.status == "success" else "error", "output": res.output}
    if res.error:
        result["error"] = res.error.to_dict()
    run.emit(
        key,
        {
            "type": "step.execution.completed",
            "timestamp": started,
            "run_id": run.run_id,
            "step_id": frame.prefix + step.id,
            "step_type": step.type,  # type: ignore[attr-defined]
            "iteration": row["iteration"],
            "attempt": attempt,
            "execution": execution,
            "result": result,
        },
    )


# ------------------------------------------------------------------------------------------------
# one step: condition, loop modifier, retries, timeout


async def _run_step(run: _Run, frame: _Frame, step: StepBase) -> StepResult:
    scope = frame.scope(run)
    if step.condition is not None and not isinstance(step, IfStep):
        try:
            go = truthy(render(step.condition, scope))
        except TemplateError as exc:
            res = StepResult(step.id, "failed", error=to_step_error(exc), backend=frame.plan[step.id].backend)
            _store(frame, res)
            _trace(run, frame, step, res, attempt=1, started=_now(), duration=0.0)
            return res
        if not go:
            _skip(run, frame, step, "condition is false")
            return frame.results[step.id]
    if step.forEach is not None:
        return await _run_inline_loop(run, frame, step)
    res, extra = await _attempts(run, frame, step)
    if isinstance(res.output, dict) and step.type in LOGIC_STEP_TYPES:  # type: ignore[attr-defined]
        # the spec's examples read a logic step's output fields directly: steps.wait.timedOut
        extra = {**{k: v for k, v in res.output.items() if k not in _VIEW_KEYS}, **(extra or {})}
    _store(frame, res, extra)
    if run.store is not None:
        _checkpoint(run, frame, step, res)
    return res


async def _run_inline_loop(run: _Run, frame: _Frame, step: StepBase) -> StepResult:
    assert step.forEach is not None
    mod = step.forEach
    entry = frame.plan[step.id]
    try:
        items = render(mod.items, frame.scope(run))
        if not isinstance(items, list):
            raise TemplateError(f"forEach items must be a list, got {type(items).__name__}")
    except TemplateError as exc:
        res = StepResult(step.id, "failed", error=to_step_error(exc), backend=entry.backend)
        _store(frame, res)
        return res
    limit = None if mod.parallel and mod.maxConcurrency is None else (mod.maxConcurrency or 1)

    async def iteration(i: int, item: Any) -> tuple[StepResult, dict[str, Any] | None]:
        sub = _loop_frame(frame, i, item, len(items))
        res, extra = await _attempts(run, sub, step)
        if run.store is not None:
            _checkpoint(run, sub, step, res)  # each iteration resumes on its own
        return res, extra

    outcomes = await _map_items(items, limit, iteration)
    outputs = [r.output for r, _ in outcomes]
    failed = [r for r, _ in outcomes if r.status == "failed"]
    status = "failed" if failed and not (mod.continueOnError or step.continueOnError) else "success"
    if status == "success" and any(r.status == "waiting" for r, _ in outcomes):
        status = "waiting"
    res = StepResult(
        step.id,
        status,
        outputs,
        failed[0].error if failed else None,
        attempts=sum(r.attempts for r, _ in outcomes),
        backend=entry.backend,
    )
    _store(frame, res, {"results": [_view(r) for r, _ in outcomes]})
    return res


def _loop_frame(frame: _Frame, index: int, item: Any, total: int) -> _Frame:
    return frame.child(
        iteration=(*frame.iteration, index),
        extra={"item": item, "index": index, "isFirst": index == 0, "isLast": index == total - 1},
    )


async def _map_items(items: list[Any], limit: int | None, fn: Callable[[int, Any], Any]) -> list[Any]:
    """Run `fn(index, item)` for every item, at most `limit` at once; results in item order."""
    if limit is None or limit >= len(items):
        return list(await asyncio.gather(*(fn(i, item) for i, item in enumerate(items))))
    sem = asyncio.Semaphore(limit)

    async def guarded(i: int, item: Any) -> Any:
        async with sem:
            return await fn(i, item)

    return list(await asyncio.gather(*(guarded(i, item) for i, item in enumerate(items))))


def _delay(policy: RetryPolicy, attempt: int) -> float:
    base = policy.initialDelay if policy.initialDelay is not None else 1.0
    if policy.backoff == "fixed":
        delay = base
    elif policy.backoff == "linear":
        delay = base * attempt
    else:
        delay = base * (policy.backoffFactor ** (attempt - 1))
    return min(delay, policy.maxDelay) if policy.maxDelay is not None else delay


def _retryable(policy: RetryPolicy, error: StepError) -> bool:
    if not policy.retryOn:
        return error.code not in ("VALIDATION", "CANCELED")
    wanted = {r.lower() for r in policy.retryOn}
    names = {error.code.lower(), str(error.details.get("original_error", "")).lower()}
    if error.code == "TIMEOUT":
        names.add("timeout")
    return bool(wanted & names)


@dataclass(frozen=True, slots=True)
class _StepFacts:
    """What `_attempts` needs to know about a step, worked out once per plan."""

    policy: RetryPolicy | None
    max_attempts: int
    timeout: float | None
    leaf: bool
    calls_models: bool


def _facts(frame: _Frame, step: StepBase) -> _StepFacts:
    # keyed by the step object: an adapter may run a copy of a step (without its retry, say)
    table: dict[int, tuple[StepBase, _StepFacts]] = frame.plan.memo.setdefault("facts", {})
    hit = table.get(id(step))
    if hit is not None and hit[0] is step:
        return hit[1]
    policy = step.retry if not isinstance(step, TryStep) else None  # a try step's retry is for its block
    facts = _StepFacts(
        policy,
        policy.maxAttempts if policy else 1,
        parse_duration(step.timeout) if step.timeout is not None else None,
        isinstance(step, _LEAVES),
        isinstance(step, AgentStep | HandoffStep),
    )
    table[id(step)] = (step, facts)
    return facts


async def _attempts(run: _Run, frame: _Frame, step: StepBase) -> tuple[StepResult, dict[str, Any] | None]:
    """Run a step with its retry policy and timeout; one trace row per attempt."""
    facts = _facts(frame, step)
    policy, max_attempts, timeout = facts.policy, facts.max_attempts, facts.timeout
    entry = frame.plan.entries[step.id]
    key = frame.prefix + step.id if not frame.iteration else _step_key(frame, step.id)
    if run.recorded and facts.leaf:
        rec = run.recorded.get(key)
        if rec is not None and rec.status == "success":
            return _restore(run, frame, step, rec), None
    _current_key.set(key)
    container = not facts.leaf
    waited: list[bool] = [False]  # set when a step inside this one waits
    attempt = 0
    while True:
        attempt += 1
        started = _now()
        t0 = time.perf_counter()
        acc = _Accounting() if facts.calls_models else _NO_USAGE
        _step_event(run, frame, step, "step.started", attempt, started)
        try:
            coro = _execute(run, frame, step, acc)
            token = _wait_flags.set((*_wait_flags.get(), waited)) if container else None
            try:
                output, extra = await (asyncio.wait_for(coro, timeout) if timeout else coro)
            finally:
                if token is not None:
                    _wait_flags.reset(token)
                    if waited[0]:
                        _flag_wait()  # the step that holds this one waits too
            res = StepResult(step.id, "success", output, None, attempt, entry.backend)
        except TimeoutError:
            err = StepError(
                "TIMEOUT",
                f"step '{step.id}' exceeded its timeout of {timeout:g}s",
                {"timeout_ms": int((timeout or 0) * 1000), "elapsed_ms": round((time.perf_counter() - t0) * 1000)},
            )
            res, extra = StepResult(step.id, "failed", None, err, attempt, entry.backend), None
        except StepFailed as exc:
            res, extra = StepResult(step.id, "failed", None, exc.error, attempt, entry.backend), None
        except _Waiting as wait:
            request = _request(run, key, wait)
            res = StepResult(step.id, "waiting", None, None, attempt, entry.backend)
            _trace(run, frame, step, res, attempt=attempt, started=started, duration=(time.perf_counter() - t0) * 1000)
            _step_event(
                run, frame, step, "step.waiting", attempt, started, request={"id": request.id, "kind": request.kind}
            )
            return res, None
        except asyncio.CancelledError:
            res = StepResult(step.id, "canceled", None, StepError("CANCELED", "canceled"), attempt, entry.backend)
            _trace(run, frame, step, res, attempt=attempt, started=started, duration=(time.perf_counter() - t0) * 1000)
            _store(frame, res)
            raise
        except Exception as exc:
            res, extra = StepResult(step.id, "failed", None, to_step_error(exc), attempt, entry.backend), None
        duration = (time.perf_counter() - t0) * 1000
        res.duration_ms = round(duration, 3)
        _trace(
            run, frame, step, res, attempt=attempt, started=started, duration=duration, usage=acc.total(), cost=acc.cost
        )
        for sort_key, row in acc.rows:
            run.usage.append(((frame.order.get(step.id, 0), frame.iteration, attempt, *sort_key), row))
        if run.store is not None and acc is not _NO_USAGE and (total := acc.total()) is not None:
            usage = {
                "prompt_tokens": total.prompt_tokens,
                "completion_tokens": total.completion_tokens,
                "total_tokens": total.total_tokens,
            }
            run.seen.setdefault(key, {})["usage"] = {**usage, "estimated": total.estimated, "cost_usd": acc.cost}
        if res.status == "success" and waited[0]:
            res.status = "waiting"  # a step inside it waits: this one finishes on resume
        if res.status != "failed":
            return res, extra
        assert res.error is not None
        if policy is None or attempt >= max_attempts or not _retryable(policy, res.error):
            _step_event(run, frame, step, "step.failed", attempt, _now(), error=res.error.to_dict())
            return res, extra
        delay = _delay(policy, attempt)
        _step_event(
            run,
            frame,
            step,
            "step.retrying",
            attempt,
            _now(),
            error=res.error.to_dict(),
            next_attempt=attempt + 1,
            delay_ms=round(delay * 1000),
        )
        await asyncio.sleep(delay)


def _step_event(
    run: _Run, frame: _Frame, step: StepBase, kind: str, attempt: int, timestamp: str, **fields: Any
) -> None:
    """A step lifecycle event (started, retrying, failed, skipped), ordered with the step's others."""
    entry = frame.plan.entries[step.id]
    run.emit(
        (frame.order.get(step.id, 0), frame.iteration, attempt),
        {
            "type": kind,
            "timestamp": timestamp,
            "run_id": run.run_id,
            "step_id": frame.prefix + step.id,
            "step_type": step.type,  # type: ignore[attr-defined]
            "iteration": ".".join(map(str, frame.iteration)) if frame.iteration else "",
            "attempt": attempt,
            "backend": entry.backend,
            **fields,
        },
    )


@dataclass
class _Accounting:
    """Token usage and cost of one attempt (agent steps)."""

    turns: list[Usage] = field(default_factory=list)
    cost: float = 0.0
    rows: list[tuple[tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)

    def total(self) -> Usage | None:
        if not self.turns:
            return None
        return Usage(
            sum(u.prompt_tokens for u in self.turns),
            sum(u.completion_tokens for u in self.turns),
            any(u.estimated for u in self.turns),
        )


_NO_USAGE = _Accounting()  # shared by the steps that call no model; only agent steps add to theirs


# ------------------------------------------------------------------------------------------------
# durable runs: checkpoints, restored steps, waiting for approvals, events and times

_current_key: contextvars.ContextVar[str] = contextvars.ContextVar("owf_step_key", default="")
_wait_flags: contextvars.ContextVar[tuple[list[bool], ...]] = contextvars.ContextVar("owf_wait_flags", default=())
_LEAVES = (ActionStep, AgentStep, TransformStep, WaitStep, HandoffStep)  # served from a record on resume


class _Waiting(BaseException):
    """Raised where a step needs something from outside: an approval, an event, a time to come.

    A BaseException, like cancellation, so that no ``except Exception`` on its way up (a handler,
    an adapter, a framework) turns it into a failure: the step that raised it catches it.
    """

    def __init__(self, kind: str, payload: dict[str, Any]) -> None:
        super().__init__(kind)
        self.kind = kind
        self.payload = payload


def _step_key(frame: _Frame, step_id: str) -> str:
    """The key of one execution of a step: its id, with its loop iteration path (``body[2.0]``)."""
    key = frame.prefix + step_id
    return f"{key}[{'.'.join(map(str, frame.iteration))}]" if frame.iteration else key


def _answer(run: _Run, key: str, kind: str, match: Mapping[str, Any]) -> Any:
    """The request of this step of that kind whose payload has `match`, answered or not (or None)."""
    for request in run.answers.get(key, ()):
        if request.kind == kind and all(request.payload.get(k) == v for k, v in match.items()):
            return request
    return None


def _request(run: _Run, key: str, wait: _Waiting) -> Any:
    """Record what a waiting step needs (reusing the request an earlier attempt of the run made)."""
    from .store import PendingRequest

    request = _answer(run, key, wait.kind, wait.payload)
    if request is None:
        payload = redact(wait.payload, run.secrets) if run.secrets else wait.payload
        if run.store is not None:
            request = run.store.add_pending(run.run_id, key, wait.kind, payload)
        else:
            request_id = f"req_{run.run_id}_{len(run.pending) + 1}"
            request = PendingRequest(request_id, run.run_id, key, wait.kind, payload, datetime.now(UTC))
        run.answers.setdefault(key, []).append(request)
    run.pending.append(request)
    _flag_wait()
    return request


def _flag_wait() -> None:
    """Tell the step or block this one runs inside that something in it waits (it passes it on
    when it ends, unless it decides otherwise: a parallel step that finished without the branch)."""
    flags = _wait_flags.get()
    if flags:
        flags[-1][0] = True


def _record_input(run: _Run, data: Any) -> None:
    if run.store is not None:
        run.seen.setdefault(_current_key.get(), {})["input"] = redact(data, run.secrets) if run.secrets else data


def _checkpoint(run: _Run, frame: _Frame, step: StepBase, res: StepResult) -> None:
    """Write the step's record and the events since the last checkpoint, in one transaction."""
    if run.store is None:
        return
    from .store import StepRecord

    key = _step_key(frame, step.id)
    seen = run.seen.pop(key, {})
    output, error = res.output, res.error.to_dict() if res.error else None
    if run.secrets:
        output, error = redact(output, run.secrets), redact(error, run.secrets)
    record = StepRecord(
        key,
        frame.prefix + step.id,
        res.status,
        output,
        error,
        res.attempts,
        res.backend,
        seen.get("usage"),
        seen.get("input"),
    )
    events, run.unsaved = run.unsaved, []
    run.store.checkpoint(run.run_id, record, events)


def _restore(run: _Run, frame: _Frame, step: StepBase, rec: Any) -> StepResult:
    """A step an earlier run completed: its recorded result, without running it again.

    A replay first renders the step's input and fails loudly when it differs from the record.
    """
    entry = frame.plan.entries[step.id]
    if run.replay and isinstance(step, ActionStep | AgentStep):
        from .store import input_differences

        actual = _render_input(step.input, frame.scope(run), step.id)
        diffs = input_differences(rec.input, redact(actual, run.secrets) if run.secrets else actual)
        if diffs:
            error = StepError(
                "VALIDATION",
                f"replay diverged at step '{step.id}': {'; '.join(diffs[:3])}",
                {"differences": diffs, "recorded_run_step": rec.step_key},
            )
            res = StepResult(step.id, "failed", None, error, rec.attempts, entry.backend)
            _trace(run, frame, step, res, attempt=1, started=_now(), duration=0.0)
            return res
    res = StepResult(step.id, "success", rec.output, None, rec.attempts, rec.backend or entry.backend)
    if isinstance(step, AgentStep):  # an agent with buffer memory remembers what it said before
        agent = frame.plan.targets[step.id].model
        if agent.memory is not None and agent.memory.type == "buffer" and rec.input is not None:
            _remember(run, agent, rec.input, rec.output)
    usage = rec.usage or {}
    total = (
        Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)), bool(usage.get("estimated")))
        if usage
        else None
    )
    cost = float(usage.get("cost_usd", 0.0)) if usage else 0.0
    _trace(
        run,
        frame,
        step,
        res,
        attempt=rec.attempts,
        started=_now(),
        duration=0.0,
        usage=total,
        cost=cost,
        note="restored",
        event=run.replay,  # a resumed run already has this step's events in its store
    )
    if run.store is not None:  # the checkpoint written for it again keeps what the record had
        run.seen[rec.step_key] = {"input": rec.input, "usage": rec.usage}
    if run.budget is not None and usage:  # what the run spent before it stopped still counts
        run.budget.record(int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0)), cost)
    return res


# ------------------------------------------------------------------------------------------------
# step kinds


async def _execute(
    run: _Run, frame: _Frame, step: StepBase, acc: _Accounting, *, handed: bool = False
) -> tuple[Any, dict[str, Any] | None]:
    entry = frame.plan[step.id]
    if entry.backend != "native" and not handed and not isinstance(step, ActionStep | AgentStep):
        return await _foreign_step(run, frame, step, acc)
    scope = frame.scope(run)
    if isinstance(step, ActionStep):
        data = _render_input(step.input, scope, step.id)
        _record_input(run, data)
        conn: Loaded[Connector] = frame.plan.targets[step.id]
        if entry.backend != "native":
            native = functools.partial(run_action, run, conn.model, step.action, data, step.id)
            manifest = conn.model.model_dump(mode="json", by_alias=True)
            return await _foreign(
                run, frame, step, manifest, data, {"action": step.action, "native": native}, acc
            ), None
        return await run_action(run, conn.model, step.action, data, step.id), None
    if isinstance(step, AgentStep):
        agent: Loaded[Agent] = frame.plan.targets[step.id]
        data = _render_input(step.input, scope, step.id)
        _record_input(run, data)
        if entry.backend != "native":
            manifest = agent.model.model_dump(mode="json", by_alias=True)
            hooks = {"turn_hooks": _turn_hooks(run, agent.model, step)}
            return await _foreign(run, frame, step, manifest, data, hooks, acc), None
        return await run_agent(run, agent.model, data, step.id, acc, step), None
    if isinstance(step, TransformStep):
        result = _transform(step, scope, frame)
        return {"result": result}, {"result": result}
    if isinstance(step, IfStep):
        cond = truthy(render(step.condition, scope))
        branch = "then" if cond else "else"
        await _branch(run, frame, step, branch, [b for b in ("then", "else") if b != branch])
        return {"branch": branch, "conditionResult": cond}, _children_views(frame, step.id)
    if isinstance(step, SwitchStep):
        value = render(step.value, scope)
        key = _case_key(value, step.cases)
        block = f"cases:{key}" if key is not None else "default"
        others = [f"cases:{k}" for k in step.cases if k != key] + ([] if key is None else ["default"])
        await _branch(run, frame, step, block, others)
        return {"case": key if key is not None else "default", "matchedValue": value}, _children_views(frame, step.id)
    if isinstance(step, ForEachStep):
        return await _for_each(run, frame, step, scope)
    if isinstance(step, ParallelStep):
        return await _parallel(run, frame, step)
    if isinstance(step, TryStep):
        return await _try(run, frame, step)
    if isinstance(step, WaitStep):
        return await _wait(step, run), None
    if isinstance(step, WorkflowStep):
        return await _subworkflow(run, frame, step, scope)
    if isinstance(step, HandoffStep):
        return await _handoff(run, frame, step, scope, acc), None
    raise BackendError(f"step type {step.type!r} is not supported by the native executor")  # type: ignore[attr-defined]


def _render_input(value: Any, scope: dict[str, Any], step_id: str, path: str = "input") -> Any:
    """Render a step's input; ``secrets`` may only fill credential-like fields (headers, tokens...)."""
    if isinstance(value, str):
        if "secrets" in value and "{{" in value and not _TRUSTED_SECRET_KEYS.search(path):
            from .templates import analyse

            if "secrets" in analyse(value).roots:
                raise StepFailed(
                    StepError(
                        "VALIDATION",
                        f"secret exposure blocked in step '{step_id}' field '{path}': secrets may only fill "
                        "credential fields (headers, auth, token, password, key)",
                        {"field": path},
                    )
                )
        return render_string(value, scope)
    if isinstance(value, dict):
        return {k: _render_input(v, scope, step_id, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_render_input(v, scope, step_id, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _case_key(value: Any, cases: Mapping[str, Any]) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, bool) else str(value)
    return text if text in cases else None


async def _branch(run: _Run, frame: _Frame, step: StepBase, block: str, skipped: list[str]) -> None:
    graph = frame.plan.graph
    for other in skipped:
        for sid in graph.order.get((step.id, other), ()):
            _skip(run, frame, frame.models[sid], "branch not taken")
    failure = await _run_block(run, frame, (step.id, block))
    if failure is not None:
        raise StepFailed(failure)


def _children_views(frame: _Frame, sid: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in frame.plan.graph.child_blocks.get(sid, ()):
        for child in frame.plan.graph.order.get(key, ()):
            if child in frame.views:
                out[child] = frame.views[child]
    return out


def _last_output(frame: _Frame, key: BlockKey) -> tuple[str, Any, StepError | None]:
    members = frame.plan.graph.order.get(key, ())
    status, output, error = "success", None, None
    for sid in members:
        view = frame.views.get(sid)
        if view is None:
            continue
        if view["status"] == "failed" and error is None:
            status, error = "failed", frame.results[sid].error
    if members:
        last = frame.views.get(members[-1])
        output = last["output"] if last else None
    return status, output, error


async def _for_each(run: _Run, frame: _Frame, step: ForEachStep, scope: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    items = render(step.items, scope)
    if not isinstance(items, list):
        raise StepFailed(StepError("VALIDATION", f"forEach items must be a list, got {type(items).__name__}"))
    key = (step.id, "steps")

    async def body(i: int, item: Any) -> dict[str, Any]:
        sub = _loop_frame(frame, i, item, len(items))
        failure = await _run_block(run, sub, key)
        _status, output, _ = _last_output(sub, key)
        if failure is not None:
            return {"status": "error", "error": failure.to_dict(), "_error": failure}
        return {"status": "success", "output": output}

    results = await _map_items(items, step.maxConcurrency, body)
    errors = [r.pop("_error") for r in results if "_error" in r]
    out = {
        "results": results,
        "successCount": sum(1 for r in results if r["status"] == "success"),
        "errorCount": len(errors),
        "totalCount": len(results),
    }
    if errors and not step.continueOnError:
        raise StepFailed(errors[0])
    return out, {"results": results}


async def _parallel(run: _Run, frame: _Frame, step: ParallelStep) -> tuple[Any, dict[str, Any]]:
    names = list(step.branches)
    need = len(names) if step.join == "all" else 1 if step.join == "any" else step.join.count
    timeout = parse_duration(step.timeout) if step.timeout is not None else None
    tasks = {
        name: asyncio.ensure_future(_block_waits(run, frame, (step.id, f"branches:{name}"), propagate=False))
        for name in names
    }
    finished: dict[str, StepError | None] = {}
    waiting: set[str] = set()
    pending = set(tasks.values())
    deadline = time.monotonic() + timeout if timeout else None
    while pending and sum(1 for n, e in finished.items() if e is None and n not in waiting) < need:
        wait_for = max(0.0, deadline - time.monotonic()) if deadline else None
        done, pending = await asyncio.wait(pending, timeout=wait_for, return_when=asyncio.FIRST_COMPLETED)
        if not done:
            break
        for name, task in tasks.items():
            if task in done and name not in finished:
                finished[name], waits = task.result()
                if waits and finished[name] is None:
                    waiting.add(name)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    branches: dict[str, Any] = {}
    for name in names:
        key = (step.id, f"branches:{name}")
        if name not in finished:
            branches[name] = {"status": "canceled"}
            continue
        if name in waiting:
            branches[name] = {"status": "waiting"}
            continue
        _state, output, _err = _last_output(frame, key)
        err = finished[name]
        branches[name] = (
            {"status": "success", "output": output} if err is None else {"status": "error", "error": err.to_dict()}
        )
    completed = sum(1 for b in branches.values() if b["status"] == "success")
    errors = [finished[n] for n in names if finished.get(n) is not None]
    if waiting and completed >= need:  # joined without them: their questions are withdrawn
        for name in waiting:
            _withdraw(run, frame, (step.id, f"branches:{name}"))
            branches[name] = {"status": "canceled"}
        waiting = set()
    elif waiting:
        _flag_wait()
    out = {
        "branches": branches,
        "completedCount": completed,
        "errorCount": len(errors),
        "joinStrategy": step.join if isinstance(step.join, str) else f"count({step.join.count})",
    }
    if completed < need and not step.continueOnError:
        if errors:
            raise StepFailed(errors[0])  # type: ignore[arg-type]
        if waiting:  # the step waits with its branch (its own wait flag is already set)
            return out, {"branches": branches, **_children_views(frame, step.id)}
        raise StepFailed(StepError("TIMEOUT", f"parallel step '{step.id}' timed out waiting for {need} branch(es)"))
    return out, {"branches": branches, **_children_views(frame, step.id)}


def _withdraw(run: _Run, frame: _Frame, key: BlockKey) -> None:
    """A waiting branch that is no longer needed: its steps are canceled, its requests closed."""
    graph = frame.plan.graph
    members = set(graph.order.get(key, ()))
    for sid in list(members):
        members.update(_descendants(graph, sid))
    for request in [r for r in run.pending if r.step_id.split("[", 1)[0].split("/")[-1] in members]:
        run.pending.remove(request)
        if run.store is not None:
            run.store.resolve_pending(request.id, None)
    reason = StepError("CANCELED", "the parallel step joined without this branch", {"reason": "joined"})
    for sid in members:
        res = frame.results.get(sid)
        if res is not None and res.status == "waiting":
            res.status, res.error = "canceled", reason
            frame.views[sid] = _view(res)


async def _block_waits(
    run: _Run, frame: _Frame, key: BlockKey, *, propagate: bool = True
) -> tuple[StepError | None, bool]:
    """Run a block; also say whether a step inside it is waiting (for an approval, an event...)."""
    flag = [False]
    token = _wait_flags.set((*_wait_flags.get(), flag))
    try:
        error = await _run_block(run, frame, key)
    finally:
        _wait_flags.reset(token)
    if flag[0] and propagate:
        _flag_wait()
    return error, flag[0]


async def _try(run: _Run, frame: _Frame, step: TryStep) -> tuple[Any, dict[str, Any]]:
    policy = step.retry
    attempts = 0
    error: StepError | None = None
    while True:
        attempts += 1
        error, waiting = await _block_waits(run, frame.child(extra={}), (step.id, "steps"))
        if waiting and error is None:  # catch and finally run when the body has really finished
            return None, _children_views(frame, step.id)
        if error is None or policy is None or attempts >= policy.maxAttempts or not _retryable(policy, error):
            break
        await asyncio.sleep(_delay(policy, attempts))
    _status, output, _ = _last_output(frame, (step.id, "steps"))
    scope_error = {**error.to_dict(), "attemptCount": attempts} if error else None
    if error is not None:
        handler = frame.child(extra={"error": scope_error})
        caught = await _run_block(run, handler, (step.id, "catch"))
    else:
        for sid in frame.plan.graph.order.get((step.id, "catch"), ()):
            _skip(run, frame, frame.models[sid], "no error to catch")
        caught = None
    final = await _run_block(run, frame.child(extra={"error": scope_error}), (step.id, "finally"))
    envelope: dict[str, Any] = {"status": "success" if error is None else "error", "attempts": attempts}
    if error is None:
        envelope["output"] = output
    else:
        envelope["error"] = scope_error
    failure = final or caught
    if failure is not None:
        raise StepFailed(failure)
    if error is not None and not frame.plan.graph.order.get((step.id, "catch")):
        raise StepFailed(error)  # nothing caught it
    # the workflow-logic example reads steps.<try>.output.<field>: output is the block's result,
    # and the spec's envelope {status, attempts, output|error} is steps.<try>.result
    return (output if error is None else None), {"result": envelope, **_children_views(frame, step.id)}


async def _wait(step: WaitStep, run: _Run) -> dict[str, Any]:
    if step.duration is not None:
        seconds = parse_duration(step.duration) or 0.0
        await asyncio.sleep(seconds)
        return {"waitType": "duration", "waitedFor": seconds, "timedOut": False}
    assert step.until is not None
    if step.until.event is not None and step.until.event in run.delivered:
        return {
            "waitType": "event",
            "waitedFor": 0,
            "eventReceived": run.delivered[step.until.event],
            "timedOut": False,
        }
    if step.until.event is not None:
        key = _current_key.get()
        answer = _answer(run, key, "event", {"event": step.until.event})
        if answer is not None and answer.resolved:
            return {"waitType": "event", "waitedFor": 0, "eventReceived": answer.value, "timedOut": False}
        raise _Waiting("event", {"event": step.until.event})
    assert step.until.time is not None
    target = datetime.fromisoformat(step.until.time.replace("Z", "+00:00"))
    if target.tzinfo is None:
        target = target.replace(tzinfo=UTC)
    remaining = (target - datetime.now(UTC)).total_seconds()
    if remaining <= 0:
        return {"waitType": "time", "waitedFor": 0, "timedOut": False}
    raise _Waiting("time", {"until": target.isoformat().replace("+00:00", "Z")})


def _transform(step: TransformStep, scope: dict[str, Any], frame: _Frame) -> Any:
    if step.language == "template":
        return render_string(step.expression, scope)
    data = render(step.input, scope) if step.input is not None else _previous_output(frame, step.id)
    if step.language == "jq":
        values = jq_program(step.expression).input_value(data).all()
    elif step.language == "jsonpath":
        values = [m.value for m in jsonpath(step.expression).find(data)]
    else:
        raise UnavailableError(f"transform language '{step.language}' has no sandbox here")
    return values[0] if len(values) == 1 else values


def _previous_output(frame: _Frame, sid: str) -> Any:
    node = frame.plan.graph.nodes[sid]
    members = frame.plan.graph.blocks.get(node.block_key, ())
    idx = members.index(sid)
    if idx == 0:
        return None
    view = frame.views.get(members[idx - 1])
    return view["output"] if view else None


async def _subworkflow(
    run: _Run, frame: _Frame, step: WorkflowStep, scope: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    from .registry import Workflow

    target: Loaded[Any] = frame.plan.targets[step.id]
    child_plan = Workflow(run.ow, target).plan(prefer_backend=frame.plan.prefer_backend)
    inputs = resolve_inputs(target.model, render(step.input, scope))
    sub = _Frame(
        child_plan,
        step_models(target.model),
        inputs,
        ChainMap({}),
        {},
        frame.iteration,
        {},
        {sid: frame.order.get(step.id, 0) + (i + 1) / 10_000 for i, sid in enumerate(child_plan.graph.topological())},
        f"{frame.prefix}{step.id}/",
    )
    failure = await _run_block(run, sub, ROOT)
    outputs = _render_outputs(target.model.outputs, sub.scope(run))
    if failure is not None:
        raise StepFailed(failure)
    return outputs, {"outputs": outputs}


async def _handoff(run: _Run, frame: _Frame, step: HandoffStep, scope: dict[str, Any], acc: _Accounting) -> Any:
    chosen = step.agent
    for sel in step.selectAgent or []:
        if sel.default or (sel.condition is not None and truthy(render(sel.condition, scope))):
            chosen = sel.agent
            break
    if chosen is None:
        raise StepFailed(StepError("VALIDATION", f"handoff '{step.id}' matched no agent and has no default"))
    loaded = run.ow.catalog.agent(parse_ref(chosen, expected_kind="agent"))
    if loaded is None:
        raise StepFailed(StepError("VALIDATION", f"agent '{chosen}' is not loaded"))
    context = render(step.context, scope)
    payload = render(step.input, scope) if step.input is not None else {"reason": step.reason, **context}
    if frame.plan[step.id].backend != "native":  # the chosen agent runs on the step's backend
        manifest = loaded.model.model_dump(mode="json", by_alias=True)
        hooks = {"turn_hooks": _turn_hooks(run, loaded.model, step)}
        response = await _foreign(run, frame, step, manifest, payload, hooks, acc)
    else:
        response = await run_agent(run, loaded.model, payload, step.id, acc)
    return {
        "handoffTo": loaded.ref,
        "reason": step.reason,
        "agentResponse": response,
        "conversationId": f"conv_{run.run_id}_{step.id}",
    }


async def _foreign(
    run: _Run,
    frame: _Frame,
    step: StepBase,
    manifest: dict[str, Any],
    data: Any,
    metadata: dict[str, Any],
    acc: _Accounting | None = None,
) -> Any:
    """A step whose plan names another backend: hand it the manifest through the contract.

    Besides the contract's fields, ``context.metadata`` carries what lets an adapter run tools
    the way native does: ``registry`` (the `OpenWorkflow`), ``call_action(connector, action,
    data)`` (a connector action with this run's secrets, environment and thread pool),
    ``memory`` (the run's agent buffer memory), ``raw_input`` (the input before it was wrapped in
    a dict), for actions ``native()`` (the native handler), and for agents ``turn_hooks`` (budgets
    and rate limits, see `_turn_hooks`). A result's ``usage`` list (one dict per model turn:
    provider, model, prompt_tokens, completion_tokens, estimated, cost_usd) is recorded in the
    trace, the usage table and the step's event exactly like native usage.
    """
    entry = frame.plan[step.id]
    backend = run.ow.backend(entry.backend)
    ctx = ExecutionContext(
        run_id=run.run_id,
        workflow_id=frame.plan.workflow,
        node_id=step.id,
        secrets=dict(run.secrets),
        environment=dict(run.env),
        trace_id=run.run_id,
        deadline=run.deadline,
        metadata={
            "step_type": step.type,  # type: ignore[attr-defined]
            "runtime": entry.runtime,
            "registry": run.ow,
            "memory": run.memory,
            "raw_input": data,
            "call_action": functools.partial(_call_action, run, step.id),
            **metadata,
        },
    )
    try:
        result = await backend.ainvoke(manifest, data if isinstance(data, dict) else {"input": data}, ctx)
    except OWFError as exc:  # an adapter may attach the usage of a failed agent run as exc.usage
        _foreign_usage(run, step, acc, getattr(exc, "usage", None))
        raise
    except Exception as exc:
        raise BackendError(
            f"backend '{entry.backend}' failed: {type(exc).__name__}: {exc}",
            details={"backend": entry.backend, "original_error": repr(exc)},
        ) from exc
    if isinstance(result, dict) and result.get("status") == "error":
        raise BackendError(str(result.get("message", "backend error")), details={"backend": entry.backend, **result})
    if isinstance(result, dict):
        _foreign_usage(run, step, acc, result.get("usage"))
    return result.get("output", result) if isinstance(result, dict) else result


def _foreign_usage(run: _Run, step: StepBase, acc: _Accounting | None, turns: Any) -> None:
    """Record a backend's per-turn usage like native usage (trace, usage table, event)."""
    if acc is None or not turns:
        return
    for turn, u in enumerate(turns):
        usage = Usage(int(u["prompt_tokens"]), int(u["completion_tokens"]), bool(u.get("estimated", False)))
        cost = float(u.get("cost_usd") or 0.0)
        acc.turns.append(usage)
        acc.cost = round(acc.cost + cost, 8)
        row = {
            "run_id": run.run_id,
            "step_id": step.id,
            "iteration": "",
            "provider": u.get("provider"),
            "model": u.get("model"),
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "estimated": usage.estimated,
            "cost_usd": cost,
        }
        acc.rows.append(((turn,), row))


def _turn_hooks(run: _Run, agent: Agent, step: StepBase) -> tuple[Any, Any] | None:
    """The step's, the agent's and the run's budgets and rate limits, for an adapter to apply around
    each model turn as native does: ``await before(messages)`` (dicts with ``content``, the system
    prompt first) and ``after(usage)``. None when there are none."""
    budgets, keys = _agent_limits(run, agent, step)
    if not budgets and not keys:
        return None

    async def before(messages: list[dict[str, Any]]) -> None:
        await _before_turn(run, agent, messages, budgets, keys, step.id)

    def after(usage: Usage) -> None:
        if budgets:
            from .limits import combined_record

            cost = run.ow.prices.cost(agent.model, usage)
            combined_record(budgets, usage.total_tokens, 0.0 if math.isnan(cost) else cost)

    return before, after


async def _call_action(run: _Run, step_id: str, connector: Connector, action: str, data: Any) -> Any:
    return await run_action(run, connector, action, data, step_id)


async def _foreign_step(run: _Run, frame: _Frame, step: StepBase, acc: _Accounting) -> tuple[Any, Any]:
    """A logic step whose plan names another backend: the backend wraps its native execution
    (``Backend.arun_step``; a backend without one leaves it to native)."""
    entry = frame.plan[step.id]
    backend = run.ow.backend(entry.backend)
    wrap = getattr(backend, "arun_step", None)
    native = functools.partial(_execute, run, frame, step, acc, handed=True)
    if wrap is None:
        return await native()
    kind: str = step.type  # type: ignore[attr-defined]
    ctx = ExecutionContext(
        run.run_id,
        frame.plan.workflow,
        step.id,
        trace_id=run.run_id,
        deadline=run.deadline,
        metadata={"step_type": kind, "runtime": entry.runtime},
    )
    result: tuple[Any, Any] = await wrap(native, ctx)
    return result


# ------------------------------------------------------------------------------------------------
# actions


def _apply_defaults(schema: Mapping[str, Any] | None, data: Any) -> Any:
    if not schema or not isinstance(data, dict):
        return data
    out = dict(data)
    for name, prop in (schema.get("properties") or {}).items():
        if name not in out and isinstance(prop, dict) and "default" in prop:
            out[name] = prop["default"]
    return out


_validators: dict[int, tuple[Any, Any]] = {}


def _validator(schema: Mapping[str, Any]) -> Any:
    """The jsonschema validator of one action's input schema, built once per schema object."""
    hit = _validators.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    from jsonschema import validators

    if len(_validators) > 4096:
        _validators.clear()
    validator = validators.validator_for(schema)(schema)
    _validators[id(schema)] = (schema, validator)
    return validator


def validate_action_input(action: Action, data: Any) -> Any:
    """Defaults filled, then the action's JSON Schema enforced (code VALIDATION)."""
    data = _apply_defaults(action.input, data)
    if action.input:
        errors = sorted(_validator(action.input).iter_errors(data), key=lambda e: list(e.path))
        if errors:
            first = errors[0]
            where = ".".join(map(str, first.path)) or "input"
            raise OWFError(
                f"input validation failed for action '{action.name}': {where}: {first.message}",
                code="VALIDATION",
                details={"field": where, "constraint": first.validator, "errors": len(errors)},
            )
    return data


async def run_action(run: _Run, connector: Connector, name: str, data: Any, step_id: str) -> Any:
    """Execute one connector action with the native backend."""
    action = connector.action(name)
    if action is None:
        raise OWFError(f"connector '{connector.name}' has no action '{name}'", code="VALIDATION")
    data = validate_action_input(action, data)
    policy = action.approval or connector.approval
    if (
        policy is not None
        and policy.required != "never"
        and not (policy.required == "first_use" and connector.name in run.approved)
    ):
        _approval(run, connector.name, name, data, policy)
    handler = action.handler
    if handler is None:
        raise UnavailableError(f"action '{connector.name}.{name}' declares no handler", details={"action": name})
    if handler.function:
        return await _call_function(run, handler.function, data, step_id)
    if handler.http:
        return await _call_http(run, handler.http, data)
    if handler.command:
        return await _call_command(run, handler, data)
    raise UnavailableError(
        f"the {handler.kind} handler of '{connector.name}.{name}' is not supported yet",
        details={"handler": handler.kind},
    )


def _approval(run: _Run, connector: str, action: str, data: Any, policy: Any) -> None:
    """Connector ``approval.required``: wait for an answer, go on when approved, fail when not."""
    key = _current_key.get()
    shown = redact(data, run.secrets) if run.secrets else data  # requests are stored scrubbed
    answer = _answer(run, key, "approval", {"connector": connector, "action": action, "input": shown})
    if answer is None or not answer.resolved:
        raise _Waiting(
            "approval",
            {
                "connector": connector,
                "action": action,
                "input": data,
                "required": policy.required,
                "timeout": policy.timeout,
                "onTimeout": policy.onTimeout,
            },
        )
    if answer.value is not True:
        raise StepFailed(
            StepError(
                "CANCELED",
                f"the call to {connector}.{action} was rejected",
                {"reason": "rejected", "request_id": answer.id},
            )
        )
    run.approved.add(connector)


async def _call_function(run: _Run, target: str, data: Any, step_id: str) -> Any:
    call = run.functions.get(target)
    if call is None:
        from .backends.native import prepare_function

        call = run.functions[target] = prepare_function(target)
    ctx = (
        ExecutionContext(run_id=run.run_id, node_id=step_id, secrets=dict(run.secrets), deadline=run.deadline)
        if call.wants_context
        else None
    )
    if call.is_async:
        return await call(data, ctx)
    if call.inline:
        out = call(data, ctx)
    else:
        out = await asyncio.get_running_loop().run_in_executor(run.pool, call, data, ctx)
    if call.maybe_async and inspect.isawaitable(out):  # an object whose __call__ is async
        return await out
    return out


def _placeholders(value: Any, data: Mapping[str, Any], run: _Run) -> Any:
    """``${input.x}``, ``${env.X}``, ``${secrets.X}`` and ``${NAME}`` in handler configs (trusted)."""
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            head, _, rest = name.partition(".")
            if head == "input" and rest:
                return str(data.get(rest, ""))
            if head == "env" and rest:
                return str(run.env.get(rest, ""))
            if head == "secrets" and rest:
                return run.secrets.get(rest, "")
            return run.secrets.get(name, str(run.env.get(name, "")))

        return _PLACEHOLDER.sub(sub, value)
    if isinstance(value, dict):
        return {k: _placeholders(v, data, run) for k, v in value.items()}
    if isinstance(value, list):
        return [_placeholders(v, data, run) for v in value]
    return value


def check_url(url: str, validation: Any) -> None:
    """Enforce ``urlValidation`` (requireHTTPS, allowed and blocked domains) before any request."""
    parsed = urlparse(url)
    host = parsed.hostname or ""
    if parsed.scheme not in ("http", "https"):
        raise OWFError(f"URL scheme '{parsed.scheme}' is not allowed", code="VALIDATION", details={"url": url})
    if validation is None:
        return
    if validation.requireHTTPS and parsed.scheme != "https":
        raise OWFError("the connector requires HTTPS", code="VALIDATION", details={"host": host})
    if any(fnmatch.fnmatch(host, pat) for pat in validation.blockedDomains):
        raise OWFError(f"host '{host}' is blocked", code="VALIDATION", details={"host": host})
    if validation.allowedDomains and not any(fnmatch.fnmatch(host, pat) for pat in validation.allowedDomains):
        raise OWFError(f"host '{host}' is not in the allowed domains", code="VALIDATION", details={"host": host})


async def _call_http(run: _Run, http: Any, data: Any) -> Any:
    import httpx

    mapping = data if isinstance(data, dict) else {}
    url = _placeholders(http.url, mapping, run)
    check_url(url, http.urlValidation)
    headers = _placeholders(dict(http.headers), mapping, run)
    body = _placeholders(http.body, mapping, run) if http.body is not None else data
    policy = http.retry
    attempts = policy.maxAttempts if policy else 1
    last: Exception | None = None
    async with httpx.AsyncClient(timeout=http.timeout or 30.0) as client:
        for attempt in range(1, attempts + 1):
            try:
                if http.method in ("GET", "DELETE", "HEAD"):
                    params = {**http.query, **({k: v for k, v in mapping.items() if not isinstance(v, dict | list)})}
                    resp = await client.request(http.method, url, headers=headers, params=params)
                else:
                    resp = await client.request(http.method, url, headers=headers, params=http.query or None, json=body)
                if resp.status_code >= 500 and attempt < attempts:
                    last = BackendError(f"HTTP {resp.status_code}")
                    await asyncio.sleep(_delay(policy, attempt) if policy else 0)
                    continue
                return _http_result(resp)
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                last = exc
                if attempt < attempts:
                    await asyncio.sleep(_delay(policy, attempt) if policy else 0)
                    continue
                if isinstance(exc, httpx.TimeoutException):
                    raise StepTimeoutError(f"HTTP request timed out: {url}", details={"url": url}) from exc
                raise BackendError(f"HTTP request failed: {exc}", details={"url": url}) from exc
    raise BackendError(f"HTTP request failed: {last}", details={"url": url})


def _http_result(resp: Any) -> Any:
    try:
        payload = resp.json()
    except ValueError:
        payload = resp.text
    if resp.status_code >= 400:
        message = payload.get("message") if isinstance(payload, dict) else str(payload)[:200]
        raise BackendError(f"HTTP {resp.status_code}: {message}", details={"status_code": resp.status_code})
    if isinstance(payload, dict) and payload.get("status") == "error":
        raise BackendError(
            str(payload.get("message", "the service reported an error")),
            details={"code": payload.get("code"), "status_code": resp.status_code},
        )
    if isinstance(payload, dict) and payload.get("status") == "success" and "data" in payload:
        return payload["data"]
    return payload


async def _call_command(run: _Run, handler: Any, data: Any) -> Any:
    mapping = data if isinstance(data, dict) else {}
    argv = [_placeholders(handler.command, mapping, run), *(_placeholders(a, mapping, run) for a in handler.args)]
    env = {**os.environ, **_placeholders(dict(handler.env), mapping, run)}
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=handler.workingDir,
        env=env,
    )
    try:
        out, err = await proc.communicate(json.dumps(data).encode())
    except asyncio.CancelledError:
        proc.kill()
        raise
    if proc.returncode != 0:
        raise BackendError(
            f"command exited with {proc.returncode}: {err.decode(errors='replace').strip()[:500]}",
            details={"exit_code": proc.returncode},
        )
    text = out.decode(errors="replace").strip()
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError as exc:
        raise BackendError(f"command did not print JSON: {text[:200]!r}") from exc


# ------------------------------------------------------------------------------------------------
# agents (the native tool-calling loop)


@dataclass
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    connector: Connector
    action: str


def agent_tools(ow: OpenWorkflow, agent: Agent) -> dict[str, Tool]:
    """Toolset connectors as tools named ``<toolPrefix or connector name>_<action>``."""
    tools: dict[str, Tool] = {}
    for entry in agent.toolset:
        ref_text = entry if isinstance(entry, str) else entry.connector
        loaded = ow.catalog.connector(parse_ref(ref_text, expected_kind="connector", allow_action=True))
        if loaded is None:
            continue
        conn: Connector = loaded.model
        prefix = None
        if isinstance(entry, ToolsetEntry) and entry.toolPrefix:
            prefix = entry.toolPrefix
        elif conn.capabilities and "langchain" in conn.capabilities.frameworks:
            prefix = conn.capabilities.frameworks["langchain"].toolPrefix
        base = (prefix or conn.name).rstrip("_").replace("-", "_")
        for action in conn.actions:
            if isinstance(entry, ToolsetEntry):
                if entry.actions is not None and action.name not in entry.actions:
                    continue
                if entry.deny and action.name in entry.deny:
                    continue
            name = f"{base}_{action.name}"
            tools[name] = Tool(name, action.description or "", action.input or {"type": "object"}, conn, action.name)
    return tools


def _system_prompt(agent: Agent) -> str:
    p = agent.personality
    if p is None:
        return ""
    parts = [p.systemPrompt or ""]
    if p.constraints:
        parts.append("Constraints: " + "; ".join(p.constraints))
    return "\n".join(x for x in parts if x)


async def run_agent(
    run: _Run, agent: Agent, data: Any, step_id: str, acc: _Accounting, step: StepBase | None = None
) -> Any:
    """The native agent loop: model turns, tool calls through connectors, guardrails, usage.

    Before each model turn the agent's rate limits are awaited and the step's, the agent's and
    the run's budgets checked against the turn's projected tokens and cost (a turn that would
    cross one fails the step with code CANCELED, ``details.reason == "budget"``).
    """
    model = make_model(agent.model)
    budgets, limit_keys = _agent_limits(run, agent, step)
    tools = agent_tools(run.ow, agent)
    config = agent.execution.config if agent.execution else {}
    max_iter = int(config.get("maxIterations", config.get("max_iterations")) or 10)
    behavior = agent.guardrails.behavior if agent.guardrails else None
    max_calls = behavior.maxToolCalls if behavior and behavior.maxToolCalls is not None else None
    confirm = set(behavior.requireConfirmation) if behavior else set()
    content = data if isinstance(data, str) else json.dumps(data, default=str, sort_keys=True)
    messages: list[dict[str, Any]] = []
    system = _system_prompt(agent)
    if system:
        messages.append({"role": "system", "content": system})
    memory = agent.memory if agent.memory and agent.memory.type == "buffer" else None
    memory_key = f"{agent.namespace or 'local'}/{agent.name}"
    if memory is not None:  # earlier exchanges with this agent in this run, oldest first
        history = run.memory.get(memory_key, [])
        keep = memory.maxMessages if memory.maxMessages is not None else len(history)
        messages.extend(history[-keep:] if keep else [])
    messages.append({"role": "user", "content": content, "raw": data})
    specs = [{"name": t.name, "description": t.description, "parameters": t.parameters} for t in tools.values()]
    calls_made = 0
    for turn in range(max_iter):
        if budgets or limit_keys:
            await _before_turn(run, agent, messages, budgets, limit_keys, step_id)
        reply = await model.respond(messages, specs, turn)
        if reply.usage is not None:
            acc.turns.append(reply.usage)
            cost = run.ow.prices.cost(agent.model, reply.usage)
            acc.cost = round(acc.cost + cost, 8)
            if budgets:
                from .limits import combined_record

                combined_record(budgets, reply.usage.total_tokens, 0.0 if math.isnan(cost) else cost)
            acc.rows.append(
                (
                    (turn,),
                    {
                        "run_id": run.run_id,
                        "step_id": step_id,
                        "iteration": "",
                        "provider": agent.model.provider,
                        "model": model.name,
                        "prompt_tokens": reply.usage.prompt_tokens,
                        "completion_tokens": reply.usage.completion_tokens,
                        "total_tokens": reply.usage.total_tokens,
                        "estimated": reply.usage.estimated,
                        "cost_usd": cost,
                    },
                )
            )
        if not reply.tool_calls:
            answer = _check_output(agent, reply.content)
            if memory is not None:
                _remember(run, agent, data, answer)
            return answer
        messages.append({"role": "assistant", "content": None, "tool_calls": reply.tool_calls})
        for call in reply.tool_calls:
            calls_made += 1
            if max_calls is not None and calls_made > max_calls:
                raise StepFailed(
                    StepError("VALIDATION", f"agent exceeded maxToolCalls ({max_calls})", {"maxToolCalls": max_calls})
                )
            tool = tools.get(call["name"])
            if tool is None:
                result: Any = {"error": f"unknown tool '{call['name']}'", "tools": sorted(tools)}
            elif call["name"] in confirm and not _confirmed(run, agent, call):
                result = {"error": "the user rejected this tool call", "tool": call["name"]}
            else:
                try:
                    result = await run_action(run, tool.connector, tool.action, call.get("args") or {}, step_id)
                except OWFError as exc:
                    result = {"error": exc.message, "code": exc.code}
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": call.get("id"),
                    "name": call["name"],
                    "content": json.dumps(result, default=str),
                }
            )
    raise StepFailed(
        StepError("BACKEND_ERROR", f"agent did not finish within {max_iter} iterations", {"maxIterations": max_iter})
    )


def _remember(run: _Run, agent: Agent, data: Any, answer: Any) -> None:
    """Buffer memory: one exchange with the agent, kept for its later steps in the run."""
    content = data if isinstance(data, str) else json.dumps(data, default=str, sort_keys=True)
    text = answer if isinstance(answer, str) else json.dumps(answer, default=str)
    run.memory.setdefault(f"{agent.namespace or 'local'}/{agent.name}", []).extend(
        [{"role": "user", "content": content}, {"role": "assistant", "content": text}]
    )


def _agent_limits(run: _Run, agent: Agent, step: StepBase | None) -> tuple[list[Any], list[str]]:
    """The budgets an agent step spends from, and the rate-limit keys it waits on."""
    budgets: list[Any] = []
    keys: list[str] = []
    guard = getattr(step, "guardrails", None) if step is not None else None
    if agent.policies is not None or guard is not None or run.budget is not None:
        from .limits import agent_budget, agent_key, limit_spec, step_budget

        if step is not None:
            budgets.append(step_budget(step))
        budgets.append(agent_budget(agent.policies, agent=agent.name))
        budgets.append(run.budget)
        budgets = [b for b in budgets if b is not None]
        spec = limit_spec(agent.policies.rateLimit) if agent.policies is not None else None
        if spec is not None:
            key = agent_key(f"{agent.namespace or 'local'}/{agent.name}")
            limiter = run.ow.rate_limiter
            if limiter.limits(key) is None:
                limiter.configure(key, spec)
            keys.append(key)
    return budgets, keys


async def _before_turn(
    run: _Run, agent: Agent, messages: list[dict[str, Any]], budgets: list[Any], keys: list[str], step_id: str
) -> None:
    from .limits import combined_check
    from .providers import estimate_tokens, messages_text

    prompt = estimate_tokens(messages_text(messages))
    completion = agent.model.maxTokens or 0
    if keys:
        await run.ow.rate_limiter.acquire_all(keys, requests=1, tokens=prompt + completion, messages=1)
    if budgets:
        rates = run.ow.prices.rates(agent.model)
        cost = (prompt * rates[0] + completion * rates[1]) / 1_000_000 if rates else 0.0
        combined_check(budgets, prompt + completion, cost, step_id=step_id)


def _confirmed(run: _Run, agent: Agent, call: Mapping[str, Any]) -> bool:
    """``guardrails.behavior.requireConfirmation``: wait for a person to confirm this tool call."""
    match = {"agent": agent.name, "tool": call["name"], "args": call.get("args") or {}}
    answer = _answer(run, _current_key.get(), "approval", match)
    if answer is None or not answer.resolved:
        raise _Waiting("approval", match)
    return answer.value is True


def _check_output(agent: Agent, content: Any) -> Any:
    out = agent.guardrails.output if agent.guardrails else None
    if out is None:
        return content
    if out.format == "json" and isinstance(content, str):
        try:
            content = json.loads(content)
        except json.JSONDecodeError as exc:
            raise StepFailed(StepError("VALIDATION", f"agent output is not JSON: {exc.msg}")) from exc
    if out.maxLength is not None and isinstance(content, str) and len(content) > out.maxLength:
        raise StepFailed(
            StepError(
                "VALIDATION",
                f"agent output has {len(content)} characters, over maxLength {out.maxLength}",
                {"maxLength": out.maxLength},
            )
        )
    return content


def new_uuid() -> str:
    return uuid.uuid4().hex
