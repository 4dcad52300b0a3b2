"""Trace rows and step lifecycle events, ordered by graph rank, iteration and attempt.

With a callback or a store attached (someone reads events while the run goes on) rows and events
are built as they happen. Otherwise (`RunContext.log` is a list) a step appends one compact tuple
per record, and `Bookkeeping` builds the same rows and events, with the same ids in the same
order, when `RunResult.trace_rows` or `RunResult.events` is first read.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from owf_magics.agents.providers import Usage
from owf_magics.engine.frame import Frame
from owf_magics.manifest.models import (
    StepBase,
)
from owf_magics.manifest.render import redact
from owf_magics.runtime.context import (
    RunContext,
    stamp,
)
from owf_magics.runtime.results import StepResult

_EVENT, _STARTED, _DONE, _RAN, _PLACED, _LATER = 0, 1, 2, 3, 4, 5


def emit_later(run: RunContext, key: tuple[Any, ...], build: Callable[..., dict[str, Any]], *args: Any) -> None:
    """The event ``build(*args)``, built when events are read (at once when someone reads them
    as the run goes on): a run's own events cost a tuple, not three dicts, when nobody looks."""
    log = run.log
    if log is not None:
        log.append((_LATER, key, build, args))
    else:
        run.emit(key, build(*args))


def trace_step(
    run: RunContext,
    frame: Frame,
    step: StepBase,
    res: StepResult,
    *,
    attempt: int,
    started: str | float,
    duration: float,
    usage: Usage | None = None,
    cost: float = 0.0,
    note: str | None = None,
    event: bool = True,
) -> None:
    entry = frame.plan.entries[step.id]
    key = (frame.order.get(step.id, 0), frame.iteration, attempt)
    # the status, output and error as they are now (a result may change later): kept in the run's
    # log (rows and events built when read), or made into the row and event at once
    rec = (
        _DONE,
        key,
        step,
        entry,
        frame.prefix,
        res.status,
        res.output,
        res.error,
        started,
        duration,
        usage,
        cost,
        event,
    )
    log = run.log
    if log is not None:
        log.append(rec)
        return
    row, completed = _done(run.run_id, *rec[1:])
    run.trace.append((key, row))
    if completed is not None:
        run.emit(key, completed)


