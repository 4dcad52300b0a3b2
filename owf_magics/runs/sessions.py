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

    def list_sessions(self) -> list[dict[str, Any]]:
        """One row per session (`SESSION_COLUMNS`), the most recently used first."""
        with self._db() as conn:
            rows = conn.execute(
                "SELECT session_id, COUNT(*), GROUP_CONCAT(DISTINCT agent), MIN(created_at), MAX(created_at),"
                " (SELECT run_id FROM session_messages l WHERE l.session_id = m.session_id ORDER BY seq DESC LIMIT 1)"
                " FROM session_messages m GROUP BY session_id ORDER BY MAX(created_at) DESC, session_id"
            ).fetchall()
        return [
            session_row(sid, n, sorted(a.split(",")) if a else [], first, last, run_id)
            for sid, n, a, first, last, run_id in rows
        ]

    def prune_sessions(
        self,
        *,
        max_items: int | None = None,
        max_age: float | None = None,
        session_id: str | None = None,
        now: float | None = None,
    ) -> int:
        """Drop messages older than `max_age` seconds, then all but each session's newest
        `max_items` (only `session_id`'s when given). Returns how many messages went."""
        check_retention(max_items, max_age)
        where, args = ("WHERE session_id = ?", [session_id]) if session_id is not None else ("", [])
        removed = 0
        with self._tx() as conn:
            if max_age is not None:
                cutoff = (time.time() if now is None else now) - max_age
                sql = "DELETE FROM session_messages " + ("WHERE" if not where else where + " AND") + " created_at < ?"
                removed += conn.execute(sql, [*args, cutoff]).rowcount
            if max_items is not None:
                sql = (
                    "DELETE FROM session_messages WHERE (session_id, seq) IN (SELECT session_id, seq FROM"
                    " (SELECT session_id, seq, ROW_NUMBER() OVER (PARTITION BY session_id ORDER BY seq DESC) AS r"
                    f" FROM session_messages {where}) WHERE r > ?)"
                )
                removed += conn.execute(sql, [*args, max_items]).rowcount
        return removed


#: The columns of `list_sessions` rows (and of ``OpenWorkflow.sessions()``).
SESSION_COLUMNS = ("session_id", "messages", "agents", "first_at", "last_at", "last_run_id")


def session_row(
    session_id: str, messages: int, agents: list[str], first: float, last: float, run_id: str | None
) -> dict[str, Any]:
    return dict(zip(SESSION_COLUMNS, (session_id, messages, agents, first, last, run_id), strict=True))


def check_retention(max_items: Any, max_age: Any) -> None:
    """Refuse a retention that is not a count >= 0 and an age >= 0 (seconds)."""
    from owf_magics.errors import OWFError

    if max_items is not None and (not isinstance(max_items, int) or isinstance(max_items, bool) or max_items < 0):
        raise OWFError(f"max_items must be a whole number >= 0, got {max_items!r}", code="VALIDATION")
    if max_age is not None and (not isinstance(max_age, int | float) or isinstance(max_age, bool) or max_age < 0):
        raise OWFError(f"max_age must be a number of seconds >= 0, got {max_age!r}", code="VALIDATION")


class MemorySessions:
    """The same methods in memory: sessions of a registry without a run store (``state=False``)."""

    def __init__(self) -> None:
        self._messages: dict[str, list[tuple[str | None, dict[str, Any], float, str | None]]] = {}

    def append_messages(
        self,
        session_id: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        agent: str | None = None,
        run_id: str | None = None,
    ) -> None:
        now = time.time()
        self._messages.setdefault(session_id, []).extend((agent, dict(m), now, run_id) for m in messages)

    def get_messages(self, session_id: str, *, agent: str | None = None) -> list[dict[str, Any]]:
        return [dict(m) for a, m, _, _ in self._messages.get(session_id, []) if agent is None or a == agent]

    def clear_session(self, session_id: str) -> None:
        self._messages.pop(session_id, None)

    def list_sessions(self) -> list[dict[str, Any]]:
        rows = [
            session_row(sid, len(ms), sorted({a for a, *_ in ms if a}), ms[0][2], ms[-1][2], ms[-1][3])
            for sid, ms in self._messages.items()
            if ms
        ]
        return sorted(rows, key=lambda r: (-r["last_at"], r["session_id"]))

    def prune_sessions(
        self,
        *,
        max_items: int | None = None,
        max_age: float | None = None,
        session_id: str | None = None,
        now: float | None = None,
    ) -> int:
        check_retention(max_items, max_age)
        cutoff = (time.time() if now is None else now) - max_age if max_age is not None else None
        removed = 0
        for sid in [session_id] if session_id is not None else list(self._messages):
            ms = self._messages.get(sid, [])
            kept = [m for m in ms if cutoff is None or m[2] >= cutoff]
            if max_items is not None:
                kept = kept[len(kept) - max_items :] if max_items else []
            removed += len(ms) - len(kept)
            if kept:
                self._messages[sid] = kept
            else:
                self._messages.pop(sid, None)
        return removed
