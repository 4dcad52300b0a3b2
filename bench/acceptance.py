"""Issue 12's acceptance table (and issue 11's first-cell figure), measured in one run.

Every figure is timed beside its comparator in the same process, in turns (round-robin, each
contender after a `gc.collect()`), so load on the shared machine hits both sides alike; the table
prints both, their ratio, the target and PASS/MISS. Fresh-process figures run a new interpreter
per sample with bytecode caches allowed (a user's second process has them). Run by ``make bench``
(through bench/run.py) or alone: ``python bench/acceptance.py``.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import operator
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypedDict

sys.path.insert(0, str(Path(__file__).parent))

from owf_magics import inline

ROOT = Path(__file__).resolve().parent.parent
CONNECTOR = """
connector: {name: acc, kind: sdk}
actions:
  - {name: noop, handler: {function: acceptance.noop}}
  - {name: nap, handler: {function: acceptance.nap}}
  - {name: nap_sync, handler: {function: acceptance.nap_sync}}
"""


# -- the handlers every contender calls ----------------------------------------------------------


@inline
def noop() -> None:
    """Nothing, on the event loop: what is left is the engine's own cost."""


async def nap() -> None:
    await asyncio.sleep(0.05)


def nap_sync() -> None:
    """A blocking 50 ms call (an unmarked sync handler: the thread pool, default settings)."""
    time.sleep(0.05)


# -- the table -----------------------------------------------------------------------------------


@dataclass
class Row:
    figure: str
    ours: float | None  # seconds (or runs/s, bytes: see unit)
    theirs: float | None
    comparator: str
    target: str
    ok: bool | None
    unit: str = "s"
    note: str = ""


def shown(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "runs/s":
        return f"{value:,.0f}/s"
    if unit == "B":
        return f"{value / 2**20:.1f} MiB"
    if value < 1e-3:
        return f"{value * 1e6:.1f} µs"
    if value < 1:
        return f"{value * 1e3:.1f} ms"
    return f"{value:.2f} s"


def ratio(ours: float | None, theirs: float | None) -> str:
    if not ours or not theirs:
        return "-"
    r = ours / theirs
    return f"{r:.2f}x" if r >= 0.2 else f"1/{theirs / ours:.1f}"


def turns(contenders: dict[str, Callable[[], Any]], repeat: int, warm: bool = True) -> dict[str, float]:
    """Median seconds per call of each contender, timed in turns."""
    if warm:
        for fn in contenders.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeat):
        for name, fn in contenders.items():
            gc.collect()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


# -- workloads -----------------------------------------------------------------------------------


def chain_manifest(n: int, action: str = "noop") -> str:
    lines = [f"name: chain{n}", "steps:", f"  - {{id: s0, connector: acc, action: {action}}}"]
    lines += [f"  - {{id: s{i}, connector: acc, action: {action}, dependsOn: [s{i - 1}]}}" for i in range(1, n)]
    return "\n".join(lines) + "\n"


def fan_manifest(n: int, action: str) -> str:
    lines = [f"name: fan{n}{action}", "steps:"]
    lines += [f"  - {{id: s{i}, connector: acc, action: {action}}}" for i in range(n)]
    return "\n".join(lines) + "\n"


FOREACH = """
name: loop
inputs: {items: {type: array}}
steps:
  - id: each
    type: forEach
    items: "{{ inputs.items }}"
    steps: [{id: double, type: transform, expression: "{{ item * 2 }}"}]
"""


def registry(state: Any = False) -> Any:
    from owf_magics import OpenWorkflow

    ow = OpenWorkflow(state=state)
    ow.load(CONNECTOR)
    return ow


def workflow(ow: Any, text: str) -> Any:
    [item] = ow.load(text)
    return ow.workflow(item.name)


def lg_chain(n: int, checkpointer: Any = None) -> Callable[[], Any]:
    from langgraph.graph import END, START, StateGraph

    class S(TypedDict):
        v: int

    def node(state: S) -> dict[str, Any]:
        noop()
        return {}

    g = StateGraph(S)
    for i in range(n):
        g.add_node(f"s{i}", node)
    g.add_edge(START, "s0")
    for i in range(1, n):
        g.add_edge(f"s{i - 1}", f"s{i}")
    g.add_edge(f"s{n - 1}", END)
    app = g.compile(checkpointer=checkpointer)
    runs = itertools.count()
    return lambda: app.invoke({"v": 0}, {"recursion_limit": n + 10, "configurable": {"thread_id": str(next(runs))}})


