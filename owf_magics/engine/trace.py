"""Trace rows and step lifecycle events, ordered by graph rank, iteration and attempt.

With a callback attached (someone reads events while the run goes on), or a store and secrets to
redact, rows and events are built as they happen. Otherwise (`RunContext.log` is a list) a step
appends one compact tuple per record, and `Bookkeeping` builds the same rows and events, with the
same ids in the same order, when `RunResult.trace_rows` or `RunResult.events` is first read.

A store reads the log as the run goes on (`drain`): each write takes the records logged since the
last one, numbered as `Bookkeeping` numbers them, with a `StepPair` in place of the two events of
each first attempt that succeeded (a SQLite store keeps those in the step's row, see
`owf_magics.runs.trails`; `StepPair.events` builds them for any other store).
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
_STARTED_KEYS = frozenset(
    {"type", "timestamp", "run_id", "step_id", "step_type", "iteration", "attempt", "backend", "fragment", "event_id"}
)
_COMPLETED_KEYS = _STARTED_KEYS - {"backend"} | {"execution", "result"}
_EXECUTION_WORDS = frozenset({"backend_source", "runtime", "adapter_version", "duration_ms", "status", "output"})


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
    the rest; with `mark` >= 0 the step logged it when it started, at that index), its trace row
    and its ``step.execution.completed`` event."""
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

        for rec in self.log:
            if rec is None:
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


class StepPair:
    """A first attempt that succeeded, as a store gets it (`drain`): in place of its
    ``step.started`` event (numbered `started_no`; None when it was logged on its own, as an
    awaited step's is) and its ``step.execution.completed`` event (`completed_no`)."""

    __slots__ = ("completed_no", "key", "output", "rec", "redacted", "run_id", "started_no")

    def __init__(self, run_id: str, rec: tuple[Any, ...], started_no: int | None, completed_no: int) -> None:
        self.run_id, self.rec, self.started_no, self.completed_no = run_id, rec, started_no, completed_no
        _, _, iteration, step, _, prefix = rec[:6]
        step_id = prefix + step.id
        self.key = f"{step_id}[{'.'.join(map(str, iteration))}]" if iteration else step_id  # its step key
        self.output = rec[7]  # as the step's record has it: the same object, or (`redacted`) an equal one
        self.redacted = False

    @property
    def size(self) -> int:
        """How many events it stands for."""
        return 1 if self.started_no is None else 2

    def events(self, hide: Callable[[Any], Any] | None = None) -> list[dict[str, Any]]:
        """The events, as `Bookkeeping` builds them (redacted by `hide`, before their ids)."""
        _, rank, iteration, step, entry, prefix, started, _, duration = self.rec[:9]
        output = self.output  # the step's output, or (`redacted`, see `clean`) its redacted copy
        run_id, key = self.run_id, (rank, iteration, 1)
        out: list[tuple[int, dict[str, Any] | None]] = []
        if self.started_no is not None:
            out.append((self.started_no, _event(run_id, key, step, entry, prefix, "step.started", started, {})))
        completed = _done(run_id, key, step, entry, prefix, "success", output, None, started, duration, None, 0.0, True)
        out.append((self.completed_no, completed[1]))
        events = []
        for no, built in out:
            assert built is not None
            event = built if hide is None else hide(built)
            event["event_id"] = f"evt_{run_id}_{no:05d}"
            events.append(event)
        return events

    def clean(self, hide: Callable[[Any], Any]) -> bool:
        """Whether redaction leaves every field of its events as it is but the output (which the
        step's record holds redacted): then the output here becomes that redacted one."""
        _, _, iteration, step, entry, prefix, started, output, duration = self.rec[:9]
        run_id = self.run_id
        probe = [
            self.key,
            prefix + step.id,
            step.type,
            step.id.rpartition("/")[0],
            entry.backend,
            entry.source,
            entry.runtime,
            entry.adapter_version,
            ".".join(map(str, iteration)) if iteration else "",
            stamp(started),
            round(duration, 3),
            1,
            f"evt_{run_id}_{self.completed_no:05d}",
            f"evt_{run_id}_{self.started_no or 0:05d}",
        ]
        if hide(probe) != probe:
            return False
        self.output, self.redacted = hide(output), True
        return True

    def trail(self, started_seq: int | None) -> list[Any]:
        """The events as `owf_magics.runs.trails` keeps them in the step's row (the time as
        `time.time()` gave it, the ids as numbers: both formatted when read)."""
        _, _, iteration, step, entry, _, started, _, duration = self.rec[:9]
        return [
            None if self.started_no is None else started_seq,
            self.started_no,
            self.completed_no,
            started,
            step.type,
            ".".join(map(str, iteration)) if iteration else "",
            1,
            step.id.rpartition("/")[0],
            entry.backend,
            entry.source,
            entry.runtime,
            entry.adapter_version,
            round(duration, 3),
            None,
            None,
        ]


def drain(run: RunContext) -> list[Any]:
    """The events logged since the store's last write (`RunContext.log`, from `flushed`), numbered
    as `Bookkeeping` will number them: dicts, and a `StepPair` for each first attempt that
    succeeded. Records are never changed once drained (a step logs its start before anything
    can write)."""
    log = run.log
    assert log is not None
    run_id, n = run.run_id, run.next_event
    out: list[Any] = []
    hide = _hiding(run)
    end = len(log)
    for at in range(run.flushed, end):
        rec = log[at]
        if rec is None:
            continue
        tag = rec[0]
        if tag in (_RAN, _PLACED):
            pair = StepPair(run_id, rec, n, n + 1) if tag == _RAN else StepPair(run_id, rec, None, n)
            n += pair.size
            if hide is None or (run.plain and pair.clean(hide)):
                out.append(pair)
            else:
                out.extend(pair.events(hide))
            continue
        if tag == _DONE:
            event = _done(run_id, *rec[1:])[1]
            if event is None:
                continue
        elif tag == _STARTED:
            _, key, step, entry, prefix, timestamp = rec
            event = _event(run_id, key, step, entry, prefix, "step.started", timestamp, {})
        elif tag == _LATER:
            event = rec[2](*rec[3])
        else:
            event = dict(rec[2])
        if hide is not None:
            event = hide(event)
        event.setdefault("event_id", f"evt_{run_id}_{n:05d}")
        n += 1
        out.append(event)
    run.flushed, run.next_event = end, n
    return out


# every name and fixed value a step's events hold: a run whose secrets would redact one of them
# writes its steps' events as rows, redacted (`RunContext.plain`)
_EVENT_WORDS = [
    *sorted(_STARTED_KEYS | _COMPLETED_KEYS | _EXECUTION_WORDS),
    "step.started",
    "step.execution.completed",
    "success",
]


def _hiding(run: RunContext) -> Callable[[Any], Any] | None:
    """The run's redaction, None without secrets (the first call checks `RunContext.plain`)."""
    if not run.secrets:
        return None
    from owf_magics.manifest.redaction import redactor

    hide = redactor(run.secrets)
    if hide is None:
        return None
    if run.plain is None:
        words = [*_EVENT_WORDS, run.run_id, f"evt_{run.run_id}_"]
        run.plain = hide(words) == words
    return hide


def store_events(run: RunContext, *, pairs: bool) -> list[Any]:  # events, and StepPairs
    """The events a store has not written yet (`RunContext.unsaved` or `drain`); with `pairs`
    false, each `StepPair` as its events."""
    if run.log is None:
        unsaved, run.unsaved = run.unsaved, []
        return unsaved
    events = drain(run)
    if pairs:
        return events
    return [e for item in events for e in (item.events() if type(item) is StepPair else (item,))]
