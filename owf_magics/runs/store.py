"""The run store: where durable runs keep their state, so a run can stop, resume and be replayed.

`RunStore` is the small interface the executor talks to; `SQLiteRunStore` implements it with the
standard library's sqlite3 (WAL, one file shared safely by threads and processes). A Postgres store
can implement the same protocol later. `open_store(state)` picks the store for ``OpenWorkflow(state=)``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from owf_magics.errors import OWFError
from owf_magics.runs.labels import LABELS_SCHEMA, RunLabels
from owf_magics.runtime.records import (
    DEFAULT_STATE_PATH,
    FINISHED_STATUSES,
    RUN_STATUSES,
    RUNS_COLUMNS,
    PendingKind,
    PendingRequest,
    RunRecord,
    RunStatus,
    RunStore,
    StepRecord,
    StoredEvent,
    dt,
    dumps,
    fingerprint,
    input_differences,
    loads,
    scrub,
    step_key,
    to_json,
    ts,
    unknown_run,
)

if TYPE_CHECKING:
    import pandas as pd

    from owf_magics.runtime.results import RunResult


#: The schema version written to ``PRAGMA user_version``; bumped with every schema change.
SCHEMA_VERSION = 2

__all__ = [
    "DEFAULT_STATE_PATH",
    "PendingKind",
    "PendingRequest",
    "RunRecord",
    "RunStatus",
    "RunStore",
    "SQLiteRunStore",
    "StepRecord",
    "StoredEvent",
    "input_differences",
    "open_store",
    "run_result",
    "runs_frame",
    "scrub",
    "step_key",
    "to_json",
]

# ------------------------------------------------------------------------------------------------
# SQLite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id           TEXT PRIMARY KEY,
    workflow         TEXT NOT NULL,
    workflow_version TEXT,
    status           TEXT NOT NULL,
    inputs           TEXT NOT NULL,
    outputs          TEXT,
    error            TEXT,
    started_at       REAL NOT NULL,
    finished_at      REAL,
    manifest_source  TEXT,
    manifest_ids     TEXT,
    metadata         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
CREATE TABLE IF NOT EXISTS steps (
    run_id      TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    step_key    TEXT NOT NULL,
    step_id     TEXT NOT NULL,
    status      TEXT NOT NULL,
    output      TEXT,
    error       TEXT,
    attempts    INTEGER NOT NULL,
    backend     TEXT,
    usage       TEXT,
    tokens      INTEGER NOT NULL DEFAULT 0,
    cost_usd    REAL NOT NULL DEFAULT 0,
    input       TEXT,
    input_hash  TEXT,
    started_at  REAL,
    finished_at REAL,
    written_at  REAL NOT NULL,
    PRIMARY KEY (run_id, step_key)
);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    seq    INTEGER NOT NULL,
    type   TEXT NOT NULL,
    body   TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS pending (
    request_id  TEXT PRIMARY KEY,
    run_id      TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    step_id     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  REAL NOT NULL,
    resolved_at REAL,
    value       TEXT
);
CREATE INDEX IF NOT EXISTS pending_run ON pending (run_id);
"""


