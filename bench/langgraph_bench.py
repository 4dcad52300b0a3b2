"""The cost of the LangGraph adapter, on executor_bench's workloads: a chain of 1,000 no-op
function steps and 1,000 independent steps awaiting 50 ms, run natively, through the langchain
backend, as the compiled graph of ``to_langgraph()``, and as raw LangGraph, in the same run.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from executor_bench import CONNECTOR, _load, chain_manifest, fan_manifest, langgraph_chain, langgraph_fan, median

CHAIN = 1000
FAN = 1000


def run() -> list[tuple[str, float, str]]:
    from owf_magics import OpenWorkflow

    ow = OpenWorkflow(state=False)  # the engine alone, as executor_bench measures it
    ow.load(CONNECTOR)
    chain, fan = _load(ow, chain_manifest(CHAIN)), _load(ow, fan_manifest(FAN))
    limit = {"recursion_limit": CHAIN * 2 + 10}
    compiled_chain, compiled_fan = chain.to_langgraph(), fan.to_langgraph()
    assert chain.execute(prefer_backend="langchain").status == "completed"
    assert len(compiled_chain.invoke({"inputs": {}}, limit)["steps"]) == CHAIN
    assert len(asyncio.run(compiled_fan.ainvoke({"inputs": {}}))["steps"]) == FAN

    rows: list[tuple[str, float, str]] = []

    def add(label: str, value: float, native: float | None, raw: float | None, per: int) -> None:
        ratio = []
        if native is not None:
            ratio.append(f"{value / native:.1f}x native")
        if raw is not None:
            ratio.append(f"{value / raw:.2f}x raw LangGraph")
        rows.append((label, value / per, ", ".join(ratio)))

    native = median(chain.execute, 3)
    backend = median(lambda: chain.execute(prefer_backend="langchain"), 3)
    compiled = median(lambda: compiled_chain.invoke({"inputs": {}}, limit), 3)
    lg = langgraph_chain(CHAIN)
    raw = median(lg, 3) if lg else None
    add(f"chain of {CHAIN} no-op steps, per step: native", native, None, raw, CHAIN)
    add("  langchain backend (each step a LangGraph node)", backend, native, raw, CHAIN)
    add("  to_langgraph() graph.invoke", compiled, native, raw, CHAIN)
    if raw is not None:
        add("  raw LangGraph StateGraph", raw, native, None, CHAIN)

    def compiled_fan_run() -> Any:
        return asyncio.run(compiled_fan.ainvoke({"inputs": {}}))

    native_fan = median(fan.execute, 3)
    backend_fan = median(lambda: fan.execute(prefer_backend="langchain"), 3)
    compiled_fan_t = median(compiled_fan_run, 3)
    lgf = langgraph_fan(FAN)
    raw_fan = median(lgf, 3) if lgf else None
    add(f"{FAN} parallel steps awaiting 50 ms: native", native_fan, None, raw_fan, 1)
    add("  langchain backend", backend_fan, native_fan, raw_fan, 1)
    add("  to_langgraph() graph.ainvoke (one superstep)", compiled_fan_t, native_fan, raw_fan, 1)
    if raw_fan is not None:
        add("  raw LangGraph Send fan-out", raw_fan, native_fan, None, 1)
    return rows


def main() -> int:
    print(f"{'langgraph adapter (same run, same machine)':<52}{'median':>12}  comparison")
    for name, value, ratio in run():
        shown = f"{value * 1e6:>9.1f}µs" if value < 0.01 else f"{value * 1000:>9.1f}ms"
        print(f"{name:<52}{shown:>12}  {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
