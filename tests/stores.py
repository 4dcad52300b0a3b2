"""Open a run store where a store test keeps its runs: a SQLite file path or a PostgreSQL URL (the
`store_db` fixture gives one of each, so the store's tests run on both)."""

from __future__ import annotations

import os
from typing import Any

from owf_magics.runs.store import SQLiteRunStore


def make_store(where: str | os.PathLike[str], **kwargs: Any) -> Any:
    """`SQLiteRunStore` or `PostgresRunStore` on `where`, with the same keyword arguments."""
    where = str(where)
    if where.startswith("postgresql://"):
        from owf_magics.runs.postgres import PostgresRunStore

        return PostgresRunStore(where, **kwargs)
    return SQLiteRunStore(where, **kwargs)


def raw_rows(store: Any, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Rows of a query run on the store's own database (either kind)."""
    with store._db() as conn:
        return list(conn.execute(sql, params).fetchall())