class SQLiteRunStore(RunLabels):
    """A `RunStore` in one SQLite file (or in memory).

    One connection per store object, guarded by a lock, so any thread may call it; WAL mode and a
    busy timeout let several processes share the file (SQLite serialises their writes). Write
    transactions start with ``BEGIN IMMEDIATE`` so two writers never deadlock on a lock upgrade.
    ``synchronous=NORMAL``: a committed checkpoint survives the process being killed (not a power
    cut, which would need ``FULL`` at about twice the cost per step).

    Args:
        path: The database file, or ``":memory:"`` for a store that lives as long as this object.
        timeout: Seconds to wait for another process's write lock before failing.
    """

    def __init__(self, path: str | os.PathLike[str] = ":memory:", *, timeout: float = 30.0) -> None:
        self.path = str(path)
        self.timeout = timeout
        self._lock = threading.RLock()
        self._pid = os.getpid()
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = self._connect()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        if self.path != ":memory:":
            # switching to WAL needs a moment alone with the file, and SQLite does not wait for it
            # through the busy timeout: when another process holds it, try again until the timeout
            deadline = time.monotonic() + self.timeout
            while True:
                try:
                    conn.execute("PRAGMA journal_mode = WAL")
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            conn.close()
            raise OWFError(
                f"the run store {self.path} has schema version {version}, newer than this owf-magics "
                f"understands ({SCHEMA_VERSION})",
                code="UNAVAILABLE",
                details={"path": self.path, "schema_version": version, "suggestion": "upgrade owf-magics"},
            )
        if version < SCHEMA_VERSION:
            # two processes opening a new file at once: the second waits here, then finds the
            # tables there (every statement is IF NOT EXISTS)
            conn.execute("BEGIN IMMEDIATE")
            for statement in (_SCHEMA + LABELS_SCHEMA).split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        return conn

    # -- plumbing -------------------------------------------------------------------------------

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if os.getpid() != self._pid:  # a forked child: never share the parent's connection
                self._pid = os.getpid()
                self._conn = self._connect()
            yield self._conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._db() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @staticmethod
    @contextmanager
    def _known(run_id: str) -> Iterator[None]:
        """Turn the foreign-key failure of a write for a run that does not exist into our error."""
        try:
            yield
        except sqlite3.IntegrityError as exc:
            if "FOREIGN KEY" not in str(exc).upper():
                raise
            raise unknown_run(run_id) from exc

    @property
    def schema_version(self) -> int:
        """The schema version of the open database."""
        with self._db() as conn:
            version: int = conn.execute("PRAGMA user_version").fetchone()[0]
            return version

    def close(self) -> None:
        """Close the connection (the store cannot be used afterwards)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SQLiteRunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteRunStore({self.path!r})"

    # -- runs -----------------------------------------------------------------------------------

    def create_run(
        self,
        run_id: str,
        workflow: str,
        *,
        workflow_version: str | None = None,
        inputs: Mapping[str, Any] | None = None,
        status: str = "running",
        manifest_source: str | None = None,
        manifest_ids: Any = None,
        metadata: Mapping[str, Any] | None = None,
        started_at: datetime | None = None,
    ) -> RunRecord:
        """Record a new run.

        Args:
            run_id: Unique id (fails with ``VALIDATION`` if it exists).
            workflow: The workflow's name.
            workflow_version: Its version.
            inputs: The inputs, already scrubbed of secrets (see `scrub`).
            status: Usually ``running``.
            manifest_source: The manifests' text, so another process can rebuild the workflow.
            manifest_ids: What to load to resume (paths, references), free-form JSON.
            metadata: Free-form JSON.
            started_at: Defaults to now.
        """
        _check_status(status)
        started = ts(started_at) or time.time()
        try:
            with self._tx() as conn:
                conn.execute(
                    "INSERT INTO runs (run_id, workflow, workflow_version, status, inputs, started_at,"
                    " manifest_source, manifest_ids, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run_id,
                        workflow,
                        workflow_version,
                        status,
                        dumps(dict(inputs or {})),
                        started,
                        manifest_source,
                        None if manifest_ids is None else dumps(manifest_ids),
                        dumps(dict(metadata or {})),
                    ),
                )
        except sqlite3.IntegrityError as exc:
            raise OWFError(
                f"a run '{run_id}' is already in the run store", code="VALIDATION", details={"run_id": run_id}
            ) from exc
        record = self.get_run(run_id)
        assert record is not None
        return record

    def get_run(self, run_id: str) -> RunRecord | None:
        """The stored run, or None."""
        with self._db() as conn:
            cur = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,))
            row = cur.fetchone()
            names = [d[0] for d in cur.description]
        return None if row is None else _run_record(dict(zip(names, row, strict=True)))

    def list_runs(
        self, *, workflow: str | None = None, status: str | None = None, limit: int | None = None
    ) -> list[RunRecord]:
        """Stored runs, oldest first (by start time, then id), optionally filtered."""
        sql = "SELECT * FROM runs"
        where, args = [], []
        if workflow is not None:
            where.append("workflow = ?")
            args.append(workflow)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at, run_id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._db() as conn:
            cur = conn.execute(sql, args)
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        return [_run_record(dict(zip(names, r, strict=True))) for r in rows]

    def set_status(self, run_id: str, status: str, *, expected: str | Sequence[str] | None = None) -> bool:
        """Change a run's status; with `expected`, only if it currently has (one of) that status.

        The compare-and-set is atomic across processes, so two processes resuming one waiting run
        cannot both win: ``set_status(rid, "running", expected="waiting_approval")``.

        Returns:
            Whether the status was changed.

        Raises:
            OWFError: ``VALIDATION`` for an unknown run or status.
        """
        _check_status(status)
        with self._tx() as conn:
            row = conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise unknown_run(run_id)
            allowed = (expected,) if isinstance(expected, str) else expected
            if allowed is not None and row[0] not in allowed:
                return False
            finished = time.time() if status in FINISHED_STATUSES else None
            conn.execute(
                "UPDATE runs SET status = ?, finished_at = ? WHERE run_id = ?",
                (status, finished, run_id),
            )
        return True

    def finish_run(
        self,
        run_id: str,
        status: str,
        *,
        outputs: Mapping[str, Any] | None = None,
        error: Mapping[str, Any] | None = None,
        finished_at: datetime | None = None,
    ) -> None:
        """Record a run's end: status (``completed``, ``failed``, ``canceled``, or
        ``waiting_approval`` for a run that stops to wait), outputs and error."""
        _check_status(status)
        finished = (ts(finished_at) or time.time()) if status in FINISHED_STATUSES else None
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE runs SET status = ?, outputs = ?, error = ?, finished_at = ? WHERE run_id = ?",
                (
                    status,
                    None if outputs is None else dumps(dict(outputs)),
                    None if error is None else dumps(dict(error)),
                    finished,
                    run_id,
                ),
            )
            if cur.rowcount == 0:
                raise unknown_run(run_id)

    # -- steps and events -----------------------------------------------------------------------

    def checkpoint(self, run_id: str, step: StepRecord, events: Sequence[Mapping[str, Any]] = ()) -> list[int]:
        """Store one step's record (replacing an earlier one under the same key) and its events,
        in one transaction.

        Returns:
            The sequence numbers given to `events`.
        """
        input_hash = step.input_hash or (fingerprint(step.input) if step.input is not None else None)
        usage = step.usage or {}
        with self._known(run_id), self._tx() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO steps (run_id, step_key, step_id, status, output, error, attempts,"
                " backend, usage, tokens, cost_usd, input, input_hash, started_at, finished_at, written_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    step.step_key,
                    step.step_id,
                    step.status,
                    dumps(step.output),
                    None if step.error is None else dumps(step.error),
                    step.attempts,
                    step.backend,
                    None if step.usage is None else dumps(step.usage),
                    int(usage.get("total_tokens") or 0),
                    float(usage.get("cost_usd") or 0.0),
                    None if step.input is None else dumps(step.input),
                    input_hash,
                    ts(step.started_at),
                    ts(step.finished_at),
                    time.time(),
                ),
            )
            return _append(conn, run_id, events)

    def get_steps(self, run_id: str) -> dict[str, StepRecord]:
        """Every checkpointed step of a run by step key, in the order they were first written."""
        with self._db() as conn:
            rows = conn.execute(
                "SELECT step_key, step_id, status, output, error, attempts, backend, usage, input, input_hash,"
                " started_at, finished_at FROM steps WHERE run_id = ? ORDER BY rowid",
                (run_id,),
            ).fetchall()
        return {
            r[0]: StepRecord(
                step_key=r[0],
                step_id=r[1],
                status=r[2],
                output=loads(r[3]),
                error=loads(r[4]),
                attempts=r[5],
                backend=r[6],
                usage=loads(r[7]),
                input=loads(r[8]),
                input_hash=r[9],
                started_at=dt(r[10]),
                finished_at=dt(r[11]),
            )
            for r in rows
        }

    def append_events(self, run_id: str, events: Sequence[Mapping[str, Any]]) -> list[int]:
        """Append events to a run, in order, in one transaction; returns their sequence numbers."""
        if not events:
            return []
        with self._known(run_id), self._tx() as conn:
            return _append(conn, run_id, events)

    def get_events(self, run_id: str, *, after: int = 0) -> list[StoredEvent]:
        """A run's events in sequence order (those with ``seq > after``)."""
        with self._db() as conn:
            rows = conn.execute(
                "SELECT seq, type, body FROM events WHERE run_id = ? AND seq > ? ORDER BY seq", (run_id, after)
            ).fetchall()
        return [StoredEvent(run_id, r[0], r[1], json.loads(r[2])) for r in rows]

    # -- pending requests -----------------------------------------------------------------------

    def add_pending(
        self,
        run_id: str,
        step_id: str,
        kind: str,
        payload: Mapping[str, Any] | None = None,
        *,
        request_id: str | None = None,
    ) -> PendingRequest:
        """Record what a run waits for. With a `request_id` already stored, returns that request
        unchanged (so a step that asks again after a restart does not ask twice)."""
        rid = request_id or f"req_{uuid.uuid4().hex[:12]}"
        with self._known(run_id), self._tx() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO pending (request_id, run_id, step_id, kind, payload, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (rid, run_id, step_id, kind, dumps(dict(payload or {})), time.time()),
            )
            row = conn.execute(_PENDING_SELECT + " WHERE request_id = ?", (rid,)).fetchone()
        return _pending(row)

    def get_pending(self, run_id: str, *, include_resolved: bool = False) -> list[PendingRequest]:
        """A run's requests in the order they were made (open ones only, by default)."""
        sql = _PENDING_SELECT + " WHERE run_id = ?"
        if not include_resolved:
            sql += " AND resolved_at IS NULL"
        with self._db() as conn:
            rows = conn.execute(sql + " ORDER BY created_at, rowid", (run_id,)).fetchall()
        return [_pending(r) for r in rows]

    def resolve_pending(self, request_id: str, value: Any) -> PendingRequest:
        """Answer a request. Answering again with the same value returns it unchanged.

        Raises:
            OWFError: ``VALIDATION`` when the request is unknown, or was already answered with a
                different value (two people disagreeing must not both win silently).
        """
        with self._tx() as conn:
            row = conn.execute(_PENDING_SELECT + " WHERE request_id = ?", (request_id,)).fetchone()
            if row is None:
                raise OWFError(
                    f"no pending request '{request_id}'", code="VALIDATION", details={"request_id": request_id}
                )
            current = _pending(row)
            if current.resolved:
                if fingerprint(current.value) == fingerprint(value):
                    return current
                raise OWFError(
                    f"request '{request_id}' was already answered with {current.value!r}",
                    code="VALIDATION",
                    details={"request_id": request_id, "value": current.value},
                )
            conn.execute(
                "UPDATE pending SET resolved_at = ?, value = ? WHERE request_id = ?",
                (time.time(), dumps(value), request_id),
            )
            row = conn.execute(_PENDING_SELECT + " WHERE request_id = ?", (request_id,)).fetchone()
        return _pending(row)

    # -- maintenance ----------------------------------------------------------------------------

    def prune(self, older_than: timedelta | float) -> int:
        """Delete finished runs (completed, failed, canceled) that finished more than `older_than`
        ago (a timedelta or seconds), with their steps, events and requests. Runs still running or
        waiting are kept whatever their age.

        Returns:
            How many runs were deleted.
        """
        seconds = older_than.total_seconds() if isinstance(older_than, timedelta) else float(older_than)
        cutoff = time.time() - seconds
        marks = ",".join("?" * len(FINISHED_STATUSES))
        with self._tx() as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    f"SELECT run_id FROM runs WHERE status IN ({marks}) AND finished_at IS NOT NULL"
                    " AND finished_at < ?",
                    (*FINISHED_STATUSES, cutoff),
                )
            ]
            for table in ("events", "steps", "pending", "run_labels", "runs"):
                conn.executemany(f"DELETE FROM {table} WHERE run_id = ?", [(i,) for i in ids])
        return len(ids)

    def summaries(self) -> list[dict[str, Any]]:
        """One row per run with the columns of `RUNS_COLUMNS` (what `runs_frame` shows)."""
        with self._db() as conn:
            rows = conn.execute(
                "SELECT r.run_id, r.workflow, r.workflow_version, r.status, r.started_at, r.finished_at,"
                " r.error,"
                " (SELECT COUNT(*) FROM steps s WHERE s.run_id = r.run_id),"
                " (SELECT COALESCE(SUM(tokens), 0) FROM steps s WHERE s.run_id = r.run_id),"
                " (SELECT COALESCE(SUM(cost_usd), 0) FROM steps s WHERE s.run_id = r.run_id),"
                " (SELECT COUNT(*) FROM pending p WHERE p.run_id = r.run_id AND p.resolved_at IS NULL)"
                " FROM runs r ORDER BY r.started_at, r.run_id"
            ).fetchall()
        out = []
        for rid, wf, ver, status, started, finished, error, steps, tokens, cost, pending in rows:
            err = loads(error) or {}
            out.append(
                {
                    "run_id": rid,
                    "workflow": wf,
                    "workflow_version": ver,
                    "status": status,
                    "started_at": dt(started),
                    "finished_at": dt(finished),
                    "duration_ms": None if finished is None else round((finished - started) * 1000, 3),
                    "steps": steps,
                    "tokens": tokens,
                    "cost_usd": round(cost, 8),
                    "pending": pending,
                    "error_code": err.get("code"),
                }
            )
        return out


