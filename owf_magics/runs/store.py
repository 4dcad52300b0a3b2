"""The run store: where durable runs keep their state, so a run can stop, resume and be replayed.

`RunStore` (`owf_magics.runtime.records`) is the interface the engine talks to; `SQLiteRunStore`
implements it with the standard library's sqlite3 (WAL, one file shared safely by threads and
processes). The schema and its migrations are in `owf_magics.runs.schema`, the run leases in
`owf_magics.runs.leases`, the group-committed checkpoint rows in `owf_magics.runs.checkpoint_batch`,
and reading runs back (`run_result`, `runs_frame`) in `owf_magics.runs.readback`. A PostgreSQL
store can implement the same protocol with the same SQL. `open_store(state)` picks the store for
``OpenWorkflow(state=)``.
"""

from __future__ import annotations

import importlib
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from owf_magics.errors import OWFError
from owf_magics.runs import checkpoint_batch, trails
from owf_magics.runs.checkpoint_batch import SeqCounter
from owf_magics.runs.definitions import PublishedDefinitions
from owf_magics.runs.labels import RunLabels
from owf_magics.runs.leases import (
    CLAIM_SQL,
    DEFAULT_LEASE_SECONDS,
    RELEASE_SQL,
    LeaseKeeper,
    lease_refused,
    new_owner,
)
from owf_magics.runs.readback import run_result, runs_frame
from owf_magics.runs.schema import SCHEMA_VERSION, connect, manifest_hash
from owf_magics.runs.sessions import RunSessions
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

__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "DEFAULT_STATE_PATH",
    "RUNS_COLUMNS",
    "SCHEMA_VERSION",
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

_RUN_SELECT = (
    "SELECT r.run_id, r.workflow, r.workflow_version, r.status, r.inputs, r.started_at, r.finished_at,"
    " r.outputs, r.error, COALESCE(m.source, r.manifest_source), r.manifest_ids, r.metadata,"
    " r.lease_owner, r.lease_until FROM runs r LEFT JOIN manifests m ON m.hash = r.manifest_hash"
)


