"""The PostgreSQL run store: `PostgresRunStore`, the `RunStore` that many workers and kernels share.

``OpenWorkflow(state="postgresql://user@host/db")`` picks it (`owf_magics.runs.store.open_store`).
It is the SQLite store's logic over PostgreSQL: runs, checkpoints (group-committed), events
numbered per run, pending requests, leases, labels and prune are the same methods, running the same
SQL through `PgConnection`, which speaks the small SQLite dialect those statements use (``?``
parameters, ``INSERT OR IGNORE/REPLACE``, ``BEGIN IMMEDIATE``) and reports constraint violations as
the store expects them. What differs:

- connections come from a psycopg 3 pool (`psycopg_pool.ConnectionPool`), so a store object serves
  many threads at once; each forked process opens a pool of its own;
- write transactions other than checkpoints take one advisory lock (the equivalent of SQLite's
  single writer, ``BEGIN IMMEDIATE``), so the compare-and-set steps (``set_status``,
  ``resolve_pending``) keep their meaning; checkpoints and events of different runs commit in
  parallel (their event numbers are checked by the primary key);
- `claim_run` compares leases with the database's clock (``now()``), one clock for every host;
- the schema is migrated by `owf_magics.runs.postgres_schema` (the same versions as SQLite's).

psycopg is imported only when a PostgreSQL store is opened (the ``postgres`` extra).
"""

from __future__ import annotations

import functools
import os
import re
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from owf_magics.errors import OWFError, UnavailableError
from owf_magics.runs import checkpoint_batch
from owf_magics.runs.checkpoint_batch import SeqCounter
from owf_magics.runs.leases import DEFAULT_LEASE_SECONDS, LeaseKeeper, new_owner
from owf_magics.runs.postgres_schema import LOCK_KEY, migrate, read_version
from owf_magics.runs.store import SQLiteRunStore
from owf_magics.runtime.records import StepRecord, unknown_run

__all__ = ["PgConnection", "PostgresRunStore", "is_postgres_url", "translate"]

_CONFLICT_KEYS = {"steps": ("run_id", "step_key"), "run_labels": ("run_id", "key")}
_INSERT_OR = re.compile(r"^INSERT OR (IGNORE|REPLACE) INTO (\w+) \(([^)]*)\)(.*)$", re.S)


def is_postgres_url(state: object) -> bool:
    """Whether ``OpenWorkflow(state=...)`` names a PostgreSQL database."""
    return isinstance(state, str) and state.startswith(("postgresql://", "postgres://"))


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """The store's SQLite-dialect statement in PostgreSQL's."""
    if sql == "BEGIN IMMEDIATE":
        return "BEGIN"
    match = _INSERT_OR.match(sql)
    if match:
        verb, table, cols, rest = match.groups()
        sql = f"INSERT INTO {table} ({cols}){rest}"
        if verb == "IGNORE":
            sql += " ON CONFLICT DO NOTHING"
        else:
            keys = _CONFLICT_KEYS[table]
            names = [c.strip() for c in cols.split(",")]
            updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in names if c not in keys)
            sql += f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
    return sql.replace("%", "%%").replace("?", "%s")


def _translated_error(exc: Exception) -> Exception:
    import psycopg

    if isinstance(exc, psycopg.errors.ForeignKeyViolation):
        return sqlite3.IntegrityError(f"FOREIGN KEY constraint failed: {exc}")
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return sqlite3.IntegrityError(f"UNIQUE constraint failed: {exc}")
    if isinstance(exc, psycopg.IntegrityError):
        return sqlite3.IntegrityError(str(exc))
    return sqlite3.OperationalError(str(exc))


class PgConnection:
    """A psycopg connection (autocommit) that runs the store's SQLite-dialect statements.

    Constraint violations are raised as `sqlite3.IntegrityError` (``FOREIGN KEY ...`` or
    ``UNIQUE ...``) and other database errors as `sqlite3.OperationalError`, the exceptions the
    shared store code handles; the original psycopg error is the ``__cause__``.
    """

    __slots__ = ("raw",)

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        import psycopg

        cur = self.raw.cursor()
        try:
            cur.execute(translate(sql), tuple(params) or None)
        except psycopg.Error as exc:
            raise _translated_error(exc) from exc
        return cur

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any:
        import psycopg

        cur = self.raw.cursor()
        if not rows:
            return cur
        try:
            cur.executemany(translate(sql), [tuple(r) for r in rows])
        except psycopg.Error as exc:
            raise _translated_error(exc) from exc
        return cur

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return bool(self.raw.info.transaction_status != TransactionStatus.IDLE)

    def close(self) -> None:
        self.raw.close()


