"""Published definitions, sources and queue settings in the run store (schema version 5), on SQLite
and PostgreSQL: seen by another connection at once, a version published twice is refused, a
deleted version keeps its snapshot, and a version 4 file is migrated in place."""

from __future__ import annotations

import sqlite3

import pytest

from owf_magics.runs.definitions import DefinitionExists, StoredSource
from owf_magics.runs.store import SCHEMA_VERSION, SQLiteRunStore
from tests.stores import make_store


def test_definitions_are_shared_per_tenant_and_unique_per_version(store_db):
    with make_store(store_db) as a, make_store(store_db) as b:
        snap, rows = a.publish(
            "acme", "text-1", [("wf", "1.0.0", "first"), ("other", "0.1.0", None)], published_by="al"
        )
        assert [(d.name, d.version, d.snapshot_id) for d in rows] == [("wf", "1.0.0", snap), ("other", "0.1.0", snap)]
        assert [d.version for d in b.definitions("acme", "wf")] == ["1.0.0"]
        assert b.definitions("globex") == [] and b.definitions(None) == []
        with pytest.raises(DefinitionExists) as exc:
            b.publish("acme", "text-2", [("new", "1.0.0", None), ("wf", "1.0.0", None)])
        assert exc.value.details == {"name": "wf", "version": "1.0.0"}
        assert a.definitions("acme", "new") == []  # all or nothing
        b.publish(None, "text-3", [("wf", "1.0.0", None)])  # no tenant is a tenant of its own
        assert [d.tenant for d in a.definitions(None)] == [""]
        assert a.delete_definition("acme", "wf", "1.0.0") and not a.delete_definition("acme", "wf", "1.0.0")
        assert b.definitions("acme", "wf") == []
        assert b.snapshot(snap) == ("acme", "text-1")  # runs keep what they ran


def test_sources_and_queue_settings(store_db):
    with make_store(store_db) as a, make_store(store_db) as b:
        src = StoredSource("acme", "llm1", "llm", {"model": "m"}, "fernet:sealed")
        assert a.put_source(src, create=True) and not b.put_source(src, create=True)
        assert not a.put_source(StoredSource("acme", "nope", "llm", {}), create=False)
        (got,) = b.get_sources("acme")
        assert (got.source_id, got.kind, got.config, got.credentials) == (
            "llm1",
            "llm",
            {"model": "m"},
            "fernet:sealed",
        )
        assert b.get_sources("globex") == []
        a.put_source(StoredSource("acme", "llm1", "llm", {"model": "n"}, None), create=False)
        assert b.get_sources("acme", "llm1")[0].config == {"model": "n"}
        b.set_queue_bandwidth("acme", "wf", "q1", {"max_messages_per_second": 2})
        b.set_queue_bandwidth("acme", "wf", "q1", {"max_messages_per_second": 5})
        assert a.queue_bandwidths("acme") == {("wf", "q1"): {"max_messages_per_second": 5}}
        assert a.queue_bandwidths("globex") == {}
        assert b.delete_source("acme", "llm1") and a.get_sources("acme") == []


def test_a_version_4_store_gets_the_definition_tables(tmp_path):
    path = tmp_path / "old.db"
    SQLiteRunStore(path).close()
    conn = sqlite3.connect(path)
    for table in ("workflow_snapshots", "workflow_definitions", "sources", "queue_settings"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("PRAGMA user_version = 4")
    conn.commit()
    conn.close()
    with SQLiteRunStore(path) as s:
        assert s.schema_version == SCHEMA_VERSION == 6
        s.publish("acme", "t", [("wf", "1.0.0", None)])
        assert [d.name for d in s.definitions("acme")] == ["wf"]
