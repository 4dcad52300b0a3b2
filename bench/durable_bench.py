"""Durable runs: per-step overhead of a chain with the SQLite run store on, beside LangGraph's
SqliteSaver on the same chain and beside a raw sqlite3 floor (one WAL transaction per step with three
inserts), all measured in the same run. Targets (issue 12): at most 1.3x the floor and at most 1/25 of
LangGraph's per-step cost.
"""

from __future__ import annotations

import itertools
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from executor_bench import CONNECTOR, _load, chain_manifest, langgraph_chain, median

N = 1000


def langgraph_saver_chain(n: int, path: Path) -> Callable[[], Any] | None:
    try:
        from langgraph.checkpoint.sqlite import SqliteSaver
    except ImportError:
        return None
    return langgraph_chain(n, SqliteSaver(sqlite3.connect(str(path), check_same_thread=False)))


def raw_sqlite_floor(n: int, path: Path) -> Callable[[], None]:
    """The physical floor of a durable chain: per step one WAL transaction (``synchronous=NORMAL``,
    as the store) with three inserts (the step row and its two events), from plain sqlite3."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS steps (run_id TEXT, step_key TEXT, output TEXT, PRIMARY KEY (run_id, step_key))"
    )
    conn.execute("CREATE TABLE IF NOT EXISTS events (run_id TEXT, seq INTEGER, body TEXT, PRIMARY KEY (run_id, seq))")
    runs = itertools.count()

    def chain() -> None:
        rid = f"run{next(runs)}"
        for i in range(n):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO steps VALUES (?, ?, ?)", (rid, f"s{i}", "null"))
            conn.execute("INSERT INTO events VALUES (?, ?, ?)", (rid, 2 * i, '{"type":"step.started"}'))
            conn.execute("INSERT INTO events VALUES (?, ?, ?)", (rid, 2 * i + 1, '{"type":"step.completed"}'))
            conn.execute("COMMIT")

    return chain


def run() -> tuple[list[tuple[str, float, str]], list[str]]:
    from owf_magics import OpenWorkflow

    rows: list[tuple[str, float, str]] = []
    missed: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        ow = OpenWorkflow(state=str(Path(tmp) / "runs.db"))
        ow.load(CONNECTOR)
        wf = _load(ow, chain_manifest(N))
        assert wf.execute().status == "completed"
        assert len(ow.store.get_steps(wf.execute().run_id)) == N
        stored = median(wf.execute, 3) / N
        bare = OpenWorkflow(state=False)
        bare.load(CONNECTOR)
        plain = median(_load(bare, chain_manifest(N)).execute, 3) / N
        rows.append((f"chain of {N} steps with the SQLite run store, per step", stored, ""))
        rows.append(("  without a run store (state=False), per step", plain, f"the store adds {stored - plain:.6f} s"))
        floor = median(raw_sqlite_floor(N, Path(tmp) / "floor.db"), 3) / N
        ok = stored <= floor * 1.3
        rows.append(
            (
                "  raw sqlite3 floor (1 WAL tx, 3 inserts), per step",
                floor,
                f"native+store is {stored / floor:.2f}x it (target <= 1.3x){'' if ok else '  MISSED'}",
            )
        )
        if not ok:
            missed.append("durable chain vs sqlite floor")
        lg = langgraph_saver_chain(N, Path(tmp) / "lg.db")
        if lg is None:
            rows.append(("  LangGraph + SqliteSaver", float("nan"), "not installed (make bench installs it)"))
        else:
            saver = median(lg, 3) / N
            ok = stored <= saver / 25
            rows.append(
                (
                    "  LangGraph StateGraph + SqliteSaver, per step",
                    saver,
                    f"native+store is 1/{saver / stored:.1f} of it (target <= 1/25){'' if ok else '  MISSED'}",
                )
            )
            if not ok:
                missed.append("durable chain")
        ow.close()
    return rows, missed
