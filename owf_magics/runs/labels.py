"""Run labels: small key/value texts kept beside a run, such as the tenant a service run belongs to.

A label may be written before its run exists (the service labels a run id, then starts the run
under it), so a run is never visible, not even for a moment, without its labels. `SQLiteRunStore`
takes these methods from `RunLabels`; the table is part of its schema (version 3).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager

#: The labels table (created with the run store's schema; no foreign key, see the module's docstring).
LABELS_SCHEMA = """
CREATE TABLE IF NOT EXISTS run_labels (
    run_id     TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX IF NOT EXISTS run_labels_key ON run_labels (key, value);
"""


class RunLabels:
    """Labels on runs, for a SQLite store that provides ``_tx()`` (a write transaction) and
    ``_db()`` (the locked connection)."""

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:  # pragma: no cover - the store's
        raise NotImplementedError

    def _db(self) -> AbstractContextManager[sqlite3.Connection]:  # pragma: no cover - the store's
        raise NotImplementedError

    def set_labels(self, run_id: str, labels: Mapping[str, str]) -> None:
        """Set labels on a run (or on a run id not created yet), replacing those with the same keys."""
        now = time.time()
        with self._tx() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO run_labels (run_id, key, value, created_at) VALUES (?, ?, ?, ?)",
                [(run_id, str(k), str(v), now) for k, v in labels.items()],
            )

    def get_labels(self, run_id: str) -> dict[str, str]:
        """A run's labels (empty when it has none)."""
        with self._db() as conn:
            rows = conn.execute("SELECT key, value FROM run_labels WHERE run_id = ?", (run_id,)).fetchall()
        return {str(k): str(v) for k, v in rows}

    def find_labels(self, key: str) -> dict[str, str]:
        """Every run id with a label `key`, and that label's value."""
        with self._db() as conn:
            rows = conn.execute("SELECT run_id, value FROM run_labels WHERE key = ?", (key,)).fetchall()
        return {str(r): str(v) for r, v in rows}

    def delete_labels(self, run_id: str, *keys: str) -> None:
        """Remove some labels of a run (all of them when no key is given)."""
        with self._tx() as conn:
            if keys:
                conn.executemany("DELETE FROM run_labels WHERE run_id = ? AND key = ?", [(run_id, k) for k in keys])
            else:
                conn.execute("DELETE FROM run_labels WHERE run_id = ?", (run_id,))