def _done(
    run_id: str,
    key: tuple[Any, ...],
    step: Any,
    entry: Any,
    prefix: str,
    status: str,
    output: Any,
    error: Any,
    started: str | float,
    duration: float,
    usage: Usage | None,
    cost: float,
    event: bool,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One trace row, and the step's ``step.execution.completed`` event when it has one."""
    duration = round(duration, 3)
    started = stamp(started)
    iteration = key[1]
    row = {
        "run_id": run_id,
        "step_id": prefix + step.id,
        "type": step.type,
        "backend": entry.backend,
        "backend_source": entry.source,
        "status": status,
        "attempt": key[2],
        "iteration": ".".join(map(str, iteration)) if iteration else "",
        # the block's step, or the sub-workflow step this run of a workflow's steps is inside
        # ("/<id>": a whole id, as a workflow tool's steps name their agent step)
        "parent": (entry.parent[1:] if entry.parent[0] == "/" else prefix + entry.parent)
        if entry.parent
        else prefix[:-1],
        "fragment": step.id.rpartition("/")[0],  # the inlined workflow part the step came from
        "started_at": started,
        "duration_ms": duration,
        "prompt_tokens": usage.prompt_tokens if usage else 0,
        "completion_tokens": usage.completion_tokens if usage else 0,
        "total_tokens": usage.total_tokens if usage else 0,
        "cost_usd": cost,
        "error_code": error.code if error else None,
    }
    if status in ("skipped", "waiting") or not event:
        return row, None
    execution: dict[str, Any] = {
        "backend": entry.backend,
        "backend_source": entry.source,  # so a stored run's trace says it too
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
    result: dict[str, Any] = {"status": "success" if status == "success" else "error", "output": output}
    if error:
        result["error"] = error.to_dict()
    return row, {
        "type": "step.execution.completed",
        "timestamp": started,
        "run_id": run_id,
        "step_id": row["step_id"],
        "step_type": step.type,
        "iteration": row["iteration"],
        "attempt": key[2],
        "fragment": row["fragment"],
        "execution": execution,
        "result": result,
    }


def step_started(run: RunContext, frame: Frame, step: StepBase, attempt: int, timestamp: float) -> None:
    """The ``step.started`` event (a compact record when nobody reads events during the run)."""
    log = run.log
    entry = frame.plan.entries[step.id]
    key = (frame.order.get(step.id, 0), frame.iteration, attempt)
    if log is not None:
        log.append((_STARTED, key, step, entry, frame.prefix, timestamp))
    else:
        run.emit(key, _event(run.run_id, key, step, entry, frame.prefix, "step.started", timestamp, {}))


def started_record(frame: Frame, step: StepBase, attempt: int, timestamp: float) -> tuple[Any, ...]:
    """The compact ``step.started`` record (`RunContext.log`)."""
    key = (frame.order.get(step.id, 0), frame.iteration, attempt)
    return (_STARTED, key, step, frame.plan.entries[step.id], frame.prefix, timestamp)


def ran_record(
    mark: int, frame: Frame, step: StepBase, entry: Any, started: float, output: Any, duration: float
) -> tuple[Any, ...]:
    """One record for a first attempt that succeeded: its ``step.started`` event (right before
    the rest, or with `mark` >= 0 at that index, where the step put a None when it started), its
    trace row and its ``step.execution.completed`` event."""
    # the sort key's parts inline (rank, iteration): a tuple fewer per step while the run goes on
    rank = frame.order.get(step.id, 0)
    if mark < 0:
        return (_RAN, rank, frame.iteration, step, entry, frame.prefix, started, output, duration)
    return (_PLACED, rank, frame.iteration, step, entry, frame.prefix, started, output, duration, mark)


def step_event(
    run: RunContext, frame: Frame, step: StepBase, kind: str, attempt: int, timestamp: str | float, **fields: Any
) -> None:
    """A step lifecycle event (started, retrying, failed, skipped), ordered with the step's others."""
    key = (frame.order.get(step.id, 0), frame.iteration, attempt)
    event = _event(run.run_id, key, step, frame.plan.entries[step.id], frame.prefix, kind, timestamp, fields)
    run.emit(key, event)


def _event(
    run_id: str,
    key: tuple[Any, ...],
    step: Any,
    entry: Any,
    prefix: str,
    kind: str,
    timestamp: str | float,
    fields: dict[str, Any],
) -> dict[str, Any]:
    iteration = key[1]
    return {
        "type": kind,
        "timestamp": stamp(timestamp),
        "run_id": run_id,
        "step_id": prefix + step.id,
        "step_type": step.type,
        "iteration": ".".join(map(str, iteration)) if iteration else "",
        "attempt": key[2],
        "backend": entry.backend,
        "fragment": step.id.rpartition("/")[0],
        **fields,
    }


class Bookkeeping:
    """A finished run's compact records, built into trace rows and events when first read."""

    __slots__ = ("log", "run_id", "secrets", "seq")

    def __init__(
        self, log: list[tuple[Any, ...] | None], run_id: str, secrets: dict[str, str], seq: itertools.count[int]
    ):
        self.log = log
        self.run_id = run_id
        self.secrets = secrets
        self.seq = seq

    def build(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Trace rows and events, each sorted by (rank, iteration, attempt) like an eager run's."""
        run_id, secrets, seq = self.run_id, self.secrets, self.seq
        rows: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        events: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

        def add(key: tuple[Any, ...], event: dict[str, Any]) -> None:
            if secrets:
                event = redact(event, secrets)
            event.setdefault("event_id", f"evt_{run_id}_{next(seq):05d}")
            events.append((key, event))

        log = self.log
        # a step's started event goes where it put a None when it started (see `ran_record`)
        starts = {rec[9]: rec for rec in log if rec is not None and rec[0] == _PLACED}
        for at, rec in enumerate(log):
            if rec is None:
                ran = starts.get(at)
                if ran is None:  # a step stopped by something no step catches (KeyboardInterrupt)
                    continue
                _, rank, iteration, step, entry, prefix, started = ran[:7]
                key = (rank, iteration, 1)
                add(key, _event(run_id, key, step, entry, prefix, "step.started", started, {}))
                continue
            tag = rec[0]
            if tag == _DONE:
                row, completed = _done(run_id, *rec[1:])
                rows.append((rec[1], row))
                if completed is not None:
                    add(rec[1], completed)
            elif tag in (_RAN, _PLACED):
                _, rank, iteration, step, entry, prefix, started, output, duration = rec[:9]
                key = (rank, iteration, 1)
                if tag == _RAN:
                    add(key, _event(run_id, key, step, entry, prefix, "step.started", started, {}))
                row, completed = _done(
                    run_id, key, step, entry, prefix, "success", output, None, started, duration, None, 0.0, True
                )
                rows.append((key, row))
                add(key, completed)  # type: ignore[arg-type]
            elif tag == _STARTED:
                _, key, step, entry, prefix, timestamp = rec
                add(key, _event(run_id, key, step, entry, prefix, "step.started", timestamp, {}))
            elif tag == _LATER:
                add(rec[1], rec[2](*rec[3]))
            else:
                add(rec[1], rec[2])
        self.log = []
        trace = [r for _, r in sorted(rows, key=_first)]
        if secrets:
            trace = [redact(r, secrets) for r in trace]
        return trace, [e for _, e in sorted(events, key=_first)]


def _first(kv: tuple[Any, Any]) -> Any:
    return kv[0]
