"""Conversation sessions: the messages of a chat with an agent, kept per session id in the run store.

A session outlives the runs that add to it (a kernel restart, another process): each exchange
appends its messages under ``(session_id, seq)``. The API is three methods, so any store
(SQLite here, PostgreSQL elsewhere) can provide it: `append_messages`, `get_messages`,
`clear_session`. `SQLiteRunStore` takes them from `RunSessions`; the table is part of its schema
(version 4). Messages are JSON objects (``role``, ``content``, and for tool traffic ``tool_calls``,
``name``, ``tool_call_id``), redacted by the caller before they get here.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

#: The sessions table (created with the run store's schema; a session is not owned by one run).
SESSIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS session_messages (
    session_id TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    agent      TEXT,
    run_id     TEXT,
    message    TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (session_id, seq)
);
"""


class RunSessions:
    """Session history for a SQLite store that provides ``_tx()`` and ``_db()``."""

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:  # pragma: no cover - the store's
        raise NotImplementedError

    def _db(self) -> AbstractContextManager[sqlite3.Connection]:  # pragma: no cover - the store's
        raise NotImplementedError

    def append_messages(
        self,
        session_id: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        agent: str | None = None,
        run_id: str | None = None,
    ) -> None:
        """Add messages at the end of a session (creating it on first use)."""
        if not messages:
            return
        now = time.time()
        with self._tx() as conn:
            last = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM session_messages WHERE session_id = ?", (session_id,)
            ).fetchone()[0]
            conn.executemany(
                "INSERT INTO session_messages (session_id, seq, agent, run_id, message, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (session_id, last + i, agent, run_id, json.dumps(dict(m), default=str), now)
                    for i, m in enumerate(messages, start=1)
                ],
            )

    def get_messages(self, session_id: str, *, agent: str | None = None) -> list[dict[str, Any]]:
        """A session's messages, oldest first (only those of `agent` when given); empty when new."""
        with self._db() as conn:
            if agent is None:
                rows = conn.execute(
                    "SELECT message FROM session_messages WHERE session_id = ? ORDER BY seq", (session_id,)
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT message FROM session_messages WHERE session_id = ? AND agent = ? ORDER BY seq",
                    (session_id, agent),
                ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def clear_session(self, session_id: str) -> None:
        """Forget a session's messages."""
        with self._tx() as conn:
            conn.execute("DELETE FROM session_messages WHERE session_id = ?", (session_id,))


class MemorySessions:
    """The same three methods in memory: sessions of a registry without a run store (``state=False``)."""

    def __init__(self) -> None:
        self._messages: dict[str, list[tuple[str | None, dict[str, Any]]]] = {}

    def append_messages(
        self,
        session_id: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        agent: str | None = None,
        run_id: str | None = None,
    ) -> None:
        self._messages.setdefault(session_id, []).extend((agent, dict(m)) for m in messages)

    def get_messages(self, session_id: str, *, agent: str | None = None) -> list[dict[str, Any]]:
        return [dict(m) for a, m in self._messages.get(session_id, []) if agent is None or a == agent]

    def clear_session(self, session_id: str) -> None:
        self._messages.pop(session_id, None)
