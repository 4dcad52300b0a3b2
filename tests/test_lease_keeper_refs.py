"""The lease keeper never keeps its store alive: a store dropped without ``close()`` while it holds
a lease is freed by reference counting alone (the collector off), and its keeper thread ends. A
keeper given plain functions (not a store's bound methods) keeps them and works as before."""

from __future__ import annotations

import gc
import sqlite3
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from owf_magics.runs.leases import LeaseKeeper
from owf_magics.runs.store import SQLiteRunStore


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _wait(condition: Any, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_dropped_leasing_store_dies_by_reference_counting_and_its_keeper_ends(tmp_path: Path, collector_off) -> None:
    store = SQLiteRunStore(tmp_path / "runs.db", lease_seconds=0.3)
    store.create_run("r1", "w")  # a running run: the store holds its lease, the keeper thread runs
    keeper = store._keeper
    thread = keeper._thread
    assert thread is not None and thread.is_alive()
    started = keeper.renewed
    assert _wait(lambda: keeper.renewed > started)  # renewed once: the thread sleeps between renewals
    assert thread.is_alive() and "r1" in keeper.held  # the lease is still held, nothing closed
    ref = weakref.ref(store)
    del store
    assert ref() is None  # no cycle through the keeper: freed at once, the collector is off
    thread.join(timeout=3)  # woken by the store's death, not after a period
    assert not thread.is_alive()


def test_a_store_dropped_while_its_keeper_starts_is_freed_too(tmp_path: Path, collector_off) -> None:
    """Dropped right after taking the lease: the keeper thread may be opening its connection
    (through the store) at that moment; the store dies when it is done, still without the collector."""
    store = SQLiteRunStore(tmp_path / "runs.db", lease_seconds=30)
    store.create_run("r1", "w")
    thread = store._keeper._thread
    assert thread is not None
    ref = weakref.ref(store)
    del store
    assert _wait(lambda: ref() is None, 3)
    thread.join(timeout=3)  # a 10 s renewal period: it ends because the store died
    assert not thread.is_alive()


def test_a_keeper_given_plain_functions_holds_them(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    with SQLiteRunStore(db) as store:
        store.create_run("r1", "w")
    with sqlite3.connect(db) as direct:  # another owner took the run
        direct.execute("UPDATE runs SET lease_owner = 'someone-else' WHERE run_id = 'r1'")
    direct.close()
    lost: list[set[str]] = []
    opened: list[str] = []

    def connect() -> tuple[sqlite3.Connection, Any]:
        opened.append("yes")
        return sqlite3.connect(db, isolation_level=None, check_same_thread=False), None

    def on_lost(run_ids: set[str]) -> None:
        lost.append(run_ids)

    keeper = LeaseKeeper(connect, "me", 0.15, on_lost)  # plain functions: held strongly
    del connect, on_lost
    keeper.hold("r1")  # a lease this owner believes it holds; the row says another owner took it
    try:
        assert _wait(lambda: lost == [{"r1"}])  # the renewal ran through the plain callables
        assert opened == ["yes"] and "r1" not in keeper.held
    finally:
        keeper.stop()
