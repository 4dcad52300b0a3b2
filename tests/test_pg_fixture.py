"""The PostgreSQL fixture starts a real server that answers SQL, one fresh database per test."""

from __future__ import annotations


def test_server_answers_sql(postgres_server, postgres_url):
    out = postgres_server.psql("SELECT 40 + 2").stdout.strip()
    assert out == "42"
    name = postgres_url.rsplit("/", 1)[1]
    assert postgres_server.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{name}'").stdout.strip() == "1"
    assert postgres_url.startswith("postgresql://") and "127.0.0.1" in postgres_url


def test_each_test_gets_its_own_database(postgres_server, postgres_url):
    name = postgres_url.rsplit("/", 1)[1]
    postgres_server.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1)", database=name)
    other = postgres_server.create_database().rsplit("/", 1)[1]
    assert other != name
    tables = postgres_server.psql("SELECT count(*) FROM pg_tables WHERE tablename = 't'", database=other)
    assert tables.stdout.strip() == "0"
