"""Run leases: a running run is owned by one process, and a dead process's runs can be taken over.

A run that is ``running`` holds a lease in its row of the store: ``lease_owner`` (``host:pid:token``,
the token random per store object) and ``lease_until`` (seconds since the epoch). The process that
runs it renews the lease from a background thread (`LeaseKeeper`) every `renewal period
<LeaseKeeper.period>` (a third of the lease length, so two renewals can fail before the lease
runs out), with its own database connection: the renewal never waits for the event loop, and the
event loop never waits for it. The lease is released (both columns NULL) when the run completes,
fails, is canceled or stops to wait.

``resume`` claims a run with one compare-and-set (`CLAIM_SQL`): it wins only when no live lease
holds the run, so of two concurrent resumes exactly one proceeds, and a run whose process is
alive is never run twice, with ``force=True`` or without. A run whose lease expired (its process
died) is resumable without ``force``; ``force`` is only needed for a ``running`` run without any
lease (written before leases existed). The statements are plain SQL with the current time as a
parameter; a PostgreSQL store runs the same ones (or uses ``now()`` for a clock shared by hosts).
"""

from __future__ import annotations

import inspect
import os
import secrets
import socket
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from owf_magics.errors import OWFError

#: How long a lease lasts without renewal (seconds); `SQLiteRunStore(lease_seconds=...)` changes it.
DEFAULT_LEASE_SECONDS = 30.0

__all__ = [
    "CLAIM_SQL",
    "DEFAULT_LEASE_SECONDS",
    "LeaseKeeper",
    "lease_refused",
    "new_owner",
    "owner_parts",
]

#: Claim a run for `owner` (parameters: owner, until, run_id, now, force). Statuses a run is
#: claimed from: ``waiting_approval`` and ``running``; never while a lease is alive; a ``running``
#: run without a lease only with force.
CLAIM_SQL = (
    "UPDATE runs SET status = 'running', finished_at = NULL, lease_owner = ?, lease_until = ?"
    " WHERE run_id = ? AND status IN ('waiting_approval', 'running')"
    " AND (lease_owner IS NULL OR lease_until < ?)"
    " AND (status <> 'running' OR lease_owner IS NOT NULL OR ?)"
)
#: Renew every lease an owner holds (parameters: until, owner).
RENEW_SQL = "UPDATE runs SET lease_until = ? WHERE lease_owner = ?"
#: Release a run's lease (parameters: run_id, owner): only its holder releases it.
RELEASE_SQL = "UPDATE runs SET lease_owner = NULL, lease_until = NULL WHERE run_id = ? AND lease_owner = ?"