def lg_fan(n: int, body: Callable[..., Any], *, sync_invoke: bool = False) -> Callable[[], Any]:
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Send

    class S(TypedDict):
        out: Annotated[list[Any], operator.add]

    g = StateGraph(S)
    g.add_node("body", body)
    g.add_conditional_edges(START, lambda s: [Send("body", {"i": i}) for i in range(n)], ["body"])
    g.add_edge("body", END)
    app = g.compile()
    if sync_invoke:
        return lambda: app.invoke({"out": []})
    return lambda: asyncio.run(app.ainvoke({"out": []}))


async def _nap_node(item: dict[str, Any]) -> dict[str, Any]:
    await nap()
    return {"out": [item["i"]]}


def _nap_sync_node(item: dict[str, Any]) -> dict[str, Any]:
    nap_sync()
    return {"out": [item["i"]]}


async def _double_node(item: dict[str, Any]) -> dict[str, Any]:
    return {"out": [item["i"] * 2]}


# -- figures -------------------------------------------------------------------------------------


def engine_rows() -> list[Row]:
    rows: list[Row] = []
    ow = registry()
    c10, c1k, c5k = (workflow(ow, chain_manifest(n)) for n in (10, 1000, 5000))
    for wf in (c10, c1k, c5k):
        assert wf.execute().status == "completed"
    lg10 = lg_chain(10)

    def batch(fn: Callable[[], Any], k: int) -> Callable[[], None]:
        def run() -> None:
            for _ in range(k):
                fn()

        return run

    t = turns({"ours": batch(c10.execute, 200), "lg": batch(lg10, 200)}, 5)
    ours, theirs = t["ours"] / 2000, t["lg"] / 2000
    rows.append(Row("chain of 10 no-op steps, per step", ours, theirs, "LangGraph", "<= 1/20", ours <= theirs / 20))
    lg1k = lg_chain(1000)
    t = turns({"1k": c1k.execute, "5k": c5k.execute, "lg": lg1k}, 5)
    one, five, lg = t["1k"] / 1000, t["5k"] / 5000, t["lg"] / 1000
    rows.append(Row("chain of 1,000, per step", one, lg, "LangGraph (1,000)", "<= 5 µs", one <= 5e-6))
    rows.append(
        Row(
            "chain of 5,000, per step",
            five,
            one,
            "our 1,000 figure",
            "<= 5 µs, within 10% of 1,000",
            five <= 5e-6 and five <= one * 1.1,
        )
    )
    for n, limit in ((1000, 1.1), (5000, 1.3)):
        fan = workflow(ow, fan_manifest(n, "nap"))
        assert fan.execute().status == "completed"

        async def gather(n: int = n) -> None:
            await asyncio.gather(*(nap() for _ in range(n)))

        t = turns({"ours": fan.execute, "gather": lambda g=gather: asyncio.run(g())}, 5)  # type: ignore[misc]
        rows.append(
            Row(
                f"{n:,} parallel 50 ms async steps",
                t["ours"],
                t["gather"],
                "asyncio.gather",
                f"<= {limit}x",
                t["ours"] <= t["gather"] * limit,
            )
        )
    fan = workflow(ow, fan_manifest(1000, "nap_sync"))
    t = turns({"ours": fan.execute, "lg": lg_fan(1000, _nap_sync_node, sync_invoke=True)}, 1, warm=False)
    rows.append(
        Row(
            "1,000 parallel 50 ms sync steps, default settings",
            t["ours"],
            t["lg"],
            "LangGraph default (invoke)",
            "<= 1/4",
            t["ours"] <= t["lg"] / 4,
        )
    )
    loop = workflow(ow, FOREACH)
    items = list(range(10_000))
    assert loop.execute(inputs={"items": items[:3]}).status == "completed"

    async def plain() -> None:
        async def body(i: int) -> int:
            return i * 2

        await asyncio.gather(*(body(i) for i in items))

    t = turns({"ours": lambda: loop.execute(inputs={"items": items}), "gather": lambda: asyncio.run(plain())}, 3)
    per = t["ours"] / 10_000
    rows.append(
        Row(
            "forEach over 10,000 items, template body, per item",
            per,
            t["gather"] / 10_000,
            "asyncio.gather (per item)",
            "<= 15 µs",
            per <= 15e-6,
        )
    )
    five = workflow(ow, chain_manifest(5).replace("name: chain5", "name: five"))
    b2b = batch(five.execute, 1000)
    with tempfile.TemporaryDirectory() as tmp:
        stored_ow = registry(str(Path(tmp) / "runs.db"))
        five_stored = workflow(stored_ow, chain_manifest(5).replace("name: chain5", "name: five"))
        t = turns({"bare": b2b, "stored": batch(five_stored.execute, 1000)}, 3)
        stored_ow.close()
    rows.append(
        Row(
            "1,000 back-to-back 5-step runs, no store",
            1000 / t["bare"],
            None,
            "",
            ">= 10,000/s",
            1000 / t["bare"] >= 10_000,
            "runs/s",
        )
    )
    rows.append(
        Row("  the same, file store", 1000 / t["stored"], None, "", ">= 2,000/s", 1000 / t["stored"] >= 2_000, "runs/s")
    )
    return rows


