"""The PostgreSQL run store's schema, versioned like the SQLite one (`owf_magics.runs.schema`).

The tables and columns are the SQLite store's, so both stores share their SQL: times are
``DOUBLE PRECISION`` seconds since the epoch, documents ``TEXT`` JSON. Two differences: ``steps`` and
``pending`` have a ``rowid BIGSERIAL`` column (SQLite's implicit rowid, which orders them), and the
version lives in a one-row table ``owf_schema`` (PostgreSQL has no ``user_version``).

`MIGRATIONS[n]` brings a database from version ``n - 1`` to ``n``; version numbers match the SQLite
schema's (``SCHEMA_VERSION``), so a change to one schema is a new version of both. `migrate` runs
the missing ones in one transaction under an advisory lock, so two processes opening a new database
at once do not race (the second waits, then finds nothing to do).
"""

from __future__ import annotations

from typing import Any

from owf_magics.errors import OWFError
from owf_magics.runs.definitions import DEFINITIONS_SCHEMA
from owf_magics.runs.schema import SCHEMA_VERSION, TRAILS_COLUMNS

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate", "read_version"]

#: The advisory lock key migrations (and the store's serialised writes) take: "owf" in ASCII.
LOCK_KEY = 0x6F7766

MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE IF NOT EXISTS runs (
    run_id           TEXT PRIMARY KEY,
    workflow         TEXT NOT NULL,
    workflow_version TEXT,
    status           TEXT NOT NULL,
    inputs           TEXT NOT NULL,
    outputs          TEXT,
    error            TEXT,
    started_at       DOUBLE PRECISION NOT NULL,
    finished_at      DOUBLE PRECISION,
    manifest_source  TEXT,
    manifest_ids     TEXT,
    metadata         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
CREATE TABLE IF NOT EXISTS steps (
    rowid       BIGSERIAL,
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
    cost_usd    DOUBLE PRECISION NOT NULL DEFAULT 0,
    input       TEXT,
    input_hash  TEXT,
    started_at  DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    written_at  DOUBLE PRECISION NOT NULL,
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
    rowid       BIGSERIAL,
    request_id  TEXT PRIMARY KEY,
    run_id      TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    step_id     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL,
    resolved_at DOUBLE PRECISION,
    value       TEXT
);
CREATE INDEX IF NOT EXISTS pending_run ON pending (run_id);
""",
    2: """
CREATE TABLE IF NOT EXISTS manifests (
    hash   TEXT PRIMARY KEY,
    source TEXT NOT NULL
);
ALTER TABLE runs ADD COLUMN IF NOT EXISTS manifest_hash TEXT;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS lease_owner TEXT;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS lease_until DOUBLE PRECISION;
""",
    3: """
CREATE TABLE IF NOT EXISTS run_labels (
    run_id     TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX IF NOT EXISTS run_labels_key ON run_labels (key, value);
""",
    4: """
CREATE TABLE IF NOT EXISTS session_messages (
    session_id TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    agent      TEXT,
    run_id     TEXT,
    message    TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (session_id, seq)
);
""",
    5: DEFINITIONS_SCHEMA.replace(" REAL", " DOUBLE PRECISION"),
    6: "".join(f"ALTER TABLE steps ADD COLUMN IF NOT EXISTS {name} {kind};\n" for name, kind in TRAILS_COLUMNS),
}

assert max(MIGRATIONS) == SCHEMA_VERSION, "a SQLite schema version without its PostgreSQL migration"


def read_version(conn: Any) -> int:
    """The schema version of the database behind a psycopg connection (0 for a new one)."""
    exists = conn.execute("SELECT to_regclass('owf_schema') IS NOT NULL").fetchone()[0]
    if not exists:
        return 0
    row = conn.execute("SELECT version FROM owf_schema").fetchone()
    return 0 if row is None else int(row[0])


def migrate(conn: Any, where: str) -> None:
    """Bring the database to `SCHEMA_VERSION` (psycopg connection in autocommit mode).

    Raises:
        OWFError: ``UNAVAILABLE`` for a database written by a newer owf-magics.
    """
    if read_version(conn) == SCHEMA_VERSION:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        version = read_version(conn)  # another process may have migrated meanwhile
        if version > SCHEMA_VERSION:
            raise OWFError(
                f"the run store {where} has schema version {version}, newer than this owf-magics"
                f" understands ({SCHEMA_VERSION})",
                code="UNAVAILABLE",
                details={"store": where, "schema_version": version, "suggestion": "upgrade owf-magics"},
            )
        conn.execute("CREATE TABLE IF NOT EXISTS owf_schema (version INTEGER NOT NULL)")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            conn.execute(MIGRATIONS[target])
        conn.execute("DELETE FROM owf_schema")
        conn.execute("INSERT INTO owf_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
