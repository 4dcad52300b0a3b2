"""Benchmarks: import time, and load / validate / plan of a generated 1,000-step workflow; then
the executor, the run store and the LangGraph adapter in detail; last, issue 12's acceptance table
(bench/acceptance.py: every figure beside its comparator, ratio, target, PASS/MISS).

Run with ``make bench``. Prints medians of repeated runs and checks them against the targets
written in docs/performance.md. Timing lives here, never in unit tests.
"""

from __future__ import annotations

import gc
import os
import statistics
import subprocess
import sys
from typing import Any

TARGETS = {
    "import owf_magics": 0.150,
    "load (parse + normalise + models + validate)": 0.500,
    "validate + plan": 0.050,
}


def generated_workflow(n: int = 1000) -> str:
    """A connector and one workflow of `n` steps: chains, fan-outs, branches and loops."""
    lines = [
        "connector: {name: bench, namespace: perf, version: 1.0.0, kind: sdk}",
        "actions:",
        "  - name: work",
        "    input: {type: object, properties: {x: {}}}",
        "    handler: {function: owf_magics.demo_tools.text_stats}",
        "---",
        "workflows:",
        "  - name: Big",
        "    inputs: {seed: {type: string, default: go}}",
        "    steps:",
    ]
    i = 0
    while i < n:
        kind = i % 10
        if kind == 7 and i + 2 < n:
            lines += [
                f"      - id: s{i}",
                "        type: if",
                f"        condition: \"{{{{ steps.s{i - 1}.output.words > 1 && inputs.seed != 'x' }}}}\"",
                "        then:",
                f'          - {{id: s{i + 1}, type: action, connector: "connector:perf/bench@^1.0", action: work, input: {{x: "{{{{ steps.s{i - 2}.output }}}}"}}}}',
                "        else:",
                f'          - {{id: s{i + 2}, type: transform, expression: "{{{{ inputs.seed | upper }}}}"}}',
            ]
            i += 3
        elif kind == 3 and i + 1 < n:
            lines += [
                f"      - id: s{i}",
                "        type: forEach",
                f'        items: "{{{{ steps.s{i - 1}.output.words }}}}"',
                "        steps:",
                f'          - {{id: s{i + 1}, type: action, connector: bench, action: work, input: {{x: "{{{{ item }}}}"}}}}',
            ]
            i += 2
        else:
            dep = f"steps.s{i - 1}.output" if i and kind % 2 == 0 else "inputs.seed"
            lines.append(
                f'      - {{id: s{i}, type: action, connector: "connector:perf/bench@1.0.0", action: work, '
                f'input: {{x: "{{{{ {dep} }}}}"}}}}'
            )
            i += 1
    return "\n".join(lines) + "\n"


def import_time(code: str, repeat: int = 7) -> float:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # a user's second process has the bytecode caches
    times = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", f"import time; t=time.perf_counter(); {code}; print(time.perf_counter()-t)"],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        times.append(float(out.stdout.strip()))
    return statistics.median(times)


def main() -> int:
    from executor_bench import median as median_time

    from owf_magics import OpenWorkflow
    from owf_magics.errors import DiagnosticBag
    from owf_magics.manifest.catalog import Catalog
    from owf_magics.manifest.loader import parse_text
    from owf_magics.manifest.normalize import split_document
    from owf_magics.manifest.templates import analyse
    from owf_magics.plan.validation import Validator

    text = generated_workflow(1000)
    results: dict[str, float] = {}
    results["import owf_magics"] = import_time("import owf_magics")
    results["from owf_magics import OpenWorkflow (pydantic, jinja2, yaml)"] = import_time(
        "from owf_magics import OpenWorkflow"
    )

    ow = OpenWorkflow()
    backends = ow.backend_registry

    def load_fresh() -> Any:
        analyse.cache_clear()  # measure a cold template cache: the manifest is new
        return OpenWorkflow().load(text)

    load_fresh()  # warm imports
    results["load (parse + normalise + models + validate)"] = median_time(load_fresh, 5)

    bag = DiagnosticBag()
    results["  parse YAML"] = median_time(lambda: parse_text(text, bag=bag), 5)

    def parse_paused() -> Any:
        gc.disable()
        try:
            return parse_text(text, bag=bag)
        finally:
            gc.enable()

    # the same with the collector paused, as OpenWorkflow.load does: the difference is the full
    # collections the parse's burst of containers triggers over this process's large heap
    results["  parse YAML, collector paused (as in a load)"] = median_time(parse_paused, 5)
    docs = parse_text(text, bag=bag)

    def norm_and_models() -> list[Any]:
        raws = []
        for d in parse_text(text, bag=DiagnosticBag()):
            raws.extend(split_document(d, DiagnosticBag()))
        return Validator(Catalog(), backends, DiagnosticBag()).build(raws)

    results["  parse + normalise + models"] = median_time(norm_and_models, 5)
    assert docs

    ow.load(text)
    wf = ow.workflow("Big")
    item = wf.item
    catalog = ow.catalog

    def validate_and_plan() -> Any:
        bag = DiagnosticBag()
        v = Validator(catalog, backends, bag)
        v.check([item])
        assert not bag.errors, bag.errors[:3]
        item.graph = v.graphs[id(item)]
        item.plans.clear()  # plans are cached per workflow: measure the resolution itself
        return wf.plan()

    validate_and_plan()
    results["validate + plan"] = median_time(validate_and_plan, 9)

    def plan_only() -> Any:
        item.plans.clear()
        return wf.plan()

    results["  plan only"] = median_time(plan_only, 9)
    steps = len(wf.graph.nodes)

    print(f"owf-magics benchmarks (Python {sys.version.split()[0]}; workflow of {steps} steps)")
    print(f"{'measurement':<62}{'median':>10}{'target':>10}")
    failed = []
    for name, value in results.items():
        target = TARGETS.get(name)
        mark = ""
        if target is not None:
            mark = f"{target * 1000:>8.0f}ms"
            if value > target:
                failed.append(name)
                mark += "  OVER"
        print(f"{name:<62}{value * 1000:>8.1f}ms{mark}")
    if failed:
        print(f"over target: {', '.join(failed)}")

    import executor_bench

    print()
    print(f"{'executor (same run, same machine)':<52}{'median':>12}  comparison")
    rows, missed = executor_bench.run()
    import durable_bench

    more, also = durable_bench.run()
    rows, missed = rows + more, missed + also
    for name, value, ratio in rows:
        shown = f"{value * 1e6:>9.1f}µs" if value < 0.01 else f"{value * 1000:>9.1f}ms"
        print(f"{name:<52}{shown:>12}  {ratio}")
    if missed:
        print(f"executor targets missed: {', '.join(missed)}")

    import importlib.util

    if importlib.util.find_spec("langgraph") is None:  # make bench installs it
        return 0
    import langgraph_bench

    print()
    langgraph_bench.main()

    import acceptance

    print()
    return acceptance.main()


if __name__ == "__main__":
    sys.exit(main())
