"""Writing a group of step checkpoints and their events in one transaction.

The engine hands the store every step that finished in the same event-loop tick, with the events
emitted since the last write (`owf_magics.engine.checkpoints`). This module turns them into rows:

- each step's output is serialised once: a ``step.execution.completed`` event whose
  ``result.output`` is that very object gets the same JSON text spliced in;
- event sequence numbers come from a counter the store keeps per run in memory (`SeqCounter`),
  read from the table once per run; a stale counter (another store object wrote to the run) shows
  as a primary-key conflict, and the store then reads it again and writes the batch again.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from owf_magics.runtime.records import StepRecord, dumps, fingerprint, ts

__all__ = ["STEP_INSERT", "SeqCounter", "event_rows", "step_row"]

STEP_INSERT = (
    "INSERT OR REPLACE INTO steps (run_id, step_key, step_id, status, output, error, attempts,"
    " backend, usage, tokens, cost_usd, input, input_hash, started_at, finished_at, written_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
EVENT_INSERT = "INSERT INTO events (run_id, seq, type, body) VALUES (?, ?, ?, ?)"

# a string no JSON value can hold unescaped: where a shared output goes in an event's text
_MARK = "\x00owf-output\x00"
_MARK_JSON = dumps(_MARK)

# plain JSON values (what nearly every output and event is) go through one encoder built once,
# with the same settings as `dumps`; anything else (datetimes, models...) through `dumps` itself
_PLAIN: Callable[[Any], str]
_C_ENCODER = getattr(json.encoder, "c_make_encoder", None)
if _C_ENCODER is not None:  # CPython's C encoder, made once (no check for cycles: a cycle falls back)

    def _fail(value: Any) -> Any:
        raise TypeError(type(value).__name__)

    _chunks = _C_ENCODER(None, _fail, json.encoder.encode_basestring, None, ":", ",", False, False, True)

    def _c_plain(value: Any) -> str:
        return "".join(_chunks(value, 0))

    _PLAIN = _c_plain
else:  # pragma: no cover (other interpreters)
    _PLAIN = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_CANONICAL = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode
_EMPTY = ("{}", fingerprint({}))


def encode(value: Any) -> str:
    """`dumps`, faster for plain JSON values."""
    if value is None:
        return "null"
    try:
        return _PLAIN(value)
    except (TypeError, ValueError, RecursionError):
        return dumps(value)


def _input(value: Any) -> tuple[str | None, str | None]:
    """The input column and its `fingerprint`, from one canonical serialisation when possible."""
    if value is None:
        return None, None
    if value == {} and type(value) is dict:
        return _EMPTY
    try:
        text = _CANONICAL(value)
    except (TypeError, ValueError, RecursionError):  # not plain JSON, or not JSON at all: UnstorableValue
        return dumps(value), fingerprint(value)
    return text, hashlib.sha256(text.encode()).hexdigest()


class SeqCounter:
    """The last event sequence number of each run this store wrote to, kept in memory."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: dict[str, int] = {}

    def take(self, conn: sqlite3.Connection, run_id: str, count: int) -> int:
        """Reserve `count` numbers for `run_id`; returns the first."""
        last = self.last.get(run_id)
        if last is None:
            row = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?", (run_id,)).fetchone()
            last = int(row[0])
        self.last[run_id] = last + count
        return last + 1

    def forget(self, run_id: str) -> None:
        self.last.pop(run_id, None)


def step_row(run_id: str, step: StepRecord, written: dict[int, tuple[Any, str]], now: float) -> tuple[Any, ...]:
    """The ``steps`` row of one record; its output's JSON is remembered in `written` by object id."""
    output = step.output
    text = encode(output)
    if output is not None and not isinstance(output, str | int | float | bool):
        written[id(output)] = (output, text)  # the object is kept alive, so its id stays its own
    usage = step.usage
    input_text, input_hash = _input(step.input)
    return (
        run_id,
        step.step_key,
        step.step_id,
        step.status,
        text,
        None if step.error is None else encode(step.error),
        step.attempts,
        step.backend,
        None if usage is None else encode(usage),
        int(usage.get("total_tokens") or 0) if usage else 0,
        float(usage.get("cost_usd") or 0.0) if usage else 0.0,
        input_text,
        step.input_hash or input_hash,
        ts(step.started_at),
        ts(step.finished_at),
        now,
    )