_PENDING_SELECT = "SELECT request_id, run_id, step_id, kind, payload, created_at, resolved_at, value FROM pending"


def _pending(row: Sequence[Any]) -> PendingRequest:
    created = dt(row[5])
    assert created is not None
    return PendingRequest(
        id=row[0],
        run_id=row[1],
        step_id=row[2],
        kind=row[3],
        payload=json.loads(row[4]),
        created_at=created,
        resolved_at=dt(row[6]),
        value=loads(row[7]),
    )


def _append(conn: sqlite3.Connection, run_id: str, events: Sequence[Mapping[str, Any]]) -> list[int]:
    if not events:
        return []
    row = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?", (run_id,)).fetchone()
    first = int(row[0]) + 1
    seqs = list(range(first, first + len(events)))
    conn.executemany(
        "INSERT INTO events (run_id, seq, type, body) VALUES (?, ?, ?, ?)",
        [(run_id, s, str(e.get("type", "")), dumps(dict(e))) for s, e in zip(seqs, events, strict=True)],
    )
    return seqs


def _run_record(row: dict[str, Any]) -> RunRecord:
    started = dt(row["started_at"])
    assert started is not None
    return RunRecord(
        run_id=row["run_id"],
        workflow=row["workflow"],
        workflow_version=row["workflow_version"],
        status=row["status"],
        inputs=json.loads(row["inputs"]),
        started_at=started,
        finished_at=dt(row["finished_at"]),
        outputs=loads(row["outputs"]),
        error=loads(row["error"]),
        manifest_source=row["manifest_source"],
        manifest_ids=loads(row["manifest_ids"]),
        metadata=json.loads(row["metadata"]),
    )


