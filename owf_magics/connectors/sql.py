"""The ``sql`` handler kind: one SQL statement against SQLite (a file) or PostgreSQL (psycopg 3).

Parameters are always bound by the driver, never formatted into the text: SQLite takes ``?`` or
``:name``, PostgreSQL ``%s`` or ``%(name)s``. Rows come back as mappings of column to value.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from owf_magics.connectors.base import placeholders
from owf_magics.errors import OWFError, UnavailableError
from owf_magics.manifest.models import Handler
from owf_magics.runtime.context import RunContext

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def driver_of(config: Mapping[str, Any]) -> str:
    """``postgresql`` when the source says so (``driver`` or a postgresql:// URL), else ``sqlite``."""
    driver = str(config.get("driver") or "").lower()
    database = str(config.get("database") or config.get("connection_string") or "")
    if driver in ("postgres", "postgresql", "psycopg") or database.startswith(POSTGRES_SCHEMES):
        return "postgresql"
    return "sqlite"


def _params(value: Any) -> Sequence[Any] | Mapping[str, Any]:
    if value is None:
        return ()
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, list | tuple):
        return list(value)
    raise OWFError("sql params must be a list (positional) or a mapping (named)", code="VALIDATION")


def run_sqlite(database: str, query: str, params: Sequence[Any] | Mapping[str, Any]) -> dict[str, Any]:
    """Run one statement on a SQLite file (``:memory:`` allowed); commits when it changes rows."""
    if database != ":memory:" and not Path(database).parent.exists():
        raise OWFError(f"the SQLite database folder of '{database}' does not exist", code="VALIDATION")
    conn = sqlite3.connect(database)
    try:
        cur = conn.execute(query, params)
        columns = [d[0] for d in cur.description or ()]
        rows = [dict(zip(columns, row, strict=True)) for row in cur.fetchall()] if columns else []
        conn.commit()
        return {"rows": rows, "columns": columns, "rowcount": len(rows) if columns else cur.rowcount}
    finally:
        conn.close()


def run_postgres(dsn: str, query: str, params: Sequence[Any] | Mapping[str, Any]) -> dict[str, Any]:
    """Run one statement on PostgreSQL through psycopg 3 (committed when it changes rows)."""
    try:
        import psycopg  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise UnavailableError(
            "the db source asks for PostgreSQL but psycopg 3 is not installed",
            details={"suggestion": "pip install 'psycopg[binary]'"},
        ) from exc
    try:
        conn = psycopg.connect(dsn)
    except psycopg.OperationalError as exc:  # AgentFlow's SourceConnectionError (docs/formats.md)
        raise UnavailableError(
            f"cannot connect to the PostgreSQL source: {exc}".strip(),
            details={"error": "SourceConnectionError", "suggestion": "check the source's connection_string"},
        ) from exc
    with conn, conn.cursor() as cur:
        cur.execute(query, params or None)
        columns = [d.name for d in cur.description or ()]
        rows = [dict(zip(columns, row, strict=True)) for row in cur.fetchall()] if columns else []
        conn.commit()
        return {"rows": rows, "columns": columns, "rowcount": len(rows) if columns else cur.rowcount}


def execute_sql(config: Mapping[str, Any], query: str, params: Any) -> dict[str, Any]:
    """One statement on the database `config` names (``database`` or ``connection_string``)."""
    database = str(config.get("database") or config.get("connection_string") or "")
    if not database:
        raise OWFError("the sql handler needs a database (a SQLite path or a postgresql:// URL)", code="VALIDATION")
    bound = _params(params)
    try:
        if driver_of(config) == "postgresql":
            return run_postgres(database, query, bound)
        return run_sqlite(database, query, bound)
    except (sqlite3.Error, ValueError) as exc:
        raise OWFError(f"the SQL statement failed: {exc}", code="BACKEND_ERROR", details={"query": query}) from exc
    except Exception as exc:
        if type(exc).__module__.startswith("psycopg"):
            raise OWFError(f"the SQL statement failed: {exc}", code="BACKEND_ERROR", details={"query": query}) from exc
        raise


async def handle(run: RunContext, handler: Handler, data: Any, step_id: str) -> Any:
    """Run the input's ``query`` (or the handler's) with the input's ``params`` bound, in the pool."""
    config = placeholders(dict(handler.sql or {}), {}, run)
    data = data if isinstance(data, Mapping) else {}
    query = data.get("query") or config.get("query")
    if not isinstance(query, str) or not query.strip():
        raise OWFError(f"step '{step_id}': the sql handler has no query", code="VALIDATION")
    params = data.get("params", config.get("params"))
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(run.pool, execute_sql, config, query, params)