class SQLiteRunStore(RunLabels, RunSessions, PublishedDefinitions):
    """A `RunStore` in one SQLite file (or in memory).

    One connection per store object, guarded by a lock, so any thread may call it; WAL mode and a
    busy timeout let several processes share the file (SQLite serialises their writes). Write
    transactions start with ``BEGIN IMMEDIATE`` so two writers never deadlock on a lock upgrade.
    ``synchronous=NORMAL``: a committed checkpoint survives the process being killed (not a power
    cut, which would need ``FULL`` at about twice the cost per step).

    A run this store creates or claims holds a lease (`owf_magics.runs.leases`) under this store's
    `owner` (``host:pid:token``) until it finishes or waits; a background thread renews it every
    ``lease_seconds / 3`` seconds.

    Args:
        path: The database file, or ``":memory:"`` for a store that lives as long as this object.
        timeout: Seconds to wait for another process's write lock before failing.
        lease_seconds: How long a run's lease lasts without renewal (default 30 s): after a
            process dies, its running runs become resumable this long after its last renewal.
    """

    #: `checkpoint_many` takes `owf_magics.engine.trace.StepPair`s among its events.
    takes_step_pairs = True

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        timeout: float = 30.0,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        self.path = str(path)
        self.timeout = timeout
        self.lease_seconds = float(lease_seconds)
        self._lock = threading.RLock()
        self._pid = os.getpid()
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = connect(self.path, timeout)
        self._seqs = SeqCounter(trails=True)
        self._manifests: set[str] = set()  # hashes known to be stored
        self._lost: set[str] = set()  # runs whose lease another owner took
        self._new_owner()

    def _new_owner(self) -> None:
        self.owner = new_owner()
        self._keeper = LeaseKeeper(self._keeper_connection, self.owner, self.lease_seconds, self._lose)
        self._seqs.held = self._keeper.held  # the event counts nobody else can make stale

    def _keeper_connection(self) -> tuple[sqlite3.Connection, Any]:
        if self.path == ":memory:":
            return self._conn, self._lock
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        return conn, None

    def _lose(self, run_ids: set[str]) -> None:
        with self._lock:
            self._lost |= run_ids

    # -- plumbing -------------------------------------------------------------------------------

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if os.getpid() != self._pid:  # a forked child: never share the parent's connection
                self._pid = os.getpid()
                self._conn = connect(self.path, self.timeout)
                self._seqs = SeqCounter(trails=True)
                self._new_owner()  # the parent's leases stay the parent's
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

    def _owned(self, run_id: str) -> None:
        """Refuse writes for a run whose lease another process took over."""
        if run_id in self._lost:
            raise OWFError(
                f"run '{run_id}' lost its lease to another process (it was not renewed in time):"
                " this process no longer writes to it",
                code="UNAVAILABLE",
                details={"run_id": run_id, "lease_seconds": self.lease_seconds},
            )

    def _fence(self, conn: sqlite3.Connection, run_id: str) -> None:
        """Inside a write transaction, when renewals are late: is a run held here still ours?"""
        if run_id not in self._keeper.held:
            return
        row = conn.execute("SELECT lease_owner FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is not None and row[0] != self.owner:
            self._keeper.drop(run_id)
            self._lost.add(run_id)
            self._owned(run_id)

    def _release(self, conn: sqlite3.Connection, run_id: str) -> None:
        self._keeper.drop(run_id)  # first, so a renewal never mistakes the release for a loss
        conn.execute(RELEASE_SQL, (run_id, self.owner))

    def _clock(self, conn: sqlite3.Connection) -> float:
        """The time leases are compared with (a PostgreSQL store asks the database)."""
        return time.time()

    @property
    def schema_version(self) -> int:
        """The schema version of the open database."""
        with self._db() as conn:
            version: int = conn.execute("PRAGMA user_version").fetchone()[0]
            return version

    def close(self) -> None:
        """Close the connection (the store cannot be used afterwards). Leases it holds are no
        longer renewed: they expire after ``lease_seconds``."""
        self._keeper.stop()
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
        """Record a new run; a ``running`` one holds this store's lease from the start.

        Args:
            run_id: Unique id (fails with ``VALIDATION`` if it exists).
            workflow: The workflow's name.
            workflow_version: Its version.
            inputs: The inputs, already scrubbed of secrets (see `scrub`).
            status: Usually ``running``.
            manifest_source: The manifests' text, so another process can rebuild the workflow
                (stored once per content hash, however many runs share it).
            manifest_ids: What to load to resume (paths, references), free-form JSON.
            metadata: Free-form JSON.
            started_at: Defaults to now.
        """
        _check_status(status)
        started = ts(started_at) or time.time()
        key = None if manifest_source is None else manifest_hash(manifest_source)
        leased = status == "running"
        try:
            with self._tx() as conn:
                if key is not None and key not in self._manifests:
                    conn.execute("INSERT OR IGNORE INTO manifests (hash, source) VALUES (?, ?)", (key, manifest_source))
                conn.execute(
                    "INSERT INTO runs (run_id, workflow, workflow_version, status, inputs, started_at,"
                    " manifest_hash, manifest_ids, metadata, lease_owner, lease_until)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run_id,
                        workflow,
                        workflow_version,
                        status,
                        dumps(dict(inputs or {})),
                        started,
                        key,
                        None if manifest_ids is None else dumps(manifest_ids),
                        dumps(dict(metadata or {})),
                        self.owner if leased else None,
                        time.time() + self.lease_seconds if leased else None,
                    ),
                )
        except sqlite3.IntegrityError as exc:
            raise OWFError(
                f"a run '{run_id}' is already in the run store", code="VALIDATION", details={"run_id": run_id}
            ) from exc
        if key is not None:
            self._manifests.add(key)
        self._seqs.last[run_id] = 0  # a new run has no events yet
        if leased:
            self._keeper.hold(run_id)
        return RunRecord(  # what get_run would read back, without reading it
            run_id=run_id,
            workflow=workflow,
            workflow_version=workflow_version,
            status=status,
            inputs=json.loads(dumps(dict(inputs or {}))),
            started_at=datetime.fromtimestamp(started, UTC),
            manifest_source=manifest_source,
            manifest_ids=loads(None if manifest_ids is None else dumps(manifest_ids)),
            metadata=json.loads(dumps(dict(metadata or {}))),
            lease_owner=self.owner if leased else None,
        )

    def get_run(self, run_id: str) -> RunRecord | None:
        """The stored run, or None."""
        with self._db() as conn:
            row = conn.execute(_RUN_SELECT + " WHERE r.run_id = ?", (run_id,)).fetchone()
        return None if row is None else _run_record(row)

    def list_runs(
        self, *, workflow: str | None = None, status: str | None = None, limit: int | None = None
    ) -> list[RunRecord]:
        """Stored runs, oldest first (by start time, then id), optionally filtered."""
        sql = _RUN_SELECT
        where, args = [], []
        if workflow is not None:
            where.append("r.workflow = ?")
            args.append(workflow)
        if status is not None:
            where.append("r.status = ?")
            args.append(status)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY r.started_at, r.run_id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._db() as conn:
            rows = conn.execute(sql, args).fetchall()
        return [_run_record(r) for r in rows]

    def set_status(self, run_id: str, status: str, *, expected: str | Sequence[str] | None = None) -> bool:
        """Change a run's status; with `expected`, only if it currently has (one of) that status.

        The compare-and-set is atomic across processes, so two processes resuming one waiting run
        cannot both win: ``set_status(rid, "running", expected="waiting_approval")``. Any status
        but ``running`` releases this store's lease on the run (`claim_run` takes one).

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
            if status != "running":
                self._release(conn, run_id)
        return True

    def claim_run(self, run_id: str, *, force: bool = False) -> RunRecord:
        """Take a run over to continue it (``resume``): one atomic compare-and-set that sets it
        ``running`` under this store's lease.

        It succeeds for a ``waiting_approval`` run, and for a ``running`` run whose lease expired
        (its process died); a ``running`` run without any lease (written before leases) needs
        `force`. A live lease refuses it, `force` or not. Of several processes claiming one run
        at once, exactly one succeeds.

        Raises:
            OWFError: ``VALIDATION``: an unknown or finished run, a run whose lease is alive
                (the message names the process and the time it holds it until), a leaseless
                ``running`` run without `force`, or a run another process claimed first.
        """
        with self._tx() as conn:
            now = self._clock(conn)
            won = conn.execute(CLAIM_SQL, (self.owner, now + self.lease_seconds, run_id, now, force)).rowcount
            row = None if won else conn.execute(_RUN_SELECT + " WHERE r.run_id = ?", (run_id,)).fetchone()
        if won:
            self._lost.discard(run_id)
            self._seqs.forget(run_id)  # another process may have written events since
            self._keeper.hold(run_id)
            record = self.get_run(run_id)
            assert record is not None
            return record
        if row is None:
            raise unknown_run(run_id)
        record = _run_record(row)
        until = ts(record.lease_until)
        if record.lease_owner is not None and until is not None and until >= now:
            raise lease_refused(run_id, record.lease_owner, until)
        hint = " (if its process died, resume it with force=True)" if record.status == "running" else ""
        raise OWFError(
            f"run '{run_id}' is {record.status}: only waiting runs resume{hint}",
            code="VALIDATION",
            details={"run_id": run_id, "status": record.status},
        )

    def finish_run(
        self,
        run_id: str,
        status: str,
        *,
        outputs: Mapping[str, Any] | None = None,
        error: Mapping[str, Any] | None = None,
        finished_at: datetime | None = None,
        steps: Sequence[StepRecord] = (),
        events: Sequence[Mapping[str, Any]] = (),
        close_pending: bool = False,
    ) -> None:
        """Record a run's end: status (``completed``, ``failed``, ``canceled``, or
        ``waiting_approval`` for a run that stops to wait), outputs and error; releases its lease.

        Args:
            steps: Step records not committed yet, written in the same transaction.
            events: Events not stored yet, appended in the same transaction.
            close_pending: Answer the run's open requests with None (nothing waits for them).
        """
        _check_status(status)
        self._owned(run_id)
        now = time.time()
        finished = (ts(finished_at) or now) if status in FINISHED_STATUSES else None
        try:
            with self._known(run_id), self._tx() as conn:
                if self._keeper.overdue:
                    self._fence(conn, run_id)
                if steps or events:  # a step written before under the same key keeps its events
                    checkpoint_batch.write(conn, self._seqs, run_id, steps, events, replace=True)
                cur = conn.execute(
                    "UPDATE runs SET status = ?, outputs = ?, error = ?, finished_at = ? WHERE run_id = ?",
                    (
                        status,
                        None if outputs is None else checkpoint_batch.encode(dict(outputs)),
                        None if error is None else checkpoint_batch.encode(dict(error)),
                        finished,
                        run_id,
                    ),
                )
                if cur.rowcount == 0:
                    raise unknown_run(run_id)
                if close_pending:
                    conn.execute(
                        "UPDATE pending SET resolved_at = ?, value = 'null' WHERE run_id = ? AND resolved_at IS NULL",
                        (now, run_id),
                    )
                if status != "running":
                    self._release(conn, run_id)
        except BaseException:
            self._seqs.forget(run_id)
            raise
        if status in FINISHED_STATUSES:
            self._seqs.forget(run_id)

    # -- steps and events -----------------------------------------------------------------------

    def checkpoint(self, run_id: str, step: StepRecord, events: Sequence[Mapping[str, Any]] = ()) -> list[int]:
        """Store one step's record (replacing an earlier one under the same key) and its events,
        in one transaction.

        Returns:
            The sequence numbers given to `events`.
        """
        return self.checkpoint_many(run_id, (step,), events)

    def checkpoint_many(
        self, run_id: str, steps: Sequence[StepRecord], events: Sequence[Mapping[str, Any]] = ()
    ) -> list[int]:
        """Store several steps' records and the events emitted with them in one transaction (a
        group commit: the engine passes every step that finished in one event-loop tick). A step
        output is serialised once, for its row and its completion event.

        Returns:
            The sequence numbers given to `events`.
        """
        if run_id in self._lost:
            self._owned(run_id)
        # the hot path of a durable run: the transaction by hand, without the context managers
        for retry in (False, True):
            with self._lock:
                if os.getpid() != self._pid:
                    with self._db():
                        pass
                conn = self._conn
                conn.execute("BEGIN IMMEDIATE")
                try:
                    if self._keeper.overdue:
                        self._fence(conn, run_id)
                    seqs = checkpoint_batch.write(conn, self._seqs, run_id, steps, events, replace=retry)
                except sqlite3.IntegrityError as exc:
                    conn.execute("ROLLBACK")
                    # a step row there already (written again: keep its trail's events), or another
                    # store object wrote events: count again, and write replacing rows
                    self._seqs.forget(run_id)
                    if "FOREIGN KEY" in str(exc).upper():
                        raise unknown_run(run_id) from exc
                    if retry:
                        raise
                    continue
                except BaseException:
                    conn.execute("ROLLBACK")
                    self._seqs.forget(run_id)
                    raise
                try:
                    conn.execute("COMMIT")
                except BaseException:
                    self._seqs.forget(run_id)
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                return seqs
        raise AssertionError("unreachable")

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
        return self.checkpoint_many(run_id, (), events)

    def get_events(self, run_id: str, *, after: int = 0) -> list[StoredEvent]:
        """A run's events in sequence order (those with ``seq > after``)."""
        with self._db() as conn:
            return trails.read_events(conn, run_id, after)

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
            conn.execute(
                "DELETE FROM manifests WHERE hash NOT IN"
                " (SELECT manifest_hash FROM runs WHERE manifest_hash IS NOT NULL)"
            )
        for i in ids:
            self._seqs.forget(i)
        self._manifests.clear()
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


