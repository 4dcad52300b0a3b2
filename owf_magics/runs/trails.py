"""A step's own events kept in its step row (schema version 6).

Most of what a run stores is, per step, a ``steps`` row and two events that repeat it: the
``step.started`` event and the ``step.execution.completed`` event, whose step id, run id and output
are the row's. Writing them as two more rows of ``events`` cost a durable chain nearly half of its
time (another table's pages in every transaction). So when a step's two events have exactly the
shape the engine gives them, the store keeps what the row does not already say in the row itself:
its *trail*, a short JSON array in ``steps.trail``, with the completed event's sequence number in
``steps.seq``. Reading a run's events (`read_events`) rebuilds them from the trails and merges them
with the ``events`` rows in sequence order: the same events, with the same numbers and ids.

Everything else is an ``events`` row as before: the run's own events, agent turns, a failed or
retried attempt, an event carrying anything the trail cannot say (a redacted copy, an error, a
field the engine does not write), a started event whose step finished in a later transaction.

A trail lives as long as its row. A row written again under the same key (a resumed run writes its
restored steps again) would take its trail with it, so before a row is replaced its trail becomes
``events`` rows (`materialize`); the store finds such rows by writing with a plain ``INSERT``
first (see `owf_magics.runs.store.SQLiteRunStore.checkpoint_many`).

A trail is
``[started_seq, started_id, completed_id, timestamp, step_type, iteration, attempt, fragment,
backend, backend_source, runtime, adapter_version, duration_ms, token_usage, started_timestamp]``:
the started event's sequence number (null when it was written on its own), the two events'
``event_id`` suffixes after ``evt_<run_id>_`` (or their numbers, written ``%05d``), the fields
both events share (the timestamp as text, or as the ``time.time()`` value it is formatted from),
the execution block, ``[prompt, completion, total]`` tokens or null, and the started event's
timestamp when it differs from the completed one's (null otherwise).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from owf_magics.runtime.context import stamp
from owf_magics.runtime.records import StepRecord, StoredEvent

__all__ = ["dumps", "expand", "match", "materialize", "read_events"]

STARTED = "step.started"
COMPLETED = "step.execution.completed"

_STARTED_KEYS = frozenset(
    {"type", "timestamp", "run_id", "step_id", "step_type", "iteration", "attempt", "backend", "fragment", "event_id"}
)
_COMPLETED_KEYS = frozenset(
    {
        "type",
        "timestamp",
        "run_id",
        "step_id",
        "step_type",
        "iteration",
        "attempt",
        "fragment",
        "execution",
        "result",
        "event_id",
    }
)
_EXECUTION = frozenset({"backend", "backend_source", "runtime", "adapter_version", "duration_ms"})
_EXECUTION_USAGE = _EXECUTION | {"token_usage"}
_TOKENS = ("prompt_tokens", "completion_tokens", "total_tokens")
_SCALARS = (str, int, float, bool)

# orjson (when installed) writes a trail in a fraction of the json module's time; a trail holds
# only text, integers, finite floats and null, which both write the same way
dumps: Callable[[Any], str]
try:
    from orjson import dumps as _orjson_dumps

    def dumps(value: Any) -> str:
        """A trail's JSON."""
        return _orjson_dumps(value).decode()

except ImportError:  # pragma: no cover (orjson not installed)
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


_JSONISH = frozenset({str, int, float, bool, type(None)})
_RESULT_KEYS = frozenset({"status", "output"})
_TOKEN_KEYS = frozenset(_TOKENS)


