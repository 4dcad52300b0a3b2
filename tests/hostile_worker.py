"""Runs hostile templates in this (fresh) process and prints one JSON line per template and mode.

Used by tests/test_hostile_templates.py: ``python -m tests.hostile_worker DB`` with a JSON list of
templates on stdin. Each template runs as a transform expression and as a workflow output, under
the canary secret; what comes out (outputs, steps, events, errors) is printed for the parent to
search, with the time it took and the process's peak RSS.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import asdict
from typing import Any

SECRET = "sk-canary/+HOSTILE42"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _manifest(template: str, mode: str, n: int) -> dict[str, Any]:
    if mode == "transform":
        return {"name": f"h{n}", "steps": [{"id": "t", "type": "transform", "expression": template}]}
    return {
        "name": f"h{n}",
        "steps": [{"id": "t", "type": "transform", "expression": "ok"}],
        "outputs": {"o": {"value": template}},
    }


def main() -> None:
    from owf_magics import ManifestError, OpenWorkflow

    db = sys.argv[1]
    templates: list[str] = json.loads(sys.stdin.read())
    ow = OpenWorkflow(state=db)
    ow.load(_manifest("{{ 1 + 1 }}", "output", 0))  # warm up: imports, the store, Jinja
    ow.workflow("h0").execute(secrets={"TOKEN": SECRET})
    base = _rss_mb()
    n = 0
    for template in templates:
        for mode in ("transform", "output"):
            n += 1
            started = time.monotonic()
            row: dict[str, Any] = {"template": template, "mode": mode}
            try:
                ow.load(_manifest(template, mode, n), name="hostile.yaml")
            except ManifestError as exc:
                row.update(kind="manifest_error", text=str(exc), codes=[d.code for d in exc.diagnostics])
            else:
                r = ow.workflow(f"h{n}").execute(secrets={"TOKEN": SECRET})
                row.update(
                    kind=r.status,
                    step=r.steps["t"].status,
                    failed_output=r.error.details.get("output") if r.error else None,
                    text=json.dumps(
                        {
                            "outputs": r.outputs,
                            "steps": {k: asdict(v) for k, v in r.steps.items()},
                            "events": r.events,
                            "error": asdict(r.error) if r.error else None,
                            "repr": repr(r),
                        },
                        default=repr,
                    ),
                )
            row["seconds"] = time.monotonic() - started
            row["rss_growth_mb"] = _rss_mb() - base
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
