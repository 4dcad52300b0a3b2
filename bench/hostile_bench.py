"""How long hostile input takes to be refused, and what redaction costs (run by ``make bench``).

Rejecting a broken manifest must stay bounded whatever its size: the loader's slow pure-Python
rescan (which finds nesting deeper than MAX_DEPTH that libyaml's own errors hide) only runs when
the C parser's error could hide it, and never over more than RESCAN_LIMIT characters.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

#: CPU seconds (median)
TARGETS = {
    "reject 1 MB of malformed YAML": 2.0,
    "reject 1 MB of YAML, 150 levels deep just before its error": 2.0,
    "reject 100,000 levels of JSON": 1.0,
    "reject a 5,000-digit integer": 0.2,
}


def _median(fn: Callable[[], Any], repeat: int = 3) -> float:
    """The median CPU time of `fn` (this process's): wall time on a shared machine measures the others."""
    times = []
    for _ in range(repeat):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return statistics.median(times)


def main() -> int:
    from owf_magics import ManifestError, OpenWorkflow
    from owf_magics.manifest.redaction import redact

    cases = {
        "reject 1 MB of malformed YAML": "a: [" + "b, " * 350_000 + "\n  - x: {",
        "reject 1 MB of YAML, 150 levels deep just before its error": "a: [" + "b, " * 350_000 + "[" * 150 + "{,",
        "reject 100,000 levels of JSON": '{"type": "agent", "metadata": ' + '{"k": ' * 100_000 + "1" + "}" * 100_001,
        "reject a 5,000-digit integer": "type: agent\nname: a\nmodel: {provider: echo}\nmetadata: {n: "
        + "9" * 5000
        + "}\n",
    }
    failed = []
    print(f"{'hostile input (CPU time)':<62}{'median':>10}{'target':>10}")
    for name, text in cases.items():

        def reject(text: str = text) -> None:
            try:
                OpenWorkflow(state=False).load(text)
            except ManifestError:
                return
            raise AssertionError("loaded")

        value = _median(reject)
        target = TARGETS[name]
        over = value > target
        failed += [name] if over else []
        print(f"{name:<62}{value * 1000:>8.0f}ms{target * 1000:>8.0f}ms{'  OVER' if over else ''}")

    event = {
        "type": "step.completed",
        "timestamp": "2026-12-06T15:03:36.862Z",
        "payload": {"step_id": "a", "output": {"text": "hello world " * 10, "n": 3, "items": ["a", "b", "c"]}},
        "metadata": {"attempt": 1, "duration_ms": 1.2},
    }
    secrets = {"TOKEN": "Zq9/x+Y2sEcr3t/w+Kp7"}
    n = 5000
    t = time.perf_counter()
    for _ in range(n):
        redact(event, secrets)
    print(f"{'redact one event (one secret, every encoding)':<62}{(time.perf_counter() - t) / n * 1e6:>8.1f}µs")
    big = "x" * 1_000_000
    print(f"{'redact 1 MB of text':<62}{_median(lambda: redact(big, secrets)) * 1000:>8.1f}ms")
    if failed:
        print(f"over target: {', '.join(failed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
