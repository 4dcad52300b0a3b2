"""Durable runs: per-step overhead of a chain with the SQLite run store on, beside LangGraph's
SqliteSaver on the same chain (measured in the same run). Target (issue 6): at most one third of
LangGraph's per-step cost.
"""

from __future__ import annotations

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
        lg = langgraph_saver_chain(N, Path(tmp) / "lg.db")
        if lg is None:
            rows.append(("  LangGraph + SqliteSaver", float("nan"), "not installed (make bench installs it)"))
        else:
            saver = median(lg, 3) / N
            ok = stored <= saver / 3
            rows.append(
                (
                    "  LangGraph StateGraph + SqliteSaver, per step",
                    saver,
                    f"native+store is 1/{saver / stored:.1f} of it (target <= 1/3){'' if ok else '  MISSED'}",
                )
            )
            if not ok:
                missed.append("durable chain")
        ow.close()
    return rows, missed
