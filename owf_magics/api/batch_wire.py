"""How a batch chunk's results travel from a Dask worker back to the client: one compact pickle.

A `RunResult` pickled as it is costs the worker its trace rows and events built as dicts (every key
written again for every row) and costs the client an object per key, row, step and error. A task
returns `PackedRuns` instead: pickled, it becomes one record per run and unpickles straight into
the list of `RunResult`s. A run's trace rows and events travel as a blob the client turns into rows
only when they are first read (`RunResult.defer`): the engine's compact log of the run (the same
records `engine.trace.Bookkeeping` builds them from on the worker, its steps and plan entries sent
once per chunk), or, for a run whose rows were built already or that holds secrets, the rows as
tuples of values beside a table of the chunk's distinct key tuples. Steps, outputs, usage rows and
errors are rebuilt at once. Every public attribute of the rebuilt results equals the worker's
(tests/test_batch_wire.py); a result with anything the packer does not know (a `StepResult`
subclass, an extra attribute) keeps it as it is.
"""

from __future__ import annotations

import gc
import io
import itertools
import pickle
import threading
from collections.abc import Sequence
from typing import Any

from owf_magics.engine.trace import Bookkeeping
from owf_magics.manifest.models import StepBase
from owf_magics.plan.resolution import PlanEntry
from owf_magics.runtime.results import RunResult, StepError, StepResult

__all__ = ["Opaque", "PackedRuns", "fewer_collections", "pack", "unpack", "unpacked"]

#: What a `RunResult` keeps in its ``__dict__``; anything else (an agent run's ``session``) travels as it is.
_KNOWN = frozenset(
    (
        "run_id",
        "workflow",
        "status",
        "last_agent",
        "outputs",
        "steps",
        "_events",
        "_trace_rows",
        "usage_rows",
        "error",
        "pending",
        "duration_ms",
        "_lazy",
    )
)


class PackedRuns:
    """A chunk's results as a task returns them: pickled in columnar form, unpickled as the list."""

    __slots__ = ("results",)

    def __init__(self, results: list[RunResult]) -> None:
        self.results = results

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return unpack, pack(self.results)