class PostgresRunStore(SQLiteRunStore):
    """A `RunStore` in a PostgreSQL database, shared by every process that opens the same URL.

    Args:
        url: ``postgresql://user[:password]@host[:port]/database`` (a libpq connection string).
        max_connections: The pool's size: how many of this store's calls run at once.
        timeout: Seconds to wait for a connection from the pool.
        lease_seconds: How long a run's lease lasts without renewal (see `SQLiteRunStore`).
    """

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 8,
        timeout: float = 30.0,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        try:
            import psycopg  # noqa: F401
            import psycopg_pool  # noqa: F401
        except ImportError as exc:  # pragma: no cover - the extra is in dev
            raise UnavailableError(
                "the PostgreSQL run store needs psycopg and psycopg-pool: pip install 'owf-magics[postgres]'"
            ) from exc
        self.path = url
        self.url = url
        self.timeout = timeout
        self.max_connections = max_connections
        self.lease_seconds = float(lease_seconds)
        self._lock = threading.RLock()
        self._seqs = SeqCounter()
        self._manifests: set[str] = set()
        self._lost: set[str] = set()
        self._pid = os.getpid()
        self._pool = self._open_pool()
        self.owner = new_owner()
        self._keeper = LeaseKeeper(self._keeper_connection, self.owner, self.lease_seconds, self._lose)

    def _open_pool(self) -> Any:
        import psycopg
        from psycopg_pool import ConnectionPool

        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=int(self.timeout)) as conn:
                migrate(conn, _safe_url(self.url))
        except psycopg.OperationalError as exc:
            raise OWFError(
                f"cannot reach the PostgreSQL run store {_safe_url(self.url)}: {exc}",
                code="UNAVAILABLE",
                details={"store": _safe_url(self.url), "suggestion": "check the URL and that the server runs"},
            ) from exc
        return ConnectionPool(
            self.url,
            min_size=1,
            max_size=self.max_connections,
            kwargs={"autocommit": True},
            timeout=self.timeout,
            open=True,
            name="owf-runs",
        )

    def _keeper_connection(self) -> tuple[Any, Any]:
        import psycopg

        return PgConnection(psycopg.connect(self.url, autocommit=True)), None

    def _fork_check(self) -> None:
        if os.getpid() != self._pid:  # a forked child: never share the parent's connections
            with self._lock:
                if os.getpid() != self._pid:
                    self._pid = os.getpid()
                    self._pool = self._open_pool()
                    self._seqs = SeqCounter()
                    self.owner = new_owner()
                    self._keeper = LeaseKeeper(self._keeper_connection, self.owner, self.lease_seconds, self._lose)

    @contextmanager
    def _db(self) -> Iterator[Any]:
        self._fork_check()
        with self._pool.connection() as raw:
            yield PgConnection(raw)

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self._db() as conn:
            conn.execute("BEGIN")
            try:
                conn.execute("SELECT pg_advisory_xact_lock(?)", (LOCK_KEY,))
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _clock(self, conn: Any) -> float:
        return float(conn.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()[0])

    @property
    def schema_version(self) -> int:
        """The schema version of the database."""
        with self._db() as conn:
            return read_version(conn.raw)

    def checkpoint_many(
        self, run_id: str, steps: Sequence[StepRecord], events: Sequence[Mapping[str, Any]] = ()
    ) -> list[int]:
        """As `SQLiteRunStore.checkpoint_many`: one transaction per group of steps, without the
        store-wide write lock (runs checkpoint in parallel; a stale event counter is retried)."""
        if run_id in self._lost:
            self._owned(run_id)
        for retry in (False, True):
            with self._db() as conn:
                conn.execute("BEGIN")
                try:
                    if events:  # one writer of a run's events at a time: numbers without gaps
                        conn.execute("SELECT pg_advisory_xact_lock(?, hashtext(?))", (LOCK_KEY, run_id))
                    if self._keeper.overdue:
                        self._fence(conn, run_id)
                    seqs = checkpoint_batch.write(conn, self._seqs, run_id, steps, events)
                    conn.execute("COMMIT")
                    return seqs
                except sqlite3.IntegrityError as exc:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    self._seqs.forget(run_id)
                    if "FOREIGN KEY" in str(exc).upper():
                        raise unknown_run(run_id) from exc
                    if retry:
                        raise
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    self._seqs.forget(run_id)
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the pool (the store cannot be used afterwards); leases it holds then expire."""
        self._keeper.stop()
        self._pool.close()

    def __enter__(self) -> PostgresRunStore:
        return self

    def __repr__(self) -> str:
        return f"PostgresRunStore({_safe_url(self.url)!r})"


def _safe_url(url: str) -> str:
    """The URL without its password."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
