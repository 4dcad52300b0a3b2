"""Templates in manifests checked at load: syntax, the names they read, loops, secrets and references."""

from __future__ import annotations

from typing import Any

from owf_magics.errors import did_you_mean, suggestion
from owf_magics.manifest.templates import (
    LOOP_NAMES,
    ROOTS,
    TemplateInfo,
    analyse,
    iter_strings,
    known_filters,
    known_functions,
)
from owf_magics.plan.diagnostics import Path, Reporter
from owf_magics.plan.steps import StepScope, loop_outside


def check_templates(
    value: Any,
    path: Path,
    scope: StepScope,
    report: Reporter,
    sid: str | None,
    *,
    in_loop: bool,
    in_catch: bool,
) -> None:
    for spath, text in iter_strings(value, path):
        check_template_text(text, spath, scope, report, sid, in_loop=in_loop, in_catch=in_catch)


def check_template_text(
    text: str,
    path: Path,
    scope: StepScope,
    report: Reporter,
    sid: str | None,
    *,
    in_loop: bool,
    in_catch: bool,
) -> None:
    info: TemplateInfo = analyse(text)
    if not info.is_template:
        return
    if info.error:
        delta = (info.error_line or 1) - 1 + (1 if "\n" in text.rstrip("\n") else 0)
        loads = "cannot load other templates" in info.error
        report(
            "TEMPLATE_SYNTAX",
            info.error if loads else f"template does not parse: {info.error}",
            path,
            step_id=sid,
            line_delta=delta,
            hint="inline the text instead, or pass it in as an input"
            if loads
            else "check the {{ }} and {% %} pairs, quotes and operators",
        )
        return
    filters = known_filters()
    for name in sorted(info.filters - filters):
        report(
            "TEMPLATE_SYNTAX",
            f"no filter or test named '{name}'",
            path,
            step_id=sid,
            hint=(suggestion(name, filters).strip() or "see docs/manifests.md for the filters"),
        )
    functions = known_functions()
    for root in sorted(info.roots):
        if root in functions:
            continue
        if root not in ROOTS:
            best = did_you_mean(root, [*ROOTS, *functions])
            report(
                "UNKNOWN_REFERENCE",
                f"template reads unknown name '{root}'",
                path,
                step_id=sid,
                hint=f"did you mean '{best}'?"
                if best
                else f"templates read {', '.join(k for k in ROOTS if k != 'loop')}",
            )
        elif root in LOOP_NAMES and not in_loop:
            report(
                "UNKNOWN_REFERENCE",
                f"'{root}' is only defined inside a loop",
                path,
                step_id=sid,
                hint="use it in a forEach step's steps or in a step with forEach/for_each",
            )
        elif root == "error" and not in_catch:
            report(
                "UNKNOWN_REFERENCE",
                "'error' is only defined in a try step's catch and finally blocks",
                path,
                step_id=sid,
                hint="read steps.<id>.error to see another step's error",
            )
    for ref in sorted(info.steps):
        if ref not in scope.graph.nodes:
            best = did_you_mean(ref, scope.graph.nodes)
            report(
                "UNKNOWN_REFERENCE",
                f"template reads unknown step 'steps.{ref}'",
                path,
                step_id=sid,
                hint=f"did you mean '{best}'?" if best else "reference a step id of this workflow",
            )
        elif (loop := loop_outside(scope.graph, ref, sid)) is not None:
            report(
                "UNKNOWN_REFERENCE",
                f"template reads 'steps.{ref}', which runs once per item inside the forEach '{loop}': "
                "outside that loop it has no single result",
                path,
                step_id=sid,
                hint=f"read steps.{loop}.output.results (one entry per item) instead",
            )
    for name in sorted(info.inputs):
        if name not in scope.inputs:
            best = did_you_mean(name, scope.inputs)
            report(
                "UNKNOWN_REFERENCE",
                f"template reads undeclared input 'inputs.{name}'",
                path,
                step_id=sid,
                hint=f"did you mean '{best}'?"
                if best
                else f"declare it under the workflow's inputs: ({name}: {{type: string}})",
            )
