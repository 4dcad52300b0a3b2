"""A warning at definition when a workflow output would show a secret: the output reads a step
whose input carries one (an action's credential field, say), so where that step's output holds
the secret's value the run shows ``***`` in its place, silently, unless told here."""

from __future__ import annotations

from typing import Any

from owf_magics.manifest.templates import analyse, iter_strings
from owf_magics.plan.diagnostics import Reporter
from owf_magics.plan.steps import walk_steps


def secrets_in(value: Any) -> list[str]:
    """The secrets (``secrets.NAME``) the templates in `value` read whole."""
    found: list[str] = []
    for _, text in iter_strings(value, ()):
        if "secrets" in text and "{{" in text:
            found += [name for _, name in analyse(text).secret_reads if name.startswith("secrets.")]
    return found


def check_output_secrets(wf: Any, report: Reporter) -> None:
    """Warn (``SECRET_USE``, severity warning) for each output reading a step that a secret goes into."""
    carried: dict[str, list[str]] = {}
    for step, _ in walk_steps(wf.steps):
        names = secrets_in(getattr(step, "input", None))
        if names:
            carried[step.id] = names
    if not carried:
        return
    for name, spec in wf.outputs.items():
        for _, text in iter_strings(spec.value, ()):
            info = analyse(text)
            for sid in sorted(s for s in info.steps if s in carried):
                report(
                    "SECRET_USE",
                    f"output '{name}' reads steps.{sid}, whose input carries {', '.join(sorted(set(carried[sid])))}: "
                    "where that step's output holds the secret, the output shows *** instead",
                    ("outputs", name, "value"),
                    hint="output what the step did with the secret (a status, an id), not what it sent",
                    severity="warning",
                )
