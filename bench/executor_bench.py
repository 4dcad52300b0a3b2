"""Executor benchmarks, beside LangGraph and plain Python measured in the same run.

1. Per-step overhead: a chain of N no-op function steps (N = 10, 1,000 and 5,000), each step after
   the previous one; native, a LangGraph StateGraph with the same N nodes, and a plain Python loop.
2. Fan-out: 1,000 and 5,000 independent steps that each await a 50 ms sleep; native, LangGraph
   (`Send`) and `asyncio.gather`.
3. (`run_more`) 1,000 sync steps that each block 50 ms, default settings, beside LangGraph's
   default; a forEach over 10,000 items with a template body; 1,000 back-to-back runs of a 5-step
   workflow; peak memory (tracemalloc) of the 5,000-step chain and the 10k forEach beside LangGraph.
Targets (issue 12): per step at 10 steps at most 1/20 of LangGraph's; at 1,000 and 5,000 at most
5 µs, the 5,000 figure within 10% of the 1,000; the fan-outs within 1.1x and 1.3x of
`asyncio.gather`; the sync fan-out at most 1/4 of LangGraph's; the forEach at most 15 µs per item;
at least 10,000 runs/s; peak memory at most LangGraph's.
"""

from __future__ import annotations

import asyncio
import gc
import operator
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypedDict

sys.path.insert(0, str(Path(__file__).parent))
import handlers  # the benchmark's own handler module, found next to this file

SIZES = (10, 1000, 5000)
FANS = {1000: 1.1, 5000: 1.3}  # size: the target ratio to asyncio.gather
CONNECTOR = """
connector: {name: bench, kind: sdk}
actions:
  - {name: noop, handler: {function: handlers.noop}}
  - {name: nap, handler: {function: handlers.nap}}
  - {name: snooze, handler: {function: handlers.snooze}}
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


def fan_manifest(n: int, action: str = "nap") -> str:
    lines = [f"name: {action}{n}", "steps:"]
    lines += [f"  - {{id: s{i}, connector: bench, action: {action}}}" for i in range(n)]
    return "\n".join(lines) + "\n"


FOREACH = """
name: each
inputs: {xs: {type: array}}
steps:
  - id: loop
    type: forEach
    items: "{{ inputs.xs }}"
    steps:
      - {id: body, type: transform, expression: "{{ item * 2 }}"}
