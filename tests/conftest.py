from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

# A secret that every run of the whole suite carries, and that no output may ever contain. It is
# also in the environment (where real keys live), so a template that reads env.OWF_CANARY_TOKEN is
# a leak the engine must catch by redaction.
CANARY = "owf-canary-7f3e9c1a5b"
CANARY_NAME = "OWF_CANARY_TOKEN"
_RECORDS: list[str] = []


class _LogTap(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a bad format string must not break the suite's log capture
            text = str(record.msg)
        if CANARY in text:
            _RECORDS.append(f"{record.name}: {text}")


def assert_no_canary(result: Any) -> None:
    """Search everything a RunResult exposes for the canary."""
    from dataclasses import asdict

    parts = {
        "repr": repr(result),
        "summary": result.summary(),
        "outputs": json.dumps(result.outputs, default=str),
        "steps": json.dumps({k: asdict(v) for k, v in result.steps.items()}, default=str),
        "trace": json.dumps(result.trace_rows, default=str),
        "usage": json.dumps(result.usage_rows, default=str),
        "events": json.dumps(result.events, default=str),
        "error": json.dumps(asdict(result.error) if result.error else None, default=str),
        "pending": json.dumps(result.pending, default=str),
    }
    html = getattr(result, "_repr_html_", None)
    if callable(html):
        parts["html"] = html()
    leaked = [name for name, text in parts.items() if CANARY in text]
    assert not leaked, f"the secret canary leaked into the run's {', '.join(leaked)}"


@pytest.fixture(autouse=True, scope="session")
def _secret_canary():
    from owf_magics.engine.executor import Executor

    tap = _LogTap(level=logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(tap)
    original_init, original_arun = Executor.__init__, Executor.arun

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["secrets"] = {**(kwargs.get("secrets") or {}), CANARY_NAME: CANARY}
        original_init(self, *args, **kwargs)

    async def arun(self: Any) -> Any:
        result = await original_arun(self)
        assert_no_canary(result)
        return result

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CANARY_NAME, CANARY)
        mp.setattr(Executor, "__init__", init)
        mp.setattr(Executor, "arun", arun)
        yield
    root.removeHandler(tap)
    assert not _RECORDS, f"the secret canary leaked into logs: {_RECORDS[:3]}"


@pytest.fixture
def ow():
    from owf_magics import OpenWorkflow

    return OpenWorkflow(state=":memory:")


# -- a real PostgreSQL server (tests/pg_server.py) ---------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server for the whole session (Debian's binaries, initdb in a temp dir, on
    127.0.0.1 and a unix socket); skipped, saying why, only where the binaries are not installed."""
    from tests.pg_server import PostgresServer, unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """The URL of a fresh, empty database on the session's PostgreSQL server (one per test)."""
    return str(postgres_server.create_database())


@pytest.fixture(params=["sqlite", "postgresql"])
def store_db(request, tmp_path) -> str:
    """Where a store test keeps its runs: a SQLite file, then a fresh PostgreSQL database (open it
    with `tests.stores.make_store`); the store's test suite runs once on each."""
    if request.param == "sqlite":
        return str(tmp_path / "runs.db")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    """A real Dask LocalCluster of 2 worker processes on 127.0.0.1, one per test module (tests may
    kill a worker: its nanny starts another)."""
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=2,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        silence_logs=40,
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()
