"""Runs one frozen plan: the run's record, its deadline, its result, and the loop it runs on.

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
import gc
import importlib
import itertools
import logging
import os
import signal
import threading
import time
import traceback
from collections import ChainMap
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from owf_magics.engine import kinds as _kinds  # noqa: F401  (fills STEP_KINDS)
from owf_magics.engine.checkpoints import finish
from owf_magics.engine.frame import Frame, render_outputs, resolve_inputs
from owf_magics.engine.scheduler import run_block
from owf_magics.engine.trace import Bookkeeping, emit_later, store_events
from owf_magics.errors import OWFError
from owf_magics.manifest.budget import LIMITS
from owf_magics.manifest.budget import deadline as template_deadline
from owf_magics.manifest.catalog import Loaded
from owf_magics.manifest.normalize import parse_duration
from owf_magics.manifest.render import redact
from owf_magics.manifest.secrets import is_secret_name
from owf_magics.plan.fragments import graph_signature
from owf_magics.plan.graph import ROOT
from owf_magics.plan.resolution import Plan, step_models
from owf_magics.runtime.context import (
    Host,
    RunContext,
    new_run_id,
    now,
    redact_error,
    stamp,
)
from owf_magics.runtime.records import UnstorableValue, check_storable, storable_events, storable_records
from owf_magics.runtime.results import RunResult, StepError, StepResult
from owf_magics.runtime.scratch import cleanup as cleanup_scratch

#: ``gc.freeze()`` once per process, at the first run (``OWF_GC_FREEZE=0`` turns it off): the
#: imported libraries, the catalog and the plan are long-lived, and a full collection that walked
#: them cost a 10,000-item forEach 40% of its time. Frozen objects are still freed by reference
#: counting; only cyclic garbage made before that moment is kept, so it happens once, not per plan
#: (a service that plans a manifest per request would otherwise keep a little more each time).
FREEZE = [os.environ.get("OWF_GC_FREEZE", "1") != "0"]
DEFAULT_MAX_WORKERS = 64  # sync handlers mostly wait on I/O: see docs/decisions.md

log = logging.getLogger("owf_magics.run")


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
        ow: Host,
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
                        "graph": graph_signature(self.plan.graph),
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
        """Run the plan; once the run has a record, it ends in a terminal state whatever happens
        (failed with INTERNAL_ERROR at worst), in the result and in the store."""
        self._live: tuple[RunContext, Frame | None] | None = None
        try:
            return await self._arun()
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            # a handler's sys.exit() is that step's business, not the process's: the run fails
            if self._live is None:  # nothing started: bad inputs, a missing backend
                if isinstance(exc, OWFError) and self.secrets:  # an input echoed in the message
                    exc.message, exc.details = redact(exc.message, self.secrets), redact(exc.details, self.secrets)
                    exc.args = (exc.message,)
                raise
            result = self._crashed(exc, *self._live)
            if isinstance(exc, KeyboardInterrupt):  # the user wants out: recorded, then let through
                raise
            return result
        finally:  # the run's scratch directory goes whatever the outcome (a resume makes a new one)
            if self._live is not None:
                cleanup_scratch(self._live[0])

    def _crashed(self, exc: BaseException, run: RunContext, frame: Frame | None) -> RunResult:
        """The result (and stored record) of a run stopped by an unexpected exception."""
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, OWFError):
            error = StepError(exc.code, exc.message, {**exc.details, "exception": type(exc).__name__})
        elif isinstance(exc, KeyboardInterrupt):
            error = StepError("CANCELED", "the run was interrupted", {"exception": "KeyboardInterrupt"})
        else:
            error = StepError(
                "INTERNAL_ERROR", f"the run stopped on an unexpected error: {text}", {"exception": type(exc).__name__}
            )
        error = redact_error(error, self.secrets)
        log.debug("%s", redact("".join(traceback.format_exception(exc)), self.secrets))
        results = frame.results if frame is not None else {}
        if frame is not None:
            _mark_unfinished(frame)
        status = "canceled" if error.code == "CANCELED" else "failed"
        result = _finish(run, self.item.model.name, status, {}, results, error)
        with contextlib.suppress(Exception):
            run.emit(
                (10**9,),
                {
                    "type": f"run.{status}",
                    "timestamp": now(),
                    "payload": {"status": status, "run_id": self.run_id},
                    "metadata": {"error": error.to_dict()},
                },
            )
        if run.log is not None:
            result.defer(Bookkeeping(run.log, run.run_id, run.secrets, run.event_seq))
        else:
            result.events = [e for _, e in sorted(run.events, key=_first)]
        if self.store is not None:
            _store_failure(self.store, self.run_id, run, status, error)
        return result

    async def _arun(self) -> RunResult:
        memo = self.plan.memo
        if "available" not in memo:
            self.plan.check_available()
            memo["available"] = True
        wf = self.item.model
        inputs = resolve_inputs(wf, self.inputs, files_root=getattr(self.ow, "files_root", None), item=self.item)
        pool = self.ow.thread_pool()
        env = self.ow.environment if self.ow.environment is not None else os.environ
        for name in {*self.plan.memo.get("env_names", ()), *getattr(self.ow, "env", ())}:
            if is_secret_name(name) and name in env:  # a credential-like variable: redacted like a secret
                self.secrets.setdefault(f"env:{name}", str(env[name]))
        missing = [v.name for v in (wf.runtime.environment if wf.runtime else ()) if v.required and v.name not in env]
        if missing:
            raise OWFError(
                f"workflow '{wf.name}' needs the environment variable(s) {', '.join(missing)}, which are not set",
                code="VALIDATION",
                details={"missing_environment": missing},
            )
        run = RunContext(self.ow, self.run_id, self.secrets, env, pool, self.callback, self.delivered)
        started = time.perf_counter()
        store = run.store = self.store
        if self.callback is None:  # nobody reads events before the result (a store reads the log)
            run.log = []
        run.trigger = self.trigger
        if wf.policies is not None:
            from owf_magics.agents.limits import run_budget

            run.budget = run_budget(wf)
        resume = self.resume
        if resume is not None:
            run.recorded, run.replay, run.answers = resume.recorded, resume.replay, resume.answers
            run.event_seq = itertools.count(resume.first_event)
            run.next_event = resume.first_event
        if store is not None and (resume is None or not resume.continuing):
            self._create_record(store, wf, inputs, resume)
            run.run_id = self.run_id
        self._live = (run, None)  # from here on the run ends in a terminal state
        emit_later(
            run,
            (-1,),
            _run_started,
            "run.resumed" if resume is not None and resume.continuing else "run.started",
            time.time(),
            wf.name,
            self.run_id,
            wf.version,
        )
        if "models" not in memo:  # once per plan: step models by id, and each step's rank in graph order
            memo["models"] = step_models(wf)
            memo["order"] = {sid: float(i) for i, sid in enumerate(self.plan.graph.topological())}
            if FREEZE[0]:  # what is loaded and planned lives long: full collections stop walking it
                FREEZE[0] = False
                gc.freeze()
        frame = Frame(self.plan, memo["models"], inputs, ChainMap({}), {}, order=memo["order"])
        self._live = (run, frame)
        limit = parse_duration(wf.timeout) if wf.timeout is not None else None
        if limit is not None:
            run.deadline = datetime.now(UTC) + timedelta(seconds=limit)
        # templates run under the registry's budget, and never past the workflow's deadline
        limits_token = LIMITS.set(getattr(self.ow, "template_limits", None) or LIMITS.get())
        try:
            if limit is None:
                outcome = await run_block(run, frame, ROOT)
            else:  # the workflow's timeout is the run's deadline: steps in flight are canceled
                async with asyncio.timeout(limit):
                    with template_deadline(limit, f"workflow '{wf.name}' timeout ({limit:g}s)"):
                        outcome = await run_block(run, frame, ROOT)
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
            outcome = StepError("CANCELED", "the run was canceled", {"canceled_at": now()})
            status = "canceled"
            _mark_unfinished(frame)
        failures: dict[str, Exception] = {}
        outputs = render_outputs(wf.outputs, frame.scope(run), failures=failures)
        LIMITS.reset(limits_token)
        problem = _output_problem(outputs, failures, check=store is not None)
        if problem is not None and status == "completed":  # its steps succeeded, but not its outputs
            status, outcome = "failed", problem
        result = _finish(run, wf.name, status, redact(outputs, self.secrets), frame.results, outcome)
        result.steps = _plan_ordered(result.steps, frame.plan.order)  # res.steps reads as the graph does
        result.duration_ms = round((time.perf_counter() - started) * 1000, 3)
        result.last_agent = run.last_agent
        emit_later(
            run,
            (10**9,),
            _run_ended,
            status,
            time.time(),
            self.run_id,
            run.last_agent,
            result.duration_ms,
            [p.id for p in run.pending] if run.pending else [],
            result.outputs,
        )
        if run.log is not None:
            result.defer(Bookkeeping(run.log, run.run_id, run.secrets, run.event_seq))
        else:
            result.events = [e for _, e in sorted(run.events, key=_first)]
        result.pending = list(run.pending)
        if store is not None:  # what is not committed yet and the run's end, in one transaction
            finish(run, status, result.outputs, result.error.to_dict() if result.error else None)
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
        if _step_now(loop) and task.done() and not _ready(loop):
            return task.result()  # it never waited: no turn of the loop needed
        return loop.run_until_complete(task)
    finally:
        if ours:
            _sig.signal(signal.SIGINT, signal.default_int_handler)


def _ready(loop: asyncio.AbstractEventLoop) -> Any:
    return getattr(loop, "_ready", None)  # the callbacks an asyncio loop runs next


def _step_now(loop: asyncio.AbstractEventLoop) -> bool:
    """Run a just-created task's first step now, as Python 3.12's eager tasks do.

    A run whose steps never wait (transforms, ``@inline`` handlers) finishes in that step, and
    the loop's turns (a selector poll each, ~15 µs a run) are saved; a run that waits continues
    on the loop from where it stopped. The step runs through the task itself (its context, the
    current task, its exceptions), with this loop as the running loop. Only on an idle asyncio
    loop whose one callback is that step; otherwise (another loop implementation) False.
    """
    ready = _ready(loop)
    if ready is None or len(ready) != 1:
        return False
    handle = ready.popleft()
    running = asyncio.events._get_running_loop()
    asyncio.events._set_running_loop(loop)
    try:
        handle._run()
    finally:
        asyncio.events._set_running_loop(running)
    return True


def _mark_unfinished(frame: Frame) -> None:
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


def _first(kv: tuple[Any, Any]) -> Any:
    return kv[0]


_FINAL = {"completed": "run.completed", "canceled": "run.canceled", "waiting_approval": "run.waiting"}


def _run_started(kind: str, at: float, name: str, run_id: str, version: str) -> dict[str, Any]:
    """The ``run.started`` (or ``run.resumed``) event."""
    return {
        "type": kind,
        "timestamp": stamp(at),
        "payload": {"workflow": name, "run_id": run_id},
        "metadata": {"workflow_version": version},
    }


def _run_ended(
    status: str,
    at: float,
    run_id: str,
    last_agent: str | None,
    duration_ms: float,
    pending: list[str],
    outputs: dict[str, Any],
) -> dict[str, Any]:
    """The run's last event: ``run.completed``, ``run.failed``, ``run.canceled`` or ``run.waiting``."""
    return {
        "type": _FINAL.get(status, "run.failed"),
        "timestamp": stamp(at),
        "payload": {"status": status, "run_id": run_id, "outputs": outputs}
        | ({"last_agent": last_agent} if last_agent else {}),
        "metadata": {"duration_ms": duration_ms, "pending": pending},
    }


