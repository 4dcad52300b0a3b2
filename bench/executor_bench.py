"""Executor benchmarks: per-step overhead and a 1,000-way fan-out, beside plain Python and LangGraph.

All three are measured in the same run on the same machine; the ratios are what to read.
"""

from __future__ import annotations

import operator
import statistics
import time
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

CHAIN = 200
FAN = 1000


def median(fn: Callable[[], Any], repeat: int = 5) -> float:
    fn()  # warm caches (templates compile once per distinct text)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def chain_manifest(n: int) -> str:
    lines = ["name: chain", "steps:", "  - {id: s0, type: transform, expression: '{{ 0 }}'}"]
    lines += [
        f"  - {{id: s{i}, type: transform, expression: '{{{{ steps.s{i - 1}.result + 1 }}}}'}}" for i in range(1, n)
    ]
    lines.append(f"outputs: {{last: {{value: '{{{{ steps.s{n - 1}.result }}}}'}}}}")
    return "\n".join(lines) + "\n"


def fan_manifest(n: int) -> str:
    return f"""
name: fan
steps:
  - id: each
    type: forEach
    items: "{{{{ range({n}) | list }}}}"
    steps: [{{id: body, type: transform, expression: "{{{{ item * 2 }}}}"}}]
"""


def plain_chain(n: int) -> int:
    results: dict[str, int] = {"s0": 0}
    for i in range(1, n):
        results[f"s{i}"] = results[f"s{i - 1}"] + 1
    return results[f"s{n - 1}"]


def plain_fan(n: int) -> list[int]:
    return [i * 2 for i in range(n)]


def langgraph_chain(n: int) -> Callable[[], Any] | None:
    try:
        from langgraph.graph import END, START, StateGraph
    except ImportError:
        return None

    class S(TypedDict):
        v: int

    g = StateGraph(S)
    for i in range(n):
        g.add_node(f"s{i}", lambda s: {"v": s["v"] + 1})
    g.add_edge(START, "s0")
    for i in range(1, n):
        g.add_edge(f"s{i - 1}", f"s{i}")
    g.add_edge(f"s{n - 1}", END)
    app = g.compile()
    return lambda: app.invoke({"v": 0}, {"recursion_limit": n + 10})


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

    g = StateGraph(S)
    g.add_node("body", lambda s: {"out": [s["i"] * 2]})
    g.add_conditional_edges(START, lambda s: [Send("body", {"i": i}) for i in range(n)], ["body"])
    g.add_edge("body", END)
    app = g.compile()
    return lambda: app.invoke({"out": []})


def run() -> list[tuple[str, float, str]]:
    from owf_magics import OpenWorkflow

    ow = OpenWorkflow()
    ow.load(chain_manifest(CHAIN))
    ow.load(fan_manifest(FAN))
    chain, fan = ow.workflow("chain"), ow.workflow("fan")
    assert chain.execute().outputs["last"] == CHAIN - 1
    assert fan.execute().steps["each"].output["totalCount"] == FAN

    rows: list[tuple[str, float, str]] = []
    native_chain = median(chain.execute)
    python_chain = median(lambda: plain_chain(CHAIN))
    lg = langgraph_chain(CHAIN)
    lg_chain = median(lg) if lg else None
    rows.append((f"native: {CHAIN}-step chain, per step", native_chain / CHAIN, ""))
    rows.append(
        ("  plain Python, per step", python_chain / CHAIN, f"native/python ×{native_chain / python_chain:,.0f}")
    )
    if lg_chain is not None:
        rows.append(
            ("  LangGraph StateGraph, per step", lg_chain / CHAIN, f"native/langgraph ×{native_chain / lg_chain:.2f}")
        )
    native_fan = median(fan.execute, 3)
    python_fan = median(lambda: plain_fan(FAN))
    lgf = langgraph_fan(FAN)
    lg_fan = median(lgf, 3) if lgf else None
    rows.append((f"native: forEach over {FAN} items", native_fan, ""))
    rows.append(("  plain Python list comprehension", python_fan, f"native/python ×{native_fan / python_fan:,.0f}"))
    if lg_fan is not None:
        rows.append(("  LangGraph Send fan-out", lg_fan, f"native/langgraph ×{native_fan / lg_fan:.2f}"))
    else:
        rows.append(("  LangGraph", float("nan"), "not installed (pip install langgraph)"))
    return rows