def _check_status(status: str) -> None:
    if status not in RUN_STATUSES:
        raise OWFError(
            f"run status must be one of {', '.join(RUN_STATUSES)}, got {status!r}",
            code="VALIDATION",
            details={"status": status},
        )


# ------------------------------------------------------------------------------------------------
# entry points


def open_store(state: str | os.PathLike[str] | RunStore | None = None) -> RunStore:
    """The run store for ``OpenWorkflow(state=...)``.

    Args:
        state: None → ``.owf/runs.db`` under the current directory (created if needed);
            ``":memory:"`` → an in-memory store (nothing on disk); a path → that SQLite file;
            a `RunStore` → itself.
    """
    if state is None:
        return SQLiteRunStore(Path.cwd() / DEFAULT_STATE_PATH)
    if isinstance(state, str | os.PathLike):
        return SQLiteRunStore(state)
    if isinstance(state, RunStore):
        return state
    raise TypeError(f"state must be a path, ':memory:', None or a RunStore, not {type(state).__name__}")


def run_result(store: RunStore, run_id: str) -> RunResult | None:
    """``ow.run(run_id)``: a stored run as a `RunResult` (None when the store has no such run).

    ``steps`` holds one `StepResult` per step id (for steps in loops, the last execution written);
    ``events`` are the stored events in sequence order; ``pending`` the open requests; ``error``
    the run's error. The trace is rebuilt from the stored ``step.execution.completed`` events (one
    row per execution, in the order they happened; ``backend_source`` is not stored) and the usage
    from the step records (one row per step execution that called a model; provider and model are
    not stored).
    """
    from owf_magics.runtime.results import RunResult, StepError, StepResult

    record = store.get_run(run_id)
    if record is None:
        return None
    steps: dict[str, StepResult] = {}
    for rec in store.get_steps(run_id).values():
        err = rec.error
        steps[rec.step_id] = StepResult(
            rec.step_id,
            rec.status,
            rec.output,
            StepError(
                str(err.get("code", "INTERNAL_ERROR")), str(err.get("message", "")), dict(err.get("details") or {})
            )
            if err
            else None,
            rec.attempts,
            rec.backend or "native",
        )
    error = record.error
    events = [e.event for e in store.get_events(run_id)]
    return RunResult(
        record.run_id,
        record.workflow,
        record.status,
        dict(record.outputs or {}),
        steps,
        events,
        _trace_rows(run_id, events),
        [_usage_row(run_id, rec) for rec in store.get_steps(run_id).values() if rec.usage],
        error=StepError(
            str(error.get("code", "INTERNAL_ERROR")), str(error.get("message", "")), dict(error.get("details") or {})
        )
        if error
        else None,
        pending=list(store.get_pending(run_id)),
        duration_ms=record.duration_ms or 0.0,
    )


