"""Published workflow definitions, AgentFlow sources and queue settings, kept in the run store so
every server process on the same store sees a publication at once.

- ``workflow_snapshots``: the manifest text of one publication (encrypted when the store has a
  key, see `owf_magics.runs.crypto`); never deleted with a version, so a run keeps the snapshot it
  ran.
- ``workflow_definitions``: one row per (tenant, name, version), naming its snapshot. The primary
  key makes a second publication of the same version fail (a conflict) on every process at once.
- ``sources``: AgentFlow sources per tenant; the non-credential config as JSON, the credential
  fields as one encrypted JSON document.
- ``queue_settings``: queue bandwidth set through the API, per tenant, workflow and queue.

Tenants are texts; the empty text is "no tenant". `SQLiteRunStore` takes these methods from
`PublishedDefinitions` (schema version 5); the PostgreSQL store inherits them, its migration 5 has
the same tables.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from owf_magics.errors import OWFError

#: The tables (SQLite; `owf_magics.runs.postgres_schema` has them with DOUBLE PRECISION times).
DEFINITIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS workflow_snapshots (
    snapshot_id TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS workflow_definitions (
    tenant       TEXT NOT NULL,
    name         TEXT NOT NULL,
    version      TEXT NOT NULL,
    snapshot_id  TEXT NOT NULL,
    description  TEXT,
    published_by TEXT,
    published_at REAL NOT NULL,
    PRIMARY KEY (tenant, name, version)
);
CREATE TABLE IF NOT EXISTS sources (
    tenant      TEXT NOT NULL,
    source_id   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    config      TEXT NOT NULL,
    credentials TEXT,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (tenant, source_id)
);
CREATE TABLE IF NOT EXISTS queue_settings (
    tenant     TEXT NOT NULL,
    workflow   TEXT NOT NULL,
    queue_id   TEXT NOT NULL,
    bandwidth  TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (tenant, workflow, queue_id)
);
"""


class DefinitionExists(OWFError):
    """That tenant already has a workflow of that name and version."""

    default_code = "CONFLICT"


@dataclass(frozen=True)
class Definition:
    """One published version of a workflow."""

    tenant: str
    name: str
    version: str
    snapshot_id: str
    description: str | None = None
    published_by: str | None = None
    published_at: float = 0.0


@dataclass
class StoredSource:
    """An AgentFlow source as stored: ``credentials`` is the sealed (encrypted) text."""

    tenant: str
    source_id: str
    kind: str
    config: dict[str, Any] = field(default_factory=dict)
    credentials: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


def tenant_key(tenant: str | None) -> str:
    """The stored tenant: the empty text for "no tenant"."""
    return tenant or ""