def _trail(
    run_id: str, step: StepRecord, completed: Mapping[str, Any], started: Mapping[str, Any] | None, started_seq: int
) -> list[Any] | None:
    """The trail of `completed` (and `started`), or None when the events say more than it can."""
    if completed.keys() != _COMPLETED_KEYS or completed["run_id"] != run_id or completed["step_id"] != step.step_id:
        return None
    result, execution = completed["result"], completed["execution"]
    if type(result) is not dict or result.keys() != _RESULT_KEYS or result["status"] != "success":
        return None
    output = result["output"]
    if output is not step.output and (
        type(output) not in _SCALARS or type(output) is not type(step.output) or output != step.output
    ):
        return None
    if type(execution) is not dict:
        return None
    tokens = None
    if execution.keys() != _EXECUTION:
        if execution.keys() != _EXECUTION_USAGE:
            return None
        usage = execution["token_usage"]
        if type(usage) is not dict or usage.keys() != _TOKEN_KEYS:
            return None
        tokens = [usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]]
        if type(tokens[0]) is not int or type(tokens[1]) is not int or type(tokens[2]) is not int:
            return None
    prefix = f"evt_{run_id}_"
    completed_id = completed["event_id"]
    if type(completed_id) is not str or not completed_id.startswith(prefix):
        return None
    trail = [
        None,
        None,
        completed_id[len(prefix) :],
        completed["timestamp"],
        completed["step_type"],
        completed["iteration"],
        completed["attempt"],
        completed["fragment"],
        execution["backend"],
        execution["backend_source"],
        execution["runtime"],
        execution["adapter_version"],
        execution["duration_ms"],
        tokens,
        None,
    ]
    # every field a plain JSON scalar (the duration a finite number), so the JSON gives it back;
    # the time as text (a number in a trail is a `time.time()` value, formatted when read)
    for value in trail[3:13]:
        if type(value) not in _JSONISH:
            return None
    if type(trail[3]) is not str:
        return None
    duration = trail[12]
    if type(duration) is bool or not isinstance(duration, int | float) or not math.isfinite(duration):
        return None
    if started is not None and started.keys() == _STARTED_KEYS:  # the started event goes in too
        started_id = started["event_id"]
        if (
            type(started_id) is str
            and started_id.startswith(prefix)
            and started["run_id"] == run_id
            and _same(started["step_id"], completed["step_id"])
            and _same(started["backend"], trail[8])
            and _same(started["step_type"], trail[4])
            and _same(started["iteration"], trail[5])
            and _same(started["attempt"], trail[6])
            and _same(started["fragment"], trail[7])
            and type(started["timestamp"]) is str
        ):
            trail[0] = started_seq
            trail[1] = started_id[len(prefix) :]
            if started["timestamp"] != trail[3]:
                trail[14] = started["timestamp"]
    return trail


def _same(a: Any, b: Any) -> bool:
    """Equal and of one type (the trail writes one value for both events: ``1`` is not ``True``)."""
    return type(a) is type(b) and a == b


def _key(event: Mapping[str, Any]) -> Any:
    step_id, iteration = event.get("step_id"), event.get("iteration")
    if type(step_id) is not str:
        return None
    return f"{step_id}[{iteration}]" if iteration else step_id


def match(
    run_id: str, steps: Sequence[StepRecord], events: Sequence[Mapping[str, Any]], first: int
) -> tuple[dict[int, tuple[int, str]], set[int]]:
    """Which of `events` (numbered from `first`) go into the trails of which of `steps`.

    Returns:
        ``{step index: (the completed event's sequence number, the trail's JSON)}`` and the
        indexes of the events the trails hold.
    """
    if len(steps) == 1 and len(events) == 2:  # a chain's step: its started and completed events
        step, (started, completed) = steps[0], events
        if (
            started.get("type") == STARTED
            and completed.get("type") == COMPLETED
            and step.status == "success"
            and started.get("step_id") == completed.get("step_id")
            and started.get("iteration") == completed.get("iteration")
            and started.get("attempt") == completed.get("attempt")
            and _key(completed) == step.step_key
        ):
            trail = _trail(run_id, step, completed, started, first)
            if trail is None:
                return {}, set()
            try:
                text = dumps(trail)
            except (TypeError, ValueError):
                return {}, set()
            return {0: (first + 1, text)}, ({0, 1} if trail[0] is not None else {1})
    done: dict[Any, int] = {}
    starts: dict[tuple[Any, Any], int] = {}
    for i, event in enumerate(events):
        kind = event.get("type")
        if kind == COMPLETED:
            done[_key(event)] = i
        elif kind == STARTED:
            starts[(_key(event), event.get("attempt"))] = i
    trails: dict[int, tuple[int, str]] = {}
    held: set[int] = set()
    if not done:
        return trails, held
    keys: set[str] = set()
    for n in range(len(steps) - 1, -1, -1):  # a key written twice in one batch: only its last row keeps a trail
        step = steps[n]
        if step.step_key in keys:
            continue
        keys.add(step.step_key)
        found = done.get(step.step_key)
        if found is None or found in held or step.status != "success":
            continue
        i = found
        completed = events[i]
        j = starts.get((step.step_key, completed.get("attempt")), -1)
        trail = _trail(run_id, step, completed, events[j] if 0 <= j < i and j not in held else None, first + j)
        if trail is None:
            continue
        try:
            trails[n] = (first + i, dumps(trail))
        except (TypeError, ValueError):
            continue
        held.add(i)
        if trail[0] is not None:
            held.add(j)
    return trails, held