def new_owner() -> str:
    """A lease owner: ``host:pid:token`` (the random token tells two stores of one process apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def owner_parts(owner: str) -> dict[str, Any]:
    """``{"host", "pid"}`` of an owner string (as far as it can be read)."""
    host, _, rest = owner.rpartition(":")[0].rpartition(":")
    pid = rest if rest.isdigit() else None
    return {"host": host or owner, "pid": int(pid) if pid else None}


def lease_refused(run_id: str, owner: str, until: float) -> OWFError:
    """The error for a run whose lease is alive: who holds it and until when."""
    parts = owner_parts(owner)
    when = datetime.fromtimestamp(until, UTC).isoformat(timespec="seconds")
    return OWFError(
        f"run '{run_id}' is running in process {parts['pid']} on {parts['host']} (lease held until {when},"
        " renewed while that process runs): it is not resumed, with force=True or without",
        code="VALIDATION",
        details={
            "run_id": run_id,
            "lease_owner": owner,
            "lease_until": when,
            **parts,
            "suggestion": "wait for that process to finish, or resume the run after its lease expires",
        },
    )


class LeaseKeeper:
    """The thread that renews one store's leases while their runs are running.

    It sleeps for `period` seconds (a third of the lease length), then renews every lease its
    owner holds in one statement, on a connection of its own. It starts with the first lease, ends
    when it finds nothing left to renew (so an idle store keeps no thread and no connection), and
    stops when the store closes. A renewal that finds fewer leases than it holds reports the lost
    runs (their lease expired and another process claimed them) through `on_lost`.

    A bound method given as `connect` or `on_lost` (the store's own, as every store passes) is
    held weakly: the keeper never keeps its store alive, so a store dropped without ``close()``
    is freed by reference counting alone (no store <-> keeper cycle for the collector), and its
    thread, woken by the store's death, closes its connection and ends. Any other callable is
    held as it is.

    Args:
        connect: Opens the connection the thread uses (called in the thread); for an in-memory
            store, a callable returning the store's connection and the lock that guards it.
        owner: The lease owner.
        seconds: The lease length.
        on_lost: Called with the run ids whose lease another owner took.
    """

    def __init__(
        self,
        connect: Callable[[], tuple[sqlite3.Connection, Any]],
        owner: str,
        seconds: float,
        on_lost: Callable[[set[str]], None],
    ) -> None:
        self.owner = owner
        self.seconds = seconds
        self.period = seconds / 3
        self.held: set[str] = set()
        self.renewed = time.time()  # when the leases were last known to be this owner's
        self._guard = threading.Lock()
        self._wake = threading.Event()
        self._connect = _held(connect, self._wake)
        self._on_lost = _held(on_lost, self._wake)
        self._stop = False
        self._thread: threading.Thread | None = None

    @property
    def overdue(self) -> bool:
        """Whether the last renewal is more than half a lease ago (the process was frozen or
        suspended, or the database busy): a writer should then check its lease itself."""
        return time.time() - self.renewed > self.seconds / 2

    def hold(self, run_id: str) -> None:
        with self._guard:
            if not self.held:
                self.renewed = time.time()
            self.held.add(run_id)
            if self._thread is None and not self._stop:
                self._wake.clear()
                self._thread = threading.Thread(target=self._loop, name="owf-lease", daemon=True)
                self._thread.start()

    def drop(self, run_id: str) -> None:
        with self._guard:
            self.held.discard(run_id)

    def stop(self) -> None:
        self._stop = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _loop(self) -> None:
        connect = self._connect()
        if connect is None:  # the store went away before the thread started
            return
        conn, lock = connect()
        del connect  # from here on the thread holds no reference to the store
        try:
            # woken by stop(), or by the death of a store dropped without close() (see `_held`)
            while not self._wake.wait(self.period) and not self._stop:
                with self._guard:
                    held = set(self.held)
                    if not held:  # nothing to renew: the thread ends (`hold` starts another)
                        self._thread = None
                        return
                try:
                    self.renew(conn, lock, held)
                except sqlite3.Error:  # the store is busy or gone: the next period tries again
                    continue
        finally:
            if lock is None:
                conn.close()

    def renew(self, conn: sqlite3.Connection, lock: Any, held: set[str]) -> None:
        """Renew every lease of this owner; report runs held here whose lease is someone else's."""
        until = time.time() + self.seconds
        if lock is None:
            count = conn.execute(RENEW_SQL, (until, self.owner)).rowcount
        else:
            with lock:
                count = conn.execute(RENEW_SQL, (until, self.owner)).rowcount
        if count >= len(held):
            self.renewed = time.time()
            return
        marks = ",".join("?" * len(held))
        sql = f"SELECT run_id FROM runs WHERE lease_owner = ? AND run_id IN ({marks})"
        if lock is None:
            mine = {r[0] for r in conn.execute(sql, (self.owner, *held))}
        else:
            with lock:
                mine = {r[0] for r in conn.execute(sql, (self.owner, *held))}
        lost = held - mine
        with self._guard:
            lost &= self.held  # a run released meanwhile is not lost
            self.held -= lost
        on_lost = self._on_lost() if lost else None  # the store, only for as long as the call
        if on_lost is not None:
            on_lost(lost)
            del on_lost
        self.renewed = time.time()


def _held(func: Callable[..., Any], wake: threading.Event) -> Callable[[], Callable[..., Any] | None]:
    """`func` for later: a bound method weakly (its object's death sets `wake`), anything else as it is.

    The death callback holds only the event, never the keeper, so no cycle is made here either.
    """
    if inspect.ismethod(func):
        return weakref.WeakMethod(func, lambda _ref: wake.set())
    return lambda: func
