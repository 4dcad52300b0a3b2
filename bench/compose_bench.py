"""Issue 13's figure: validate + plan of a composition of 50 inline parts x 20 steps, beside the same
1,000 steps written flat (target: within 1.2x).

Both sides load YAML text into a fresh registry and plan the workflow; they are timed in turns
(round-robin, after a `gc.collect()`), so load on the shared machine hits both alike. The flat text
has the very ids and references the expansion produces, so both plans are the same graph.
Run by ``make bench`` or alone: ``python bench/compose_bench.py``.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from owf_magics import OpenWorkflow

PARTS, STEPS, ROUNDS, TARGET = 50, 20, 7, 1.2


def part_text() -> str:
    lines = [
        "  - name: part",
        "    inputs: {seed: {type: string}}",
        "    steps:",
        '      - {id: s0, type: transform, expression: "{{ inputs.seed }}-0"}',
    ]
    for i in range(1, STEPS):
        lines.append(f'      - {{id: s{i}, type: transform, expression: "{{{{ steps.s{i - 1}.output.result }}}}-{i}"}}')
    lines.append(f'    outputs: {{out: {{value: "{{{{ steps.s{STEPS - 1}.output.result }}}}", type: string}}}}')
    return "\n".join(lines)


def composed_text() -> str:
    lines = ["workflows:", part_text(), "  - name: composed", "    steps:"]
    lines.append("      - {id: p0, workflow: part, inline: true, with: {seed: start}}")
    for p in range(1, PARTS):
        lines.append(
            f'      - {{id: p{p}, workflow: part, inline: true, with: {{seed: "{{{{ steps.p{p - 1}.outputs.out }}}}"}}}}'
        )
    lines.append(f'    outputs: {{out: "{{{{ steps.p{PARTS - 1}.outputs.out }}}}"}}')
    return "\n".join(lines) + "\n"


def flat_text() -> str:
    lines = ["workflows:", part_text(), "  - name: composed", "    steps:"]
    for p in range(PARTS):
        seed = "start" if p == 0 else f'{{{{ steps["p{p - 1}/s{STEPS - 1}"].output.result }}}}'
        lines.append(f"      - {{id: p{p}/s0, type: transform, expression: '{seed}-0'}}")
        for i in range(1, STEPS):
            ref = f'steps["p{p}/s{i - 1}"].output.result'
            lines.append(f"      - {{id: p{p}/s{i}, type: transform, expression: '{{{{ {ref} }}}}-{i}'}}")
    lines.append(f"    outputs: {{out: '{{{{ steps[\"p{PARTS - 1}/s{STEPS - 1}\"].output.result }}}}'}}")
    return "\n".join(lines) + "\n"


def validate_and_plan(text: str) -> float:
    gc.collect()
    start = time.perf_counter()
    ow = OpenWorkflow(state=":memory:")
    ow.load(text)
    plan = ow.workflow("composed").plan()
    elapsed = time.perf_counter() - start
    assert len(plan) == PARTS * STEPS, len(plan)
    ow.close()
    return elapsed


def main() -> int:
    composed, flat = composed_text(), flat_text()
    same = OpenWorkflow(state=":memory:")
    same.load(composed)
    other = OpenWorkflow(state=":memory:")
    other.load(flat)
    assert same.workflow("composed").execute().outputs == other.workflow("composed").execute().outputs
    validate_and_plan(composed), validate_and_plan(flat)  # warm: imports, model builds, caches
    times: dict[str, list[float]] = {"composed": [], "flat": []}
    for _ in range(ROUNDS):
        times["composed"].append(validate_and_plan(composed))
        times["flat"].append(validate_and_plan(flat))
    c, f = statistics.median(times["composed"]), statistics.median(times["flat"])
    ratio = c / f
    verdict = "PASS" if ratio <= TARGET else "MISS"
    print(f"compose: validate + plan, {PARTS} inline parts x {STEPS} steps vs {PARTS * STEPS} flat steps")
    print(
        f"  composed {c * 1000:8.1f} ms   flat {f * 1000:8.1f} ms   ratio {ratio:.2f}x   target <= {TARGET}x   {verdict}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