def _plan_ordered(steps: dict[str, StepResult], order: Any) -> dict[str, StepResult]:
    """The step results in plan order (they finished in whatever order they ran)."""
    out = {sid: steps[sid] for sid in order if sid in steps}
    if len(out) < len(steps):
        out.update((sid, res) for sid, res in steps.items() if sid not in out)
    return out


def _finish(
    run: RunContext,
    name: str,
    status: str,
    outputs: dict[str, Any],
    results: dict[str, StepResult],
    error: StepError | None,
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


def _output_problem(outputs: dict[str, Any], failures: Mapping[str, Exception], *, check: bool) -> StepError | None:
    """The first output whose template failed or (`check`: with a store) whose value the store
    cannot write; those values become None. None when every output is fine."""
    problem: StepError | None = None
    for name, exc in failures.items():
        message = exc.message if isinstance(exc, OWFError) else str(exc)
        details = dict(exc.details) if isinstance(exc, OWFError) else {}
        problem = problem or StepError("VALIDATION", f"output '{name}' failed: {message}", {**details, "output": name})
    for name, value in outputs.items() if check else ():
        try:
            check_storable(value)
        except UnstorableValue as exc:
            outputs[name] = None
            problem = problem or StepError(exc.code, f"output '{name}': {exc.message}", {**exc.details, "output": name})
    return problem


def _store_failure(store: Any, run_id: str, run: RunContext, status: str, error: StepError) -> None:
    """Finish a crashed run's record as failed, with the steps and events not written yet where
    they can be; what cannot be written is dropped, never raised."""
    records, run.uncommitted = run.uncommitted, []
    events = store_events(run, pairs=False)
    attempts = [
        (error.to_dict(), storable_records(records), storable_events(events)),
        ({"code": error.code, "message": "the run stopped on an unexpected error"}, [], []),
    ]
    for err, steps, saved in attempts:
        try:
            store.finish_run(run_id, status, outputs=None, error=err, steps=steps, events=saved, close_pending=True)
            return
        except Exception:
            log.exception("could not record the failure of run %s", run_id)
