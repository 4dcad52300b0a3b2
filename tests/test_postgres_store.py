"""What only the PostgreSQL store has: its schema version table, OpenWorkflow(state=URL), a
workflow run recorded there and read back by another registry (as another process would)."""

from __future__ import annotations

import pytest

from owf_magics import OpenWorkflow
from owf_magics.errors import OWFError
from owf_magics.runs.postgres import PostgresRunStore, translate
from owf_magics.runs.store import SCHEMA_VERSION, open_store

FLOW = """
name: pg-flow
inputs: {n: {type: integer}}
outputs: {double: {value: "{{ steps.calc.output.result }}"}}
steps:
  - {id: calc, type: transform, expression: "{{ inputs.n * 2 }}"}
"""


def test_the_schema_is_versioned_and_a_newer_one_is_refused(postgres_server, postgres_url):
    with PostgresRunStore(postgres_url) as s:
        assert s.schema_version == SCHEMA_VERSION
    name = postgres_url.rsplit("/", 1)[1]
    postgres_server.psql(f"UPDATE owf_schema SET version = {SCHEMA_VERSION + 1}", database=name)
    with pytest.raises(OWFError) as err:
        PostgresRunStore(postgres_url)
    assert err.value.code == "UNAVAILABLE" and "newer" in err.value.message


def test_an_unreachable_server_is_a_structured_error(postgres_server):
    with pytest.raises(OWFError) as err:
        PostgresRunStore(f"postgresql://nobody:secret@127.0.0.1:{postgres_server.port}/no_such_db", timeout=5)
    assert err.value.code == "UNAVAILABLE"
    assert "secret" not in err.value.message  # the password is never echoed


def test_open_store_picks_postgres_and_a_run_is_shared(postgres_url):
    store = open_store(postgres_url)
    assert isinstance(store, PostgresRunStore)
    store.close()
    ow = OpenWorkflow(state=postgres_url)
    ow.load(FLOW)
    r = ow.workflow("pg-flow").execute({"n": 21})
    assert r.status == "completed" and r.outputs == {"double": 42}
    other = OpenWorkflow(state=postgres_url)  # another kernel or worker on the same database
    back = other.run(r.run_id)
    assert back.status == "completed" and back.outputs == {"double": 42}
    assert list(other.runs()["run_id"]) == [r.run_id]
    ow.close()
    other.close()


def test_the_sqlite_dialect_is_translated():
    assert translate("BEGIN IMMEDIATE") == "BEGIN"
    assert translate("INSERT OR IGNORE INTO m (a, b) VALUES (?, ?)") == (
        "INSERT INTO m (a, b) VALUES (%s, %s) ON CONFLICT DO NOTHING"
    )
    up = translate("INSERT OR REPLACE INTO run_labels (run_id, key, value) VALUES (?, ?, ?)")
    assert up.endswith("ON CONFLICT (run_id, key) DO UPDATE SET value = EXCLUDED.value")