class Opaque:
    """A task argument Dask passes on as it is: a chunk's inputs given as a list would be walked
    value by value (looking for futures in them) on every submit, tens of microseconds an input."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return Opaque, (self.value,)


def unpacked(value: Any) -> list[RunResult]:
    """A task's value as the list of results (a `PackedRuns` that was never pickled, on a cluster
    of threads in this process, or the list itself)."""
    return value.results if isinstance(value, PackedRuns) else list(value)


class _Rows:
    """A packed run's trace rows and events, made dicts again when first read (`RunResult.defer`)."""

    __slots__ = ("blob", "keys")

    def __init__(self, keys: Sequence[tuple[str, ...]], blob: bytes) -> None:
        self.keys, self.blob = keys, blob

    def build(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        trace, events = pickle.loads(self.blob)
        return _dicts(self.keys, trace), _dicts(self.keys, events)


class _Log:
    """A packed run's compact log (its steps and plan entries by number in the chunk's table),
    built into trace rows and events by `Bookkeeping` when first read, with the same event ids."""

    __slots__ = ("blob", "next_event", "run_id", "table")

    def __init__(self, table: Sequence[Any], blob: bytes, run_id: str, next_event: int) -> None:
        self.table, self.blob, self.run_id, self.next_event = table, blob, run_id, next_event

    def build(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        loader = pickle.Unpickler(io.BytesIO(self.blob))
        loader.persistent_load = self.table.__getitem__  # type: ignore[method-assign]
        log = loader.load()
        return Bookkeeping(log, self.run_id, {}, itertools.count(self.next_event)).build()


class _LogPickler(pickle.Pickler):
    """Pickles a run's log with its steps and plan entries as numbers in one table per chunk."""

    def __init__(self, file: io.BytesIO, table: list[Any], numbers: dict[int, int]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.table, self.numbers = table, numbers

    def persistent_id(self, obj: Any) -> int | None:
        if isinstance(obj, (StepBase, PlanEntry)):
            n = self.numbers.get(id(obj))
            if n is None:
                n = self.numbers[id(obj)] = len(self.table)
                self.table.append(obj)
            return n
        return None


def _log_blob(r: RunResult, table: list[Any], numbers: dict[int, int]) -> tuple[bytes, int] | None:
    """The run's compact log and the number of its next event, when it can travel so."""
    lazy = r.deferred
    if type(lazy) is not Bookkeeping or lazy.secrets:  # built already, or secrets to redact: rows
        return None
    out = io.BytesIO()
    try:
        _LogPickler(out, table, numbers).dump(lazy.log)
    except Exception:  # something in the log that does not pickle on its own: send the rows
        return None
    n = next(lazy.seq)
    lazy.seq = itertools.count(n)  # as it was: the rows built here later get the same event ids
    return out.getvalue(), n


def _dicts(keys: Sequence[tuple[str, ...]], rows: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
    # a row is its values then its key tuple's number: zip stops at the last key
    return [dict(zip(keys[row[-1]], row, strict=False)) for row in rows]


def pack(results: Sequence[RunResult]) -> tuple[list[tuple[str, ...]], list[Any], list[tuple[Any, ...]]]:
    """``(key tuples, steps and plan entries, one record per run)``: what `unpack` rebuilds the
    results from."""
    numbers: dict[tuple[str, ...], int] = {}
    table: list[Any] = []
    shared: dict[int, int] = {}

    def rows(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        out = []
        for row in items:
            keys = tuple(row)
            n = numbers.get(keys)
            if n is None:
                n = numbers[keys] = len(numbers)
            out.append((*row.values(), n))
        return out

    records = []
    for r in results:
        state = r.__dict__
        extra = {k: v for k, v in state.items() if k not in _KNOWN}
        if extra.get("finished") == list(r.steps):  # the finish order is the plan's: built again
            del extra["finished"]
        extra.pop("_frames", None)  # cached DataFrames, built again from the rows when read
        wire: Any = _log_blob(r, table, shared)
        if wire is None:
            wire = pickle.dumps((rows(r.trace_rows), rows(r.events)), protocol=pickle.HIGHEST_PROTOCOL)
        records.append(
            (
                r.run_id,
                r.workflow,
                r.status,
                r.outputs,
                _steps(r.steps),
                wire,
                rows(r.usage_rows),
                _error(r.error),
                r.pending or None,
                r.duration_ms,
                r.last_agent,
                extra or None,
            )
        )
    return list(numbers), table, records


def unpack(keys: list[tuple[str, ...]], table: list[Any], records: list[tuple[Any, ...]]) -> list[RunResult]:
    """The results `pack` packed, in the same order."""
    out = []
    with fewer_collections():  # thousands of small objects that all live on
        for run_id, workflow, status, outputs, steps, blob, usage, error, pending, duration, agent, extra in records:
            r = RunResult(
                run_id,
                workflow,
                status,
                outputs,
                _unsteps(steps),
                [],
                None,
                _dicts(keys, usage),
                error=StepError(*error) if type(error) is tuple else error,
                pending=list(pending) if pending else None,
                duration_ms=duration,
            )
            r.last_agent = agent
            r.defer(_Rows(keys, blob) if type(blob) is bytes else _Log(table, blob[0], run_id, blob[1]))
            if extra:
                r.__dict__.update(extra)
            out.append(r)
    return out


def _steps(steps: dict[str, StepResult]) -> Any:
    packed = []
    for key, s in steps.items():
        err = s.error
        if type(s) is not StepResult or key != s.step_id or (err is not None and type(err) is not StepError):
            return steps  # something the packer does not know: the dict travels as it is
        packed.append(
            (
                s.step_id,
                s.status,
                s.output,
                None if err is None else (err.code, err.message, err.details),
                s.attempts,
                s.backend,
                s.duration_ms,
            )
        )
    return tuple(packed)


def _unsteps(packed: Any) -> dict[str, StepResult]:
    if isinstance(packed, dict):
        return packed
    steps = {}
    for sid, status, output, err, attempts, backend, duration in packed:
        steps[sid] = StepResult(
            sid, status, output, None if err is None else StepError(*err), attempts, backend, duration
        )
    return steps


def _error(error: StepError | None) -> Any:
    if error is None or type(error) is not StepError:
        return error
    return (error.code, error.message, error.details)


class _Collector:
    """Who holds `fewer_collections` in this process, and the thresholds to restore."""

    lock = threading.Lock()
    holders = 0
    saved: tuple[int, ...] = ()


class fewer_collections:
    """Collect the youngest generation less often while a batch builds many objects that live on
    (a chunk's runs on a worker, the results on the client): each collection walks every object
    made since the last, so with the default threshold (700) the objects of hundreds of runs in
    flight are walked again and again (about a fifth of a worker's CPU in bench/scale_bench.py).
    Reference cycles are still collected, only later; the thresholds are restored when the last
    holder in the process leaves."""

    THRESHOLD = 50_000

    def __enter__(self) -> None:
        with _Collector.lock:
            if _Collector.holders == 0:
                _Collector.saved = gc.get_threshold()
                if 0 < _Collector.saved[0] < self.THRESHOLD:
                    gc.set_threshold(self.THRESHOLD, *_Collector.saved[1:])
            _Collector.holders += 1

    def __exit__(self, *exc: object) -> None:
        with _Collector.lock:
            _Collector.holders -= 1
            if _Collector.holders == 0 and _Collector.saved and _Collector.saved[0]:
                gc.set_threshold(*_Collector.saved)
