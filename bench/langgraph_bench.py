"""The cost of the LangGraph adapter: a 1,000-step chain and a 1,000-way fan-out run natively,
through the langchain backend, as a compiled graph (``to_langgraph()``), and as raw LangGraph.

All four are measured in the same run; the ratios to native and to raw LangGraph are what to read.
"""

from __future__ import annotations

import sys

from executor_bench import chain_manifest, fan_manifest, langgraph_chain, langgraph_fan, median

CHAIN = 1000
FAN = 1000


def run() -> list[tuple[str, float, str]]:
    from owf_magics import OpenWorkflow

    ow = OpenWorkflow()
    ow.load(chain_manifest(CHAIN).replace("name: chain", "name: lgchain"))
    ow.load(fan_manifest(FAN).replace("name: fan", "name: lgfan"))
    chain, fan = ow.workflow("lgchain"), ow.workflow("lgfan")
    limit = {"recursion_limit": CHAIN * 2 + 10}
    compiled_chain, compiled_fan = chain.to_langgraph(), fan.to_langgraph()
    assert chain.execute(prefer_backend="langchain").outputs["last"] == CHAIN - 1
    assert compiled_chain.invoke({"inputs": {}}, limit)["outputs"]["last"] == CHAIN - 1
    assert compiled_fan.invoke({"inputs": {}})["steps"]["each"]["output"]["totalCount"] == FAN

    rows: list[tuple[str, float, str]] = []

    def add(label: str, value: float, base: float | None, raw: float | None, per: int) -> None:
        ratio = []
        if base is not None:
            ratio.append(f"/native ×{value / base:.2f}")
        if raw is not None:
            ratio.append(f"/langgraph ×{value / raw:.2f}")
        rows.append((label, value / per, "  ".join(ratio)))

    native = median(chain.execute, 3)
    backend = median(lambda: chain.execute(prefer_backend="langchain"), 3)
    compiled = median(lambda: compiled_chain.invoke({"inputs": {}}, limit), 3)
    lg = langgraph_chain(CHAIN)
    raw = median(lg, 3) if lg else None
    add(f"{CHAIN}-step chain, per step: native", native, None, raw, CHAIN)
    add("  langchain backend (each step a LangGraph node)", backend, native, raw, CHAIN)
    add("  to_langgraph() compiled graph", compiled, native, raw, CHAIN)
    if raw is not None:
        add("  raw LangGraph StateGraph", raw, native, None, CHAIN)

    native_fan = median(fan.execute, 3)
    backend_fan = median(lambda: fan.execute(prefer_backend="langchain"), 3)
    compiled_fan_t = median(lambda: compiled_fan.invoke({"inputs": {}}), 3)
    lgf = langgraph_fan(FAN)
    raw_fan = median(lgf, 3) if lgf else None
    add(f"forEach over {FAN} items, whole step: native", native_fan, None, raw_fan, 1)
    add("  langchain backend", backend_fan, native_fan, raw_fan, 1)
    add("  to_langgraph() Send fan-out", compiled_fan_t, native_fan, raw_fan, 1)
    if raw_fan is not None:
        add("  raw LangGraph Send fan-out", raw_fan, native_fan, None, 1)
    return rows


def main() -> int:
    print(f"{'langgraph adapter':<62}{'median':>10}  ratio")
    for name, value, ratio in run():
        print(f"{name:<62}{value * 1000:>8.3f}ms  {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
