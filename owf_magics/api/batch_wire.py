"""How a batch chunk's results travel from a Dask worker back to the client: one compact pickle.

A `RunResult` pickled as it is costs the worker its trace rows and events as dicts (every key
written again for every row) and costs the client an object per key, row, step and error. A task
returns `PackedRuns` instead: pickled, it becomes one columnar record per run (rows as tuples of
values beside a table of the chunk's distinct key tuples, steps and errors as tuples) and it
unpickles straight into the list of `RunResult`s. The client builds each run's steps, outputs and
usage rows at once and its trace rows and events only when they are first read (`RunResult.defer`),
so a batch whose trace nobody reads never builds them. Every public attribute of the rebuilt
results equals the worker's (tests/test_batch_wire.py); a result with anything the packer does not
know (a `StepResult` subclass, an extra attribute) keeps it as it is.
"""

from __future__ import annotations

import gc
import pickle
import threading
from collections.abc import Sequence
from typing import Any

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


def _dicts(keys: Sequence[tuple[str, ...]], rows: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
    # a row is its values then its key tuple's number: zip stops at the last key
    return [dict(zip(keys[row[-1]], row, strict=False)) for row in rows]


def pack(results: Sequence[RunResult]) -> tuple[list[tuple[str, ...]], list[tuple[Any, ...]]]:
    """``(key tuples, one record per run)``: what `unpack` rebuilds the results from."""
    numbers: dict[tuple[str, ...], int] = {}

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
        extra = {k: v for k, v in state.items() if k not in _KNOWN} or None
        records.append(
            (
                r.run_id,
                r.workflow,
                r.status,
                r.outputs,
                _steps(r.steps),
                pickle.dumps((rows(r.trace_rows), rows(r.events)), protocol=pickle.HIGHEST_PROTOCOL),
                rows(r.usage_rows),
                _error(r.error),
                r.pending or None,
                r.duration_ms,
                r.last_agent,
                extra,
            )
        )
    return list(numbers), records


def unpack(keys: list[tuple[str, ...]], records: list[tuple[Any, ...]]) -> list[RunResult]:
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
            r.defer(_Rows(keys, blob))
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