def _body(event: Mapping[str, Any], written: dict[int, tuple[Any, str]]) -> str:
    kind = event.get("type")
    if _FAST is not None and kind in _ENVELOPES:  # a step's own event: `_fast_body` when it can
        text = _fast_body(event, kind, written)
        if text is not None:
            return text
    result = event.get("result")
    if written and isinstance(result, dict):
        shared = written.get(id(result.get("output")))
        if shared is not None and shared[0] is result.get("output"):
            text = encode({**event, "result": {**result, "output": _MARK}})
            if text.count(_MARK_JSON) == 1:
                return text.replace(_MARK_JSON, shared[1])
    return encode(event)


# orjson, when installed (LangChain's langsmith brings it), writes the events the engine makes of
# every step ~10x faster than the json module's C encoder. Only those envelopes go through it (the
# engine's text, integers and finite durations, with a step's output spliced in as `encode` wrote
# it for the step row, or an output that is None, text, an integer or a boolean): their text is
# what `encode` writes. Anything else (errors, floats a handler returned, which may be NaN) and
# anything orjson refuses (huge integers, lone surrogates) goes through `encode`.
_FAST: Callable[[Any], bytes] | None
try:
    from orjson import dumps as _FAST
except ImportError:  # pragma: no cover (orjson not installed)
    _FAST = None
_ENVELOPES = frozenset({"step.started", "step.execution.completed"})
_STARTED_KEYS = frozenset(
    {"type", "timestamp", "run_id", "step_id", "step_type", "iteration", "attempt", "backend", "fragment", "event_id"}
)
_COMPLETED_KEYS = _STARTED_KEYS | {"execution", "result"}
_EXECUTION_KEYS = frozenset({"backend", "runtime", "adapter_version", "duration_ms", "token_usage"})
_SCALARS = (str, int, bool)


def _fast_body(event: Mapping[str, Any], kind: Any, written: dict[int, tuple[Any, str]]) -> str | None:
    """An engine envelope's JSON through orjson, or None when it holds anything else."""
    assert _FAST is not None
    if kind == "step.started":
        if not event.keys() <= _STARTED_KEYS:
            return None
        try:
            return _FAST(event).decode()
        except TypeError:
            return None
    if not event.keys() <= _COMPLETED_KEYS:
        return None
    result, execution = event.get("result"), event.get("execution")
    if type(result) is not dict or result.keys() != {"status", "output"}:
        return None
    if type(execution) is not dict or not execution.keys() <= _EXECUTION_KEYS:
        return None
    if type(execution.get("duration_ms")) is not float or execution["duration_ms"] != execution["duration_ms"]:
        return None
    output = result["output"]
    try:
        if output is None or type(output) in _SCALARS:
            return _FAST(event).decode()
        shared = written.get(id(output))
        if shared is None or shared[0] is not output:
            return None
        text = _FAST({**event, "result": {"status": result["status"], "output": _MARK}}).decode()
    except TypeError:
        return None
    if text.count(_MARK_JSON) != 1:
        return None
    return text.replace(_MARK_JSON, shared[1])


def event_rows(
    run_id: str, first: int, events: Sequence[Mapping[str, Any]], written: dict[int, tuple[Any, str]]
) -> list[tuple[Any, ...]]:
    """The ``events`` rows, numbered from `first`."""
    return [(run_id, first + i, str(e.get("type", "")), _body(e, written)) for i, e in enumerate(events)]


def write(
    conn: sqlite3.Connection,
    seqs: SeqCounter,
    run_id: str,
    steps: Sequence[StepRecord],
    events: Sequence[Mapping[str, Any]],
) -> list[int]:
    """Insert the rows (the caller holds the transaction); returns the events' sequence numbers."""
    written: dict[int, tuple[Any, str]] = {}
    if steps:
        now = time.time()
        rows = [step_row(run_id, s, written, now) for s in steps]
        if len(rows) == 1:
            conn.execute(STEP_INSERT, rows[0])
        else:
            conn.executemany(STEP_INSERT, rows)
    if not events:
        return []
    first = seqs.take(conn, run_id, len(events))
    conn.executemany(EVENT_INSERT, event_rows(run_id, first, events, written))
    return list(range(first, first + len(events)))