class PublishedDefinitions:
    """Definitions, sources and queue settings for a store that provides ``_tx()`` and ``_db()``."""

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:  # pragma: no cover - the store's
        raise NotImplementedError

    def _db(self) -> AbstractContextManager[sqlite3.Connection]:  # pragma: no cover - the store's
        raise NotImplementedError

    # -- definitions --------------------------------------------------------------------------

    def publish(
        self,
        tenant: str | None,
        body: str,
        workflows: Sequence[tuple[str, str, str | None]],
        *,
        published_by: str | None = None,
    ) -> tuple[str, list[Definition]]:
        """Store one publication: its (already sealed) manifest text and a definition per workflow
        ``(name, version, description)``, all or nothing.

        Raises:
            DefinitionExists: One of the versions is already published for that tenant (nothing
                is stored then); ``details`` names it.
        """
        tenant = tenant_key(tenant)
        snapshot = f"snap_{uuid.uuid4().hex}"
        now = time.time()
        rows = [Definition(tenant, n, v, snapshot, d, published_by, now) for n, v, d in workflows]
        with self._tx() as conn:
            for d in rows:
                hit = conn.execute(
                    "SELECT 1 FROM workflow_definitions WHERE tenant = ? AND name = ? AND version = ?",
                    (tenant, d.name, d.version),
                ).fetchone()
                if hit is not None:
                    raise DefinitionExists(
                        f"workflow '{d.name}' version {d.version} is already published",
                        details={"name": d.name, "version": d.version},
                    )
            conn.execute(
                "INSERT INTO workflow_snapshots (snapshot_id, tenant, body, created_at) VALUES (?, ?, ?, ?)",
                (snapshot, tenant, body, now),
            )
            try:
                conn.executemany(
                    "INSERT INTO workflow_definitions (tenant, name, version, snapshot_id, description,"
                    " published_by, published_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(tenant, d.name, d.version, snapshot, d.description, d.published_by, now) for d in rows],
                )
            except sqlite3.IntegrityError as exc:  # a race with another process: its row won
                raise DefinitionExists(
                    "one of these versions was published meanwhile", details={"workflows": [d.name for d in rows]}
                ) from exc
        return snapshot, rows

    def definitions(self, tenant: str | None, name: str | None = None) -> list[Definition]:
        """A tenant's published definitions (of one workflow when `name` is given)."""
        sql = (
            "SELECT tenant, name, version, snapshot_id, description, published_by, published_at"
            " FROM workflow_definitions WHERE tenant = ?"
        )
        args: list[Any] = [tenant_key(tenant)]
        if name is not None:
            sql += " AND name = ?"
            args.append(name)
        with self._db() as conn:
            rows = conn.execute(sql + " ORDER BY name, published_at", args).fetchall()
        return [Definition(*r) for r in rows]

    def delete_definition(self, tenant: str | None, name: str, version: str) -> bool:
        """Forget one published version (its snapshot stays for the runs that used it)."""
        with self._tx() as conn:
            cur = conn.execute(
                "DELETE FROM workflow_definitions WHERE tenant = ? AND name = ? AND version = ?",
                (tenant_key(tenant), name, version),
            )
            return bool(cur.rowcount)

    def snapshot(self, snapshot_id: str) -> tuple[str, str] | None:
        """A publication's ``(tenant, sealed text)``, or None."""
        with self._db() as conn:
            row = conn.execute(
                "SELECT tenant, body FROM workflow_snapshots WHERE snapshot_id = ?", (snapshot_id,)
            ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    # -- sources ------------------------------------------------------------------------------

    def put_source(self, source: StoredSource, *, create: bool) -> bool:
        """Create (`create`) or replace a source. False when it exists (create) or does not (replace)."""
        now = time.time()
        with self._tx() as conn:
            hit = conn.execute(
                "SELECT created_at FROM sources WHERE tenant = ? AND source_id = ?",
                (source.tenant, source.source_id),
            ).fetchone()
            if (hit is not None) == create:
                return False
            created = now if hit is None else float(hit[0])
            conn.execute("DELETE FROM sources WHERE tenant = ? AND source_id = ?", (source.tenant, source.source_id))
            conn.execute(
                "INSERT INTO sources (tenant, source_id, kind, config, credentials, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    source.tenant,
                    source.source_id,
                    source.kind,
                    json.dumps(source.config),
                    source.credentials,
                    created,
                    now,
                ),
            )
        source.created_at, source.updated_at = created, now
        return True

    def get_sources(self, tenant: str | None, source_id: str | None = None) -> list[StoredSource]:
        """A tenant's sources (one when `source_id` is given), by id."""
        sql = (
            "SELECT tenant, source_id, kind, config, credentials, created_at, updated_at FROM sources WHERE tenant = ?"
        )
        args: list[Any] = [tenant_key(tenant)]
        if source_id is not None:
            sql += " AND source_id = ?"
            args.append(source_id)
        with self._db() as conn:
            rows = conn.execute(sql + " ORDER BY source_id", args).fetchall()
        return [StoredSource(r[0], r[1], r[2], json.loads(r[3]), r[4], float(r[5]), float(r[6])) for r in rows]

    def delete_source(self, tenant: str | None, source_id: str) -> bool:
        with self._tx() as conn:
            cur = conn.execute(
                "DELETE FROM sources WHERE tenant = ? AND source_id = ?", (tenant_key(tenant), source_id)
            )
            return bool(cur.rowcount)

    # -- queue settings -----------------------------------------------------------------------

    def set_queue_bandwidth(
        self, tenant: str | None, workflow: str, queue_id: str, bandwidth: Mapping[str, Any]
    ) -> None:
        with self._tx() as conn:
            conn.execute(
                "DELETE FROM queue_settings WHERE tenant = ? AND workflow = ? AND queue_id = ?",
                (tenant_key(tenant), workflow, queue_id),
            )
            conn.execute(
                "INSERT INTO queue_settings (tenant, workflow, queue_id, bandwidth, updated_at) VALUES (?, ?, ?, ?, ?)",
                (tenant_key(tenant), workflow, queue_id, json.dumps(dict(bandwidth)), time.time()),
            )

    def queue_bandwidths(
        self, tenant: str | None, workflow: str | None = None
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """Bandwidth set through the API: ``{(workflow, queue_id): bandwidth}``."""
        sql = "SELECT workflow, queue_id, bandwidth FROM queue_settings WHERE tenant = ?"
        args: list[Any] = [tenant_key(tenant)]
        if workflow is not None:
            sql += " AND workflow = ?"
            args.append(workflow)
        with self._db() as conn:
            rows = conn.execute(sql, args).fetchall()
        return {(str(w), str(q)): json.loads(b) for w, q, b in rows}

    # -- key rotation -------------------------------------------------------------------------

    def sealed_texts(self) -> list[tuple[str, str, str]]:
        """Every encrypted-or-plain credential text: ``(table, key, text)`` (for `owf keys rotate`)."""
        with self._db() as conn:
            snaps = conn.execute("SELECT snapshot_id, body FROM workflow_snapshots").fetchall()
            srcs = conn.execute(
                "SELECT tenant, source_id, credentials FROM sources WHERE credentials IS NOT NULL"
            ).fetchall()
        out = [("workflow_snapshots", str(k), str(b)) for k, b in snaps]
        out += [("sources", json.dumps([t, s]), str(c)) for t, s, c in srcs]
        return out

    def reseal(self, rows: Sequence[tuple[str, str, str]]) -> None:
        """Write re-encrypted texts back (the rows `sealed_texts` returned, with new texts), at once."""
        with self._tx() as conn:
            for table, key, text in rows:
                if table == "workflow_snapshots":
                    conn.execute("UPDATE workflow_snapshots SET body = ? WHERE snapshot_id = ?", (text, key))
                else:
                    tenant, sid = json.loads(key)
                    conn.execute(
                        "UPDATE sources SET credentials = ? WHERE tenant = ? AND source_id = ?", (text, tenant, sid)
                    )