def _trace_rows(run_id: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for event in events:
        if event.get("type") != "step.execution.completed":
            continue
        execution = event.get("execution") or {}
        result = event.get("result") or {}
        usage = execution.get("token_usage") or {}
        rows.append(
            {
                "run_id": run_id,
                "step_id": event.get("step_id"),
                "type": event.get("step_type"),
                "backend": execution.get("backend"),
                "backend_source": "",
                "status": "success" if result.get("status") == "success" else "failed",
                "attempt": event.get("attempt", 1),
                "iteration": event.get("iteration", ""),
                "parent": "",
                "started_at": event.get("timestamp"),
                "duration_ms": execution.get("duration_ms", 0.0),
                "prompt_tokens": int(usage.get("prompt_tokens") or 0),
                "completion_tokens": int(usage.get("completion_tokens") or 0),
                "total_tokens": int(usage.get("total_tokens") or 0),
                "cost_usd": float("nan") if usage else 0.0,  # not in the event: unknown, not 0
                "error_code": (result.get("error") or {}).get("code"),
            }
        )
    return rows


def _usage_row(run_id: str, rec: StepRecord) -> dict[str, Any]:
    usage = rec.usage or {}
    prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return {
        "run_id": run_id,
        "step_id": rec.step_id,
        "iteration": rec.step_key[len(rec.step_id) :].strip("[]"),
        "provider": "",
        "model": "",
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": int(usage.get("total_tokens") or prompt + completion),
        "estimated": bool(usage.get("estimated")),
        "cost_usd": float(usage.get("cost_usd", float("nan"))),
    }


def runs_frame(store: SQLiteRunStore | RunStore) -> pd.DataFrame:
    """``ow.runs()``: a pandas DataFrame of stored runs with the columns of `RUNS_COLUMNS`.

    Works with any store that has ``summaries()``; for other `RunStore`s the step, token and
    pending counts are computed from ``get_steps``/``get_pending``.
    """
    import pandas as pd

    summaries = getattr(store, "summaries", None)
    if callable(summaries):
        rows: list[dict[str, Any]] = summaries()
    else:
        rows = []
        for rec in store.list_runs():
            steps = store.get_steps(rec.run_id).values()
            rows.append(
                {
                    "run_id": rec.run_id,
                    "workflow": rec.workflow,
                    "workflow_version": rec.workflow_version,
                    "status": rec.status,
                    "started_at": rec.started_at,
                    "finished_at": rec.finished_at,
                    "duration_ms": rec.duration_ms,
                    "steps": len(steps),
                    "tokens": sum(s.total_tokens for s in steps),
                    "cost_usd": round(sum(s.cost_usd for s in steps), 8),
                    "pending": len(store.get_pending(rec.run_id)),
                    "error_code": (rec.error or {}).get("code"),
                }
            )
    return pd.DataFrame(rows, columns=list(RUNS_COLUMNS))