def sqlite_floor(n: int, path: Path) -> Callable[[], None]:
    """The physical floor of a durable chain: per step one WAL transaction (synchronous=NORMAL, as
    the store) with three inserts (a step row and two events), plain sqlite3, nothing around it."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE steps (run_id TEXT, step_key TEXT, output TEXT, PRIMARY KEY (run_id, step_key))")
    conn.execute("CREATE TABLE events (run_id TEXT, seq INTEGER, body TEXT, PRIMARY KEY (run_id, seq))")
    runs = itertools.count()

    def run() -> None:
        rid = f"run{next(runs)}"
        for i in range(n):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO steps VALUES (?, ?, ?)", (rid, f"s{i}", "null"))
            conn.execute("INSERT INTO events VALUES (?, ?, ?)", (rid, 2 * i, '{"type":"step.started"}'))
            conn.execute("INSERT INTO events VALUES (?, ?, ?)", (rid, 2 * i + 1, '{"type":"step.completed"}'))
            conn.execute("COMMIT")

    return run


def store_rows() -> list[Row]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    with tempfile.TemporaryDirectory() as tmp:
        ow = registry(str(Path(tmp) / "runs.db"))
        wf = workflow(ow, chain_manifest(1000))
        saver = SqliteSaver(sqlite3.connect(str(Path(tmp) / "lg.db"), check_same_thread=False))
        t = turns(
            {"ours": wf.execute, "floor": sqlite_floor(1000, Path(tmp) / "floor.db"), "lg": lg_chain(1000, saver)}, 3
        )
        ow.close()
    ours, floor, lg = (t[k] / 1000 for k in ("ours", "floor", "lg"))
    return [
        Row("1,000-step chain, file store, per step", ours, floor, "raw sqlite3 floor", "<= 1.3x", ours <= floor * 1.3),
        Row("  the same", ours, lg, "LangGraph + SqliteSaver", "<= 1/25", ours <= lg / 25),
    ]


AGENT = """
agents:
  - name: adder
    toolset: [acccalc]
    execution: {backend: langchain, runtime: python}
    model:
      provider: scripted
      responses:
        - tool_calls: [{name: acccalc_add, args: {a: 1, b: 2}}]
        - content: "3"
"""
CALC = """
connector: {name: acccalc, kind: sdk}
actions:
  - name: add
    input: {type: object, properties: {a: {type: number}, b: {type: number}}, required: [a, b]}
    handler: {function: acceptance.add}
