"""The AgentFlow db node on a real PostgreSQL database (the session's server from
tests/pg_server.py: Debian's postgresql, initdb in a temporary directory), through psycopg 3."""

from __future__ import annotations

import copy

import psycopg

from owf_magics import OpenWorkflow
from tests.test_agentflow import SPEC


def test_the_db_node_reads_postgresql_with_bound_parameters(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        conn.execute("CREATE TABLE products (name text, price integer, kind text)")
        conn.execute("INSERT INTO products VALUES ('pen', 2, 'text'), ('poster', 9, 'image'), ('book', 12, 'text')")
    spec = copy.deepcopy(SPEC)
    spec["sources"][2]["config"] = {"connection_string": postgres_url}
    db = spec["nodes"][4]["metadata"]["config"]
    db["query"] = "SELECT name, price FROM products WHERE kind = %s ORDER BY name"
    ow = OpenWorkflow(state=":memory:")
    ow.load(spec)
    wf = ow.workflow("support-flow")
    text = wf.execute(inputs={"user_input": "hello"})
    assert text.status == "completed", text.error
    assert text.outputs["final_output"]["db"] == [{"name": "book", "price": 12}, {"name": "pen", "price": 2}]
    image = wf.execute(inputs={"user_input": "img: a kite"})
    assert image.outputs["db_result"] == [{"name": "poster", "price": 9}]
    # a value that looks like SQL is bound as a value: no row, no error, the table intact
    db["params"] = ["{user_input}"]
    ow2 = OpenWorkflow(state=":memory:")
    ow2.load(spec)
    res = ow2.workflow("support-flow").execute(inputs={"user_input": "x'; DROP TABLE products; --"})
    assert res.status == "completed" and res.outputs["db_result"] == []
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM products").fetchone() == (3,)
