"""AgentFlow spec cost: the load (detect, check, convert, validate) and one run of
input -> router -> (llm | image) -> db -> aggregator on a SQLite file, native and langchain,
beside the same work done by hand (the SQLite query alone). Prints medians in milliseconds.
Standalone: ``python bench/agentflow_bench.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_agentflow import SPEC, shop  # noqa: E402  (the tests' spec and database)

from owf_magics import OpenWorkflow  # noqa: E402


def median_ms(fn: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        spec = json.loads(json.dumps(SPEC))
        db = shop(Path(tmp))
        spec["sources"][2]["config"]["database"] = db
        path = Path(tmp) / "flow.json"
        path.write_text(json.dumps(spec))

        def load() -> OpenWorkflow:
            ow = OpenWorkflow(state=":memory:")
            ow.load(path)
            return ow

        wf = load().workflow("support-flow")

        def bare() -> None:
            conn = sqlite3.connect(db)
            conn.execute("SELECT name, price FROM products WHERE kind = ? ORDER BY name", ("text",)).fetchall()
            conn.close()

        print(f"AgentFlow spec ({len(spec['nodes'])} nodes), median of {runs} runs")
        print(f"  load + convert + validate     {median_ms(load, runs):8.2f} ms")
        print(
            f"  run, native                   {median_ms(lambda: wf.execute(inputs={'user_input': 'hi'}), runs):8.2f} ms"
        )
        print(
            f"  run, langchain                {median_ms(lambda: wf.execute(inputs={'user_input': 'img: x'}, prefer_backend='langchain'), runs):8.2f} ms"
        )
        print(f"  the SQLite query alone        {median_ms(bare, runs):8.2f} ms")


if __name__ == "__main__":
    main()