"""


@inline
def add(a: float, b: float) -> dict[str, float]:
    return {"result": a + b}


def adapter_rows() -> list[Row]:
    from langchain.agents import create_agent
    from langchain_core.messages import HumanMessage
    from langchain_core.tools import StructuredTool

    from owf_magics.agents.providers import make_model
    from owf_magics.backends.langchain_parts import OfflineChatModel

    ow = registry()
    chain = workflow(ow, chain_manifest(1000))
    assert chain.execute(prefer_backend="langchain").status == "completed"
    ow.load(CALC)
    ow.load(AGENT)
    n = 20
    steps = ["name: agents", "steps:"] + [
        f"  - {{id: a{i}, type: agent, agent: adder, input: go{i}{f', dependsOn: [a{i - 1}]' if i else ''}}}"
        for i in range(n)
    ]
    agents = workflow(ow, "\n".join(steps) + "\n")
    assert agents.execute().status == "completed"
    spec = ow.agent("adder").model.model
    raw_tool = StructuredTool.from_function(
        coroutine=_add_tool,
        name="acccalc_add",
        description="add",
        args_schema=ow.connector("acccalc").model.actions[0].input,
    )
    raw_graph = create_agent(OfflineChatModel(owf_model=make_model(spec)), [raw_tool], name="adder")

    async def raw_agents() -> None:
        for i in range(n):
            await raw_graph.ainvoke({"messages": [HumanMessage(f"go{i}")]}, {"recursion_limit": 20})

    t = turns(
        {
            "node": lambda: chain.execute(prefer_backend="langchain"),
            "lg": lg_chain(1000),
            "agent": agents.execute,
            "raw_agent": lambda: asyncio.run(raw_agents()),
        },
        7,
    )
    node, lg, agent, raw = t["node"] / 1000, t["lg"] / 1000, t["agent"] / n, t["raw_agent"] / n
    return [
        Row("langchain backend, per node (chain of 1,000)", node, lg, "raw LangGraph", "<= 1.2x", node <= lg * 1.2),
        Row("langchain backend, per agent step", agent, raw, "raw create_agent", "<= 1.2x", agent <= raw * 1.2),
    ]


async def _add_tool(a: float, b: float) -> str:
    return str(add(a, b))


COLD = """
import sys, time
t0 = time.perf_counter(); c0 = time.process_time()
from owf_magics import OpenWorkflow
ow = OpenWorkflow(state=False)
ow.load(sys.argv[1])
ow.workflow("Big").plan()
print(time.perf_counter() - t0, time.process_time() - c0)
"""
IMPORT = """
import time
t0 = time.perf_counter(); c0 = time.process_time()
from owf_magics import OpenWorkflow
print(time.perf_counter() - t0, time.process_time() - c0)
"""
LG_COLD = """
import sys, time
t0 = time.perf_counter(); c0 = time.process_time()
from typing import TypedDict
from langgraph.graph import END, START, StateGraph
class S(TypedDict):
    v: int
g = StateGraph(S)
n = 1000
for i in range(n):
    g.add_node(f"s{i}", lambda s: {})
g.add_edge(START, "s0")
for i in range(1, n):
    g.add_edge(f"s{i - 1}", f"s{i}")
g.add_edge(f"s{n - 1}", END)
g.compile()
print(time.perf_counter() - t0, time.process_time() - c0)
"""


def fresh(code: str, *args: str, repeat: int = 5) -> tuple[float, float]:
    """Median wall and CPU seconds a fresh interpreter reports for `code` (bytecode caches on)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    walls, cpus = [], []
    for i in range(repeat + 1):
        out = subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, env=env, cwd=ROOT
        )
        if i:  # the first run writes the bytecode caches
            wall, cpu = map(float, out.stdout.split())
            walls.append(wall)
            cpus.append(cpu)
    return statistics.median(walls), statistics.median(cpus)


def cold_rows() -> list[Row]:
    from run import generated_workflow

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.yaml"
        path.write_text(generated_workflow(1000), encoding="utf-8")
        wall, cpu = fresh(COLD, str(path))
    lg_wall, _ = fresh(LG_COLD, repeat=3)
    iwall, icpu = fresh(IMPORT)
    return [
        Row(
            "fresh process: load + validate + plan of 1,000 steps",
            wall,
            lg_wall,
            "LangGraph import + compile, 1,000 nodes",
            "<= 0.4 s",
            wall <= 0.4,
            note=f"cpu {cpu * 1000:.0f} ms",
        ),
        Row(
            "fresh process: from owf_magics import OpenWorkflow",
            iwall,
            None,
            "",
            "<= 150 ms",
            iwall <= 0.150,
            note=f"cpu {icpu * 1000:.0f} ms",
        ),
    ]


def peak(fn: Callable[[], Any]) -> float:
    """Peak bytes traced while `fn` runs, above what was allocated before it."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    try:
        fn()
        return float(tracemalloc.get_traced_memory()[1] - base)
    finally:
        tracemalloc.stop()


def memory_rows() -> list[Row]:
    ow = registry()
    chain = workflow(ow, chain_manifest(5000))
    loop = workflow(ow, FOREACH)
    items = list(range(10_000))
    chain.execute()
    loop.execute(inputs={"items": items[:3]})
    lg5k = lg_chain(5000)
    lg_loop = lg_fan(10_000, _double_node)
    lg5k()
    lg_loop()  # every contender warm: lazy set-up is not part of a run's peak
    ours_chain, lg_chain_peak = peak(chain.execute), peak(lg5k)
    ours_loop, lg_loop_peak = peak(lambda: loop.execute(inputs={"items": items})), peak(lg_loop)
    return [
        Row(
            "peak memory, 5,000-step chain",
            ours_chain,
            lg_chain_peak,
            "LangGraph",
            "<= LangGraph's",
            ours_chain <= lg_chain_peak,
            "B",
        ),
        Row(
            "peak memory, 10k forEach (template body)",
            ours_loop,
            lg_loop_peak,
            "LangGraph Send fan-out",
            "<= LangGraph's",
            ours_loop <= lg_loop_peak,
            "B",
        ),
    ]


FIRST_CELL = """
%%workflow
connector: {name: shop, kind: sdk}
actions:
  - name: order
    input:
      type: object
      required: [sku, qty]
      properties: {sku: {type: string, pattern: "^[A-Z]+$"}, qty: {type: integer, minimum: 1}, url: {type: string, format: uri}}
    handler: {function: owf_magics.demo_tools.text_stats}
