"""Writing a group of step checkpoints and their events in one transaction.

The engine hands the store every step that finished in the same event-loop tick, with the events
emitted since the last write (`owf_magics.engine.checkpoints`). This module turns them into rows:

- each step's output is serialised once: a ``step.execution.completed`` event whose
  ``result.output`` is that very object gets the same JSON text spliced in;
- a step's own ``step.started`` and ``step.execution.completed`` events go into its row's trail
  when they have the engine's shape (`owf_magics.runs.trails`), the rest into ``events``;
- event sequence numbers come from a counter the store keeps per run in memory (`SeqCounter`),
  read from the tables once per run. A SQLite store checks ``PRAGMA data_version`` in each write
  transaction and reads the counters again when another connection wrote to the file; elsewhere a
  stale counter (another store object wrote to the run) shows as a primary-key conflict, and the
  store then reads it again and writes the batch again.
- a step row is written with a plain ``INSERT``: a row already there under the same key fails it,
  and the store writes the batch again with ``replace``, which first turns the old row's trail
  into ``events`` rows (nothing a run stored is lost when a resumed run writes a step again).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from owf_magics.engine.trace import StepPair
from owf_magics.runs import trails
from owf_magics.runtime.records import StepRecord, dumps, fingerprint, ts

__all__ = ["STEP_INSERT", "STEP_REPLACE", "SeqCounter", "event_rows", "step_row"]

_STEP_COLUMNS = (
    " INTO steps (run_id, step_key, step_id, status, output, error, attempts, backend, usage, tokens,"
    " cost_usd, input, input_hash, started_at, finished_at, written_at, seq, trail)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
STEP_INSERT = "INSERT" + _STEP_COLUMNS
STEP_REPLACE = "INSERT OR REPLACE" + _STEP_COLUMNS
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
    """The last event sequence number of each run this store wrote to, kept in memory.

    Args:
        trails: Write a step's own events into its row's trail (a SQLite store: it can tell, by
            ``PRAGMA data_version``, when another connection wrote, and count again).
    """

    __slots__ = ("held", "last", "suspect", "trails", "version")

    def __init__(self, *, trails: bool = False) -> None:
        self.last: dict[str, int] = {}
        self.trails = trails
        self.version: int | None = None
        #: the runs whose lease the store holds (set by the store): nobody else writes their steps
        self.held: Collection[str] = ()
        self.suspect: dict[str, int] = {}  # counts to check against the events table

    def check(self, conn: sqlite3.Connection) -> None:
        """In a write transaction: when another connection wrote meanwhile, no count is sure any
        more. Those of runs this store holds are checked against the ``events`` rows (another
        writer can only have appended events to them; an indexed look), the others read again."""
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self.version:
            held = self.held
            self.suspect = {run: n for run, n in self.last.items() if run in held}
            self.last.clear()
            self.version = version

    def take(self, conn: sqlite3.Connection, run_id: str, count: int) -> int:
        """Reserve `count` numbers for `run_id`; returns the first."""
        last = self.last.get(run_id)
        if last is None and self.suspect:
            known = self.suspect.pop(run_id, None)
            if known is not None:
                row = conn.execute(_LAST_AFTER, (run_id, known)).fetchone()
                last = max(known, int(row[0] or 0))
        if last is None:
            if self.trails:
                row = conn.execute(_LAST_OF_BOTH, (run_id, run_id)).fetchone()
            else:
                row = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?", (run_id,)).fetchone()
            last = int(row[0] or 0)
        self.last[run_id] = last + count
        return last + 1

    def forget(self, run_id: str) -> None:
        self.last.pop(run_id, None)
        self.suspect.pop(run_id, None)


_LAST_AFTER = "SELECT MAX(seq) FROM events WHERE run_id = ? AND seq > ?"
_LAST_OF_BOTH = (
    "SELECT MAX(m) FROM (SELECT MAX(seq) AS m FROM events WHERE run_id = ?"
    " UNION ALL SELECT MAX(seq) AS m FROM steps WHERE run_id = ?)"
)


def step_row(
    run_id: str,
    step: StepRecord,
    written: dict[int, tuple[Any, str]],
    now: float,
    kept: tuple[int, str] | tuple[None, None] = (None, None),
) -> tuple[Any, ...]:
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
        kept[0],
        kept[1],
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
_EXECUTION_KEYS = frozenset({"backend", "backend_source", "runtime", "adapter_version", "duration_ms", "token_usage"})
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


_NONE = (None, None)


def _fits(step: StepRecord, pair: StepPair) -> bool:
    """Whether `pair` holds the events of `step`'s row: its key, a success, its very output (or,
    with secrets, the redacted copy equal to the row's)."""
    return (
        pair.key == step.step_key
        and step.status == "success"
        and (step.output is pair.output or (pair.redacted and step.output == pair.output))
    )


