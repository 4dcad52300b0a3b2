"""Session history in the SQLite run store: kept per session, across store objects (processes)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from owf_magics.runs.schema import SCHEMA_VERSION
from owf_magics.runs.store import SQLiteRunStore
from tests.stores import make_store


def test_messages_per_session_survive_reopening(store_db: str) -> None:
    path = store_db  # a SQLite file, then a PostgreSQL database
    with make_store(path) as store:
        store.append_messages(
            "s1", [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], agent="a"
        )
        store.append_messages("s2", [{"role": "user", "content": "other"}], agent="a")
        store.append_messages("s1", [{"role": "user", "content": "again"}], agent="b")
    with make_store(path) as store:
        assert [m["content"] for m in store.get_messages("s1")] == ["hi", "yo", "again"]
        assert [m["content"] for m in store.get_messages("s1", agent="a")] == ["hi", "yo"]
        assert store.get_messages("s2") == [{"role": "user", "content": "other"}]
        assert store.get_messages("new") == []
        store.clear_session("s1")
        assert store.get_messages("s1") == []
        assert store.schema_version == SCHEMA_VERSION == 6


def test_a_version_3_file_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with SQLiteRunStore(path):
        pass
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE session_messages")
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    with SQLiteRunStore(path) as store:
        store.append_messages("s", [{"role": "user", "content": "x"}])
        assert store.get_messages("s") == [{"role": "user", "content": "x"}]