def _run_record(row: Sequence[Any]) -> RunRecord:
    started = dt(row[5])
    assert started is not None
    return RunRecord(
        run_id=row[0],
        workflow=row[1],
        workflow_version=row[2],
        status=row[3],
        inputs=json.loads(row[4]),
        started_at=started,
        finished_at=dt(row[6]),
        outputs=loads(row[7]),
        error=loads(row[8]),
        manifest_source=row[9],
        manifest_ids=loads(row[10]),
        metadata=json.loads(row[11]),
        lease_owner=row[12],
        lease_until=dt(row[13]),
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
            ``postgresql://...`` → a `PostgresRunStore` (`owf_magics.runs.postgres`);
            a `RunStore` → itself.
    """
    if state is None:
        return SQLiteRunStore(Path.cwd() / DEFAULT_STATE_PATH)
    if isinstance(state, str) and state.startswith(("postgresql://", "postgres://")):
        # by name: owf_magics.runs.postgres extends this module (and imports psycopg when used)
        postgres = importlib.import_module("owf_magics.runs.postgres")
        store: RunStore = postgres.PostgresRunStore(state)
        return store
    if isinstance(state, str | os.PathLike):
        return SQLiteRunStore(state)
    if isinstance(state, RunStore):
        return state
    raise TypeError(f"state must be a path, ':memory:', None or a RunStore, not {type(state).__name__}")
