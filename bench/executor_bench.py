"""Executor benchmarks, beside LangGraph and plain Python measured in the same run.

1. Per-step overhead: a chain of N no-op function steps (N = 10 and 1,000), each step after the
   previous one; native, a LangGraph StateGraph with the same N nodes, and a plain Python loop.
2. Fan-out: 1,000 independent steps that each await a 50 ms sleep; native, LangGraph (`Send`) and
   `asyncio.gather`.
Targets (issue 3): native per step at most 1/10 of LangGraph's at both sizes; the fan-out within
1.6x of `asyncio.gather`.
"""

from __future__ import annotations

import asyncio
import gc
import operator
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypedDict

sys.path.insert(0, str(Path(__file__).parent))
import handlers  # the benchmark's own handler module, found next to this file

SIZES = (10, 1000)
FAN = 1000
CONNECTOR = """
connector: {name: bench, kind: sdk}
actions:
  - {name: noop, handler: {function: handlers.noop}}
  - {name: nap, handler: {function: handlers.nap}}
"""


def median(fn: Callable[[], Any], repeat: int = 5) -> float:
    fn()  # warm caches (templates compile once per distinct text, plans once per workflow)
    gc.collect()  # every contender starts from the same collected heap
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def chain_manifest(n: int) -> str:
    lines = [f"name: chain{n}", "steps:", "  - {id: s0, connector: bench, action: noop}"]
    lines += [f"  - {{id: s{i}, connector: bench, action: noop, dependsOn: [s{i - 1}]}}" for i in range(1, n)]
    return "\n".join(lines) + "\n"


def fan_manifest(n: int) -> str:
    lines = [f"name: fan{n}", "steps:"]
    lines += [f"  - {{id: s{i}, connector: bench, action: nap}}" for i in range(n)]
    return "\n".join(lines) + "\n"


def plain_chain(n: int) -> None:
    results: dict[str, Any] = {}
    for i in range(n):
        results[f"s{i}"] = handlers.noop()


async def plain_fan(n: int) -> None:
    await asyncio.gather(*(handlers.nap() for _ in range(n)))


def langgraph_chain(n: int, checkpointer: Any = None) -> Callable[[], Any] | None:
    """A LangGraph chain of n nodes calling the no-op; with a checkpointer, each run its own thread."""
    try:
        from langgraph.graph import END, START, StateGraph
    except ImportError:
        return None

    class S(TypedDict):
        v: int

    def node(state: S) -> dict[str, Any]:
        handlers.noop()
        return {}

    g = StateGraph(S)
    for i in range(n):
        g.add_node(f"s{i}", node)
    g.add_edge(START, "s0")
    for i in range(1, n):
        g.add_edge(f"s{i - 1}", f"s{i}")
    g.add_edge(f"s{n - 1}", END)
    app = g.compile(checkpointer=checkpointer)
    runs = iter(range(10**9))
    return lambda: app.invoke({"v": 0}, {"recursion_limit": n + 10, "configurable": {"thread_id": str(next(runs))}})


def langgraph_fan(n: int) -> Callable[[], Any] | None:
    try:
        from langgraph.graph import END, START, StateGraph
        from langgraph.types import Send
    except ImportError:
        return None

    class S(TypedDict):
        out: Annotated[list[int], operator.add]

    class Item(TypedDict):
        i: int

    async def body(item: Item) -> dict[str, Any]:
        await handlers.nap()
        return {"out": [item["i"]]}

    g = StateGraph(S)
    g.add_node("body", body)
    g.add_conditional_edges(START, lambda s: [Send("body", {"i": i}) for i in range(n)], ["body"])
    g.add_edge("body", END)
    app = g.compile()
    return lambda: asyncio.run(app.ainvoke({"out": []}))


def _load(ow: Any, text: str) -> Any:
    [item] = ow.load(text)
    return ow.workflow(item.name)


def run() -> tuple[list[tuple[str, float, str]], list[str]]:
    """Rows of (measurement, seconds, comparison) and the targets missed."""
    from owf_magics import OpenWorkflow

    rows: list[tuple[str, float, str]] = []
    missed: list[str] = []

    for n in SIZES:
        ow = OpenWorkflow(state=False)  # only what this measurement runs; no run store (see durable_bench)
        ow.load(CONNECTOR)
        wf = _load(ow, chain_manifest(n))
        result = wf.execute()
        assert result.status == "completed" and len(result.steps) == n
        repeat = max(5, 2000 // n)  # enough runs for a stable median at every size
        native = median(wf.execute, repeat) / n
        python = median(lambda n=n: plain_chain(n), repeat) / n  # type: ignore[misc]
        lg = langgraph_chain(n)
        rows.append((f"chain of {n} no-op steps, per step: native", native, ""))
        rows.append(("  plain Python loop, per step", python, f"native is {native / python:,.0f}x python"))
        if lg is None:
            rows.append(("  LangGraph", float("nan"), "not installed (make bench installs it)"))
            continue
        langgraph = median(lg, repeat) / n
        ok = native <= langgraph / 10
        rows.append(
            (
                "  LangGraph StateGraph, per step",
                langgraph,
                f"native is 1/{langgraph / native:.1f} of LangGraph (target <= 1/10){'' if ok else '  MISSED'}",
            )
        )
        if not ok:
            missed.append(f"chain {n}")

    ow = OpenWorkflow(state=False)
    ow.load(CONNECTOR)
    fan = _load(ow, fan_manifest(FAN))
    result = fan.execute()
    assert result.status == "completed" and len(result.steps) == FAN
    native_fan = median(fan.execute, 3)
    gather = median(lambda: asyncio.run(plain_fan(FAN)), 3)
    ok = native_fan <= 1.6 * gather
    rows.append((f"{FAN} parallel steps awaiting 50 ms: native", native_fan, ""))
    rows.append(
        (
            "  asyncio.gather",
            gather,
            f"native is {native_fan / gather:.2f}x gather (target <= 1.6x){'' if ok else '  MISSED'}",
        )
    )
    if not ok:
        missed.append("fan-out")
    lgf = langgraph_fan(FAN)
    if lgf is not None:
        lg_fan = median(lgf, 3)
        rows.append(("  LangGraph Send fan-out", lg_fan, f"native is {native_fan / lg_fan:.2f}x LangGraph"))
    return rows, missed