def expand(run_id: str, step_id: str, output: Any, seq: int, trail: Sequence[Any]) -> list[StoredEvent]:
    """The events a trail holds, as `read_events` returns them (started first)."""
    (
        started_seq,
        started_id,
        completed_id,
        timestamp,
        step_type,
        iteration,
        attempt,
        fragment,
        backend,
        backend_source,
        runtime,
        adapter_version,
        duration,
        tokens,
        started_timestamp,
    ) = trail
    prefix = f"evt_{run_id}_"
    if type(timestamp) is not str:
        timestamp = stamp(timestamp)
    if type(started_id) is int:
        started_id = f"{started_id:05d}"
    if type(completed_id) is int:
        completed_id = f"{completed_id:05d}"
    out = []
    if started_seq is not None:
        started = {
            "type": STARTED,
            "timestamp": timestamp if started_timestamp is None else started_timestamp,
            "run_id": run_id,
            "step_id": step_id,
            "step_type": step_type,
            "iteration": iteration,
            "attempt": attempt,
            "backend": backend,
            "fragment": fragment,
            "event_id": prefix + started_id,
        }
        out.append(StoredEvent(run_id, started_seq, STARTED, started))
    execution: dict[str, Any] = {
        "backend": backend,
        "backend_source": backend_source,
        "runtime": runtime,
        "adapter_version": adapter_version,
        "duration_ms": duration,
    }
    if tokens is not None:
        execution["token_usage"] = dict(zip(_TOKENS, tokens, strict=True))
    completed = {
        "type": COMPLETED,
        "timestamp": timestamp,
        "run_id": run_id,
        "step_id": step_id,
        "step_type": step_type,
        "iteration": iteration,
        "attempt": attempt,
        "fragment": fragment,
        "execution": execution,
        "result": {"status": "success", "output": output},
        "event_id": prefix + completed_id,
    }
    out.append(StoredEvent(run_id, seq, COMPLETED, completed))
    return out


def read_events(conn: Any, run_id: str, after: int = 0) -> list[StoredEvent]:
    """A run's events with ``seq > after`` in sequence order: the ``events`` rows and the trails."""
    rows = conn.execute(
        "SELECT seq, type, body FROM events WHERE run_id = ? AND seq > ? ORDER BY seq", (run_id, after)
    ).fetchall()
    events = [StoredEvent(run_id, r[0], r[1], json.loads(r[2])) for r in rows]
    kept = conn.execute(
        "SELECT step_id, output, seq, trail FROM steps WHERE run_id = ? AND seq > ? AND trail IS NOT NULL",
        (run_id, after),
    ).fetchall()
    if not kept:
        return events
    for step_id, output, seq, trail in kept:
        value = None if output is None else json.loads(output)
        events.extend(e for e in expand(run_id, step_id, value, seq, json.loads(trail)) if e.seq > after)
    events.sort(key=_seq)
    return events


def _seq(event: StoredEvent) -> int:
    return event.seq


def materialize(conn: Any, run_id: str, keys: Sequence[str], encode: Callable[[Any], str]) -> None:
    """Turn the trails of these step rows into ``events`` rows (before the rows are written again)."""
    for start in range(0, len(keys), 500):
        chunk = list(keys[start : start + 500])
        marks = ", ".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT step_key, step_id, output, seq, trail FROM steps"
            f" WHERE run_id = ? AND trail IS NOT NULL AND step_key IN ({marks})",
            (run_id, *chunk),
        ).fetchall()
        for key, step_id, output, seq, trail in rows:
            value = None if output is None else json.loads(output)
            conn.executemany(
                "INSERT INTO events (run_id, seq, type, body) VALUES (?, ?, ?, ?)",
                [
                    (run_id, e.seq, e.type, encode(e.event))
                    for e in expand(run_id, step_id, value, seq, json.loads(trail))
                ],
            )
            conn.execute("UPDATE steps SET trail = NULL, seq = NULL WHERE run_id = ? AND step_key = ?", (run_id, key))
