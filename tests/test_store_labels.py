"""Run labels in the SQLite store: written before the run exists, read by another connection,
kept through a schema upgrade from version 2, and pruned with their run."""

from __future__ import annotations

import sqlite3

from owf_magics.runs.store import SCHEMA_VERSION, SQLiteRunStore
from tests.stores import make_store


def test_labels_can_be_written_before_the_run_and_are_seen_by_another_connection(tmp_path, store_db):
    path = store_db
    with make_store(path) as a, make_store(path) as b:
        a.set_labels("r1", {"tenant": "acme", "note": "x"})
        assert a.get_run("r1") is None  # the run itself comes later
        a.create_run("r1", "wf")
        assert b.get_labels("r1") == {"tenant": "acme", "note": "x"}
        b.set_labels("r1", {"tenant": "globex"})  # replaces the key, keeps the others
        assert a.get_labels("r1") == {"tenant": "globex", "note": "x"}
        a.set_labels("r2", {"tenant": "acme"})
        assert b.find_labels("tenant") == {"r1": "globex", "r2": "acme"}
        a.delete_labels("r1", "note")
        assert b.get_labels("r1") == {"tenant": "globex"}
        a.delete_labels("r2")
        assert b.get_labels("r2") == {} and b.find_labels("note") == {}


def test_a_version_2_store_gets_the_labels_table(tmp_path):
    path = tmp_path / "old.db"
    SQLiteRunStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE run_labels")  # the file as version 2 wrote it
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    with SQLiteRunStore(path) as s:
        assert s.schema_version == SCHEMA_VERSION == 6
        s.set_labels("r1", {"tenant": "acme"})
        assert s.get_labels("r1") == {"tenant": "acme"}


def test_pruning_a_run_removes_its_labels(tmp_path, store_db):
    with make_store(store_db) as s:
        s.create_run("old", "wf")
        s.set_labels("old", {"tenant": "acme"})
        s.finish_run("old", "completed")
        s.create_run("live", "wf")
        s.set_labels("live", {"tenant": "acme"})
        assert s.prune(-1) == 1
        assert s.get_labels("old") == {} and s.get_labels("live") == {"tenant": "acme"}