---
name: buy
inputs: {sku: {type: string, default: ABC}}
steps:
  - {id: o, connector: shop, action: order, input: {sku: "{{ inputs.sku }}", qty: 2}}
"""


def first_cell(repeat: int = 3) -> tuple[float, float] | None:
    """Median seconds of the first ``%%workflow`` cell with JSON Schemas in fresh kernels (after
    ``%load_ext``, which notebook_bench measures on its own)."""
    try:
        from jupyter_client.manager import start_new_kernel
    except ImportError:
        return None
    code = (
        "get_ipython().run_line_magic('load_ext', 'owf_magics')\n"
        "import time as _t\n_t0 = _t.perf_counter(); _c0 = _t.process_time()\n"
        f"get_ipython().run_cell_magic('workflow', '', {FIRST_CELL.split(chr(10), 2)[2]!r})\n"
        "print('OWF-FIRST-CELL', _t.perf_counter() - _t0, _t.process_time() - _c0)"
    )
    times = []
    for _ in range(repeat):
        km, kc = start_new_kernel(kernel_name="python3")
        try:
            texts: list[str] = []

            def hook(msg: dict[str, Any], sink: list[str] = texts) -> None:
                if msg["msg_type"] == "stream":
                    sink.append(msg["content"]["text"])

            kc.execute_interactive(code, output_hook=hook, timeout=120)
            line = next(x for x in "".join(texts).splitlines() if x.startswith("OWF-FIRST-CELL"))
            times.append((float(line.split()[1]), float(line.split()[2])))
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)


def notebook_rows() -> list[Row]:
    t = first_cell()
    return [
        Row(
            "first %%workflow cell with JSON Schemas, fresh kernel",
            None if t is None else t[0],
            None,
            "",
            "<= 300 ms",
            None if t is None else t[0] <= 0.300,
            note="" if t is None else f"cpu {t[1] * 1000:.0f} ms, graphviz's dot beside it",
        )
    ]


SECTIONS: dict[str, Callable[[], list[Row]]] = {
    "engine": engine_rows,
    "store": store_rows,
    "adapters": adapter_rows,
    "cold start": cold_rows,
    "memory": memory_rows,
    "notebook": notebook_rows,
}


def print_table(rows: list[Row]) -> int:
    head = f"{'figure':<54}{'owf-magics':>13}{'comparator':>13}  {'ratio':>8}  {'target':<30}{'':>5}  vs"
    print(head)
    print("-" * len(head))
    missed = 0
    for r in rows:
        mark = "-" if r.ok is None else ("PASS" if r.ok else "MISS")
        missed += r.ok is False
        rat = ratio(r.ours, r.theirs) if r.unit != "runs/s" else "-"
        extra = f"  ({r.note})" if r.note else ""
        print(
            f"{r.figure:<54}{shown(r.ours, r.unit):>13}{shown(r.theirs, r.unit):>13}  {rat:>8}  {r.target:<30}{mark:>5}"
            f"  {r.comparator}{extra}"
        )
    return missed


def main(sections: list[str] | None = None) -> int:
    rows: list[Row] = []
    for name, fn in SECTIONS.items():
        if sections and name not in sections:
            continue
        t0 = time.perf_counter()
        try:
            rows += fn()
        except ImportError as exc:
            rows.append(Row(f"{name}: not measured ({exc.name} missing)", None, None, "", "", None))
        print(f"[{name}: {time.perf_counter() - t0:.0f} s]", file=sys.stderr)
    cores = os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"\nissue 12 acceptance (Python {sys.version.split()[0]}, {cores} cores, load average {load:.1f}; "
        "medians of runs taken in turns)"
    )
    missed = print_table(rows)
    print(f"{len(rows) - missed} of {len(rows)} figures at target" if not missed else f"{missed} figure(s) MISS")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or None))