def _trail_text(pair: StepPair, started_seq: int) -> str | None:
    """The trail's JSON, None when it holds something JSON cannot."""
    try:
        return trails.dumps(pair.trail(started_seq))
    except (TypeError, ValueError):
        return None


def _pairs(
    run_id: str, steps: Sequence[StepRecord], events: Sequence[Any], first: int, keep: bool
) -> tuple[list[Any], dict[int, tuple[int, str]]]:
    """`events` with each `StepPair` in the trail of its step's row when `keep` and the row is in
    this batch (its slots None), or as its events; and the rows' trails."""
    kept: dict[int, tuple[int, str]] = {}
    if not keep:
        rows = {}
    elif len(steps) == 1:
        rows = {steps[0].step_key: 0}
    else:
        rows = {s.step_key: n for n, s in enumerate(steps)}  # a key twice: its last row
    flat: list[Any] = []
    for item in events:
        if type(item) is not StepPair:
            flat.append(item)
            continue
        n = rows.get(item.key, -1)
        if n >= 0 and n not in kept and _fits(steps[n], item):
            text = _trail_text(item, first + len(flat))
            if text is not None:
                flat.extend((None, None) if item.started_no is not None else (None,))
                kept[n] = (first + len(flat) - 1, text)
                continue
        flat.extend(item.events())
    return flat, kept


def _one(conn: sqlite3.Connection, seqs: SeqCounter, run_id: str, step: StepRecord, pair: Any) -> list[int] | None:
    """`write` for one step and its `StepPair` in its trail; None when it cannot be."""
    if type(pair) is not StepPair or not _fits(step, pair):
        return None
    seqs.check(conn)
    count = pair.size
    first = seqs.take(conn, run_id, count)
    text = _trail_text(pair, first)
    if text is None:
        seqs.last[run_id] = first - 1  # not taken after all
        return None
    conn.execute(STEP_INSERT, step_row(run_id, step, {}, time.time(), (first + count - 1, text)))
    return [first, first + 1] if count == 2 else [first]


def write(
    conn: sqlite3.Connection,
    seqs: SeqCounter,
    run_id: str,
    steps: Sequence[StepRecord],
    events: Sequence[Any],
    *,
    replace: bool = False,
) -> list[int]:
    """Insert the rows (the caller holds the transaction); returns the events' sequence numbers.

    `events` may hold `StepPair`s (from a run's log, `owf_magics.engine.trace.drain`), each
    standing for its step's events: a trail when it can be, its events otherwise.

    Raises:
        sqlite3.IntegrityError: A step row is there already under the same key (without
            `replace`), or the counter was stale: write the batch again with ``replace=True``.
    """
    if len(events) == 1 and len(steps) == 1 and seqs.trails and not replace:  # a chain's step
        done = _one(conn, seqs, run_id, steps[0], events[0])
        if done is not None:
            return done
    written: dict[int, tuple[Any, str]] = {}
    count = 0
    paired = False
    for item in events:
        if type(item) is StepPair:
            paired = True
            count += item.size
        else:
            count += 1
    first = 0
    if count:
        if seqs.trails:
            seqs.check(conn)
        first = seqs.take(conn, run_id, count)
    held: set[int] = set()
    flat: Sequence[Any] = events
    kept: dict[int, tuple[int, str]] = {}
    if paired:
        flat, kept = _pairs(run_id, steps, events, first, seqs.trails)
    elif seqs.trails and steps and events:
        kept, held = trails.match(run_id, steps, events, first)
    if steps:
        if replace and seqs.trails:
            trails.materialize(conn, run_id, [s.step_key for s in steps], encode)
        now = time.time()
        rows = [step_row(run_id, s, written, now, kept.get(n, _NONE)) for n, s in enumerate(steps)]
        sql = STEP_INSERT if seqs.trails and not replace else STEP_REPLACE  # no trails: nothing to lose
        if len(rows) == 1:
            conn.execute(sql, rows[0])
        else:
            conn.executemany(sql, rows)
    if not count:
        return []
    if paired or held:
        rest = [
            (run_id, first + i, str(e.get("type", "")), _body(e, written))
            for i, e in enumerate(flat)
            if e is not None and i not in held
        ]
        if rest:
            conn.executemany(EVENT_INSERT, rest)
    else:
        conn.executemany(EVENT_INSERT, event_rows(run_id, first, events, written))
    return list(range(first, first + count))