"""


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


def langgraph_fan(n: int, body_kind: str = "nap") -> Callable[[], Any] | None:
    """A LangGraph `Send` fan-out of n items to one node: awaiting 50 ms ("nap", ainvoke), blocking
    50 ms ("snooze", invoke with LangGraph's default executor) or doubling the item ("double")."""
    try:
        from langgraph.graph import END, START, StateGraph
        from langgraph.types import Send
    except ImportError:
        return None

    class S(TypedDict):
        out: Annotated[list[int], operator.add]

    class Item(TypedDict):
        i: int

    async def nap(item: Item) -> dict[str, Any]:
        await handlers.nap()
        return {"out": [item["i"]]}

    def snooze(item: Item) -> dict[str, Any]:
        handlers.snooze()
        return {"out": [item["i"]]}

    def double(item: Item) -> dict[str, Any]:
        return {"out": [item["i"] * 2]}

    g = StateGraph(S)
    g.add_node("body", {"nap": nap, "snooze": snooze, "double": double}[body_kind])
    g.add_conditional_edges(START, lambda s: [Send("body", {"i": i}) for i in range(n)], ["body"])
    g.add_edge("body", END)
    app = g.compile()
    if body_kind == "nap":
        return lambda: asyncio.run(app.ainvoke({"out": []}))
    return lambda: app.invoke({"out": []})


def _load(ow: Any, text: str) -> Any:
    [item] = ow.load(text)
    return ow.workflow(item.name)


def peak_memory(fn: Callable[[], Any]) -> float:
    """Bytes tracemalloc saw allocated at the peak of one call (after a warm-up call)."""
    fn()
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return float(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()


def _registry(text: str, **kwargs: Any) -> Any:
    from owf_magics import OpenWorkflow

    ow = OpenWorkflow(state=False, **kwargs)  # only what this measurement runs; no run store
    ow.load(CONNECTOR)
    return _load(ow, text)


def run() -> tuple[list[tuple[str, float, str]], list[str]]:
    """Rows of (measurement, seconds, comparison) and the targets missed."""
    rows: list[tuple[str, float, str]] = []
    missed: list[str] = []
    per_step: dict[int, float] = {}

    for n in SIZES:
        wf = _registry(chain_manifest(n))
        result = wf.execute()
        assert result.status == "completed" and len(result.steps) == n
        repeat = max(5, 2000 // n)  # enough runs for a stable median at every size
        native = per_step[n] = median(wf.execute, repeat) / n
        python = median(lambda n=n: plain_chain(n), repeat) / n  # type: ignore[misc]
        lg = langgraph_chain(n)
        target = "<= 1/20 of LangGraph" if n == 10 else "<= 5 µs"
        ok = native <= 5e-6 if n != 10 else True
        rows.append((f"chain of {n} no-op steps, per step: native ({target})", native, ""))
        rows.append(("  plain Python loop, per step", python, f"native is {native / python:,.0f}x python"))
        if lg is None:
            rows.append(("  LangGraph", float("nan"), "not installed (make bench installs it)"))
        else:
            langgraph = median(lg, min(repeat, 5)) / n
            if n == 10:
                ok = native <= langgraph / 20
            rows.append(
                (
                    "  LangGraph StateGraph, per step",
                    langgraph,
                    f"native is 1/{langgraph / native:.1f} of LangGraph{'' if ok else '  MISSED'}",
                )
            )
        if not ok:
            missed.append(f"chain {n}")
    drift = per_step[5000] / per_step[1000]
    ok = drift <= 1.1
    rows.append(
        ("  5,000 vs 1,000, per step (target <= 1.10x)", per_step[5000], f"{drift:.2f}x{'' if ok else '  MISSED'}")
    )
    if not ok:
        missed.append("chain 5000 vs 1000")

    for fan, target in FANS.items():
        wf = _registry(fan_manifest(fan))
        result = wf.execute()
        assert result.status == "completed" and len(result.steps) == fan
        native_fan = median(wf.execute, 3)
        gather = median(lambda fan=fan: asyncio.run(plain_fan(fan)), 3)  # type: ignore[misc]
        ok = native_fan <= target * gather
        rows.append((f"{fan} parallel steps awaiting 50 ms: native", native_fan, ""))
        rows.append(
            (
                "  asyncio.gather",
                gather,
                f"native is {native_fan / gather:.2f}x gather (target <= {target}x){'' if ok else '  MISSED'}",
            )
        )
        if not ok:
            missed.append(f"fan-out {fan}")
        lgf = langgraph_fan(fan)
        if lgf is not None:
            lg_fan = median(lgf, 3)
            rows.append(("  LangGraph Send fan-out", lg_fan, f"native is {native_fan / lg_fan:.2f}x LangGraph"))
    more, also = run_more()
    return rows + more, missed + also


def run_more() -> tuple[list[tuple[str, float, str]], list[str]]:
    """Sync fan-out, forEach, back-to-back runs and peak memory (issue 12)."""
    rows: list[tuple[str, float, str]] = []
    missed: list[str] = []

    wf = _registry(fan_manifest(1000, "snooze"))  # default settings: OpenWorkflow's max_workers
    assert wf.execute().status == "completed"
    native = median(wf.execute, 1)
    rows.append(("1000 parallel sync steps blocking 50 ms: native", native, "default settings"))
    lgs = langgraph_fan(1000, "snooze")
    if lgs is not None:
        lg = median(lgs, 1)
        ok = native <= lg / 4
        rows.append(
            (
                "  LangGraph Send fan-out, default",
                lg,
                f"native is 1/{lg / native:.1f} (target <= 1/4){'' if ok else '  MISSED'}",
            )
        )
        if not ok:
            missed.append("sync fan-out")

    xs = list(range(10_000))
    each = _registry(FOREACH)
    result = each.execute(inputs={"xs": xs})
    assert result.status == "completed" and result.steps["loop"].output["results"][3]["output"] == {"result": 6}
    per_item = median(lambda: each.execute(inputs={"xs": xs}), 3) / len(xs)
    ok = per_item <= 15e-6
    rows.append(
        ("forEach over 10,000 items, template body, per item", per_item, f"target <= 15 µs{'' if ok else '  MISSED'}")
    )
    if not ok:
        missed.append("forEach 10k")

    five = _registry(chain_manifest(5))

    def back_to_back() -> None:
        for _ in range(1000):
            five.execute()

    rate = 1000 / median(back_to_back, 3)
    ok = rate >= 10_000
    rows.append(
        (
            "1,000 back-to-back runs of 5 steps, per run",
            1 / rate,
            f"{rate:,.0f} runs/s (target >= 10,000){'' if ok else '  MISSED'}",
        )
    )
    if not ok:
        missed.append("back-to-back runs")

    chain = _registry(chain_manifest(5000))
    contenders = [
        ("peak memory, chain of 5,000 steps", chain.execute, langgraph_chain(5000)),
        (
            "peak memory, forEach over 10,000 items",
            lambda: each.execute(inputs={"xs": xs}),
            langgraph_fan(10_000, "double"),
        ),
    ]
    for label, ours, theirs in contenders:
        mine = peak_memory(ours)
        if theirs is None:
            rows.append((f"{label} (MB)", mine / 1e9, "LangGraph not installed"))
            continue
        lg_peak = peak_memory(theirs)
        ok = mine <= lg_peak
        rows.append(
            (
                f"{label}: native (ms column: MB)",
                mine / 1e9,
                f"LangGraph {lg_peak / 1e6:.1f} MB: {mine / lg_peak:.2f}x{'' if ok else '  MISSED'}",
            )
        )
        if not ok:
            missed.append(label)
    return rows, missed
