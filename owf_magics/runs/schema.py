"""The SQLite run store's schema, its version and the migrations between versions.

``PRAGMA user_version`` holds the version. A new file gets the current schema; an older file is
migrated in place, in one transaction, when a store opens it (so an old ``.owf/runs.db`` keeps
working); a newer one is refused. Every statement here is plain SQL that a PostgreSQL store can
reuse (``REAL`` seconds since the epoch for times, ``TEXT`` JSON for documents).

Versions:
    1. ``runs``, ``steps``, ``events``, ``pending``.
    2. ``manifests`` (each manifest source once per content hash; ``runs.manifest_hash`` names it,
       ``runs.manifest_source`` stays for rows written by version 1) and the run lease
       (``runs.lease_owner``, ``runs.lease_until``; see `owf_magics.runs.leases`).
    3. ``run_labels`` (see `owf_magics.runs.labels`): the tenant a service run belongs to, say.
    4. ``session_messages`` (see `owf_magics.runs.sessions`): conversation history per session.
    5. ``workflow_snapshots``, ``workflow_definitions``, ``sources``, ``queue_settings`` (see
       `owf_magics.runs.definitions`): workflows published to the service, AgentFlow sources.
    6. ``steps.seq`` and ``steps.trail`` (see `owf_magics.runs.trails`): a step's own started and
       completed events, kept in its row instead of two ``events`` rows.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time

from owf_magics.errors import OWFError
from owf_magics.runs.definitions import DEFINITIONS_SCHEMA
from owf_magics.runs.labels import LABELS_SCHEMA
from owf_magics.runs.sessions import SESSIONS_SCHEMA

#: The schema version written to ``PRAGMA user_version``; bumped with every schema change.
SCHEMA_VERSION = 6

__all__ = ["SCHEMA_VERSION", "TRAILS_COLUMNS", "connect", "manifest_hash", "migrate"]

_V1 = """
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

_V2 = """
CREATE TABLE IF NOT EXISTS manifests (
    hash   TEXT PRIMARY KEY,
    source TEXT NOT NULL
);
ALTER TABLE runs ADD COLUMN manifest_hash TEXT;
ALTER TABLE runs ADD COLUMN lease_owner TEXT;
ALTER TABLE runs ADD COLUMN lease_until REAL;
"""

#: Version 6: the columns where a step row keeps its own events.
TRAILS_COLUMNS = (("seq", "INTEGER"), ("trail", "TEXT"))


def manifest_hash(source: str) -> str:
    """The key a manifest source is stored under (sha256 of its UTF-8 text)."""
    return hashlib.sha256(source.encode()).hexdigest()


def _statements(script: str) -> list[str]:
    return [s for s in script.split(";") if s.strip()]


def migrate(conn: sqlite3.Connection, path: str) -> None:
    """Bring the open database to `SCHEMA_VERSION` (a new file gets every version in turn).

    Two processes opening an old file at once: the second waits for the first's transaction
    (``BEGIN IMMEDIATE``), then reads the new version and does nothing.

    Raises:
        OWFError: ``UNAVAILABLE`` for a file written by a newer owf-magics.
    """
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise _newer(path, version)
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]  # another process may have done it
        if version > SCHEMA_VERSION:
            raise _newer(path, version)
        if version < 1:
            for statement in _statements(_V1):
                conn.execute(statement)
        if version < 2:
            for statement in _statements(_V2):
                conn.execute(statement)
            rows = conn.execute("SELECT run_id, manifest_source FROM runs WHERE manifest_source IS NOT NULL").fetchall()
            for run_id, source in rows:  # each source once, named by its hash
                key = manifest_hash(source)
                conn.execute("INSERT OR IGNORE INTO manifests (hash, source) VALUES (?, ?)", (key, source))
                conn.execute(
                    "UPDATE runs SET manifest_hash = ?, manifest_source = NULL WHERE run_id = ?", (key, run_id)
                )
        if version < 3:
            for statement in _statements(LABELS_SCHEMA):
                conn.execute(statement)
        if version < 4:
            for statement in _statements(SESSIONS_SCHEMA):
                conn.execute(statement)
        if version < 5:
            for statement in _statements(DEFINITIONS_SCHEMA):
                conn.execute(statement)
        if version < 6:
            have = {row[1] for row in conn.execute("PRAGMA table_info(steps)")}
            for name, kind in TRAILS_COLUMNS:
                if name not in have:
                    conn.execute(f"ALTER TABLE steps ADD COLUMN {name} {kind}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _newer(path: str, version: int) -> OWFError:
    return OWFError(
        f"the run store {path} has schema version {version}, newer than this owf-magics understands ({SCHEMA_VERSION})",
        code="UNAVAILABLE",
        details={"path": path, "schema_version": version, "suggestion": "upgrade owf-magics"},
    )


def connect(path: str, timeout: float) -> sqlite3.Connection:
    """A connection to the store file (or ``":memory:"``) in autocommit mode, WAL, foreign keys on,
    ``synchronous=NORMAL``, migrated to the current schema."""
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    if path != ":memory:":
        # switching to WAL needs a moment alone with the file, and SQLite does not wait for it
        # through the busy timeout: when another process holds it, try again until the timeout
        deadline = time.monotonic() + timeout
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
    try:
        migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn
