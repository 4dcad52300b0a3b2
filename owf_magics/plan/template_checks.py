"""Templates in manifests checked at load: syntax, the names they read, loops, secrets and references."""

from __future__ import annotations

from typing import Any

from owf_magics.errors import did_you_mean, suggestion
from owf_magics.manifest.secrets import CREDENTIAL_FIELD_RE
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

#: Where a template is, for the secret checks (see `secret_place`).
NO_SECRETS_IN_OUTPUTS = "output"
_PLACES = {
    "output": "a workflow output",
    "transform": "a transform",
    "agent": "an agent's prompt",
    "field": "this field",
}


def secret_place(step_type: Any, is_action: bool, field: Any) -> str:
    """``credential`` for an action step's input (secrets may fill its credential fields), else where it is."""
    if is_action and field == "input":
        return "credential"
    if step_type == "transform":
        return "transform"
    if step_type in ("agent", "handoff"):
        return "agent"
    return "field"


def raw_env_names(data: Any) -> frozenset[str]:
    """The names a workflow's raw ``runtime.environment`` declares (for a workflow whose model failed)."""
    runtime = data.get("runtime") if isinstance(data, dict) else None
    env = runtime.get("environment") if isinstance(runtime, dict) else None
    names = (v.get("name") for v in env if isinstance(v, dict)) if isinstance(env, list) else ()
    return frozenset(n for n in names if isinstance(n, str))


def _credential_path(path: Path) -> bool:
    """Whether `path` is inside an action input field named like a credential (headers.Authorization...)."""
    start = next((i for i in range(len(path) - 1, 0, -1) if path[i] == "input" and isinstance(path[i - 1], int)), None)
    if start is None:
        return False
    return any(isinstance(seg, str) and CREDENTIAL_FIELD_RE.search(seg) for seg in path[start + 1 :])


def check_templates(
    value: Any,
    path: Path,
    scope: StepScope,
    report: Reporter,
    sid: str | None,
    *,
    in_loop: bool,
    in_catch: bool,
    secrets: str = "field",
) -> None:
    for spath, text in iter_strings(value, path):
        check_template_text(text, spath, scope, report, sid, in_loop=in_loop, in_catch=in_catch, secrets=secrets)


def _check_secrets(info: TemplateInfo, text: str, path: Path, report: Reporter, sid: str | None, place: str) -> None:
    """A secret is opaque (no operation on it) and goes whole into a credential field, nowhere else."""
    shift = 1 if "\n" in text.rstrip("\n") else 0
    hint = (
        "pass the secret whole, as {{ secrets.NAME }}, into a connector's auth or headers or an input field "
        "named token, password, key, secret or credential; let the connector do the rest"
    )
    for line, what in info.secret_misuse:
        report(
            "SECRET_USE",
            f"{what}: a secret is opaque, no filter, operator, slice, iteration or method may touch it",
            path,
            step_id=sid,
            line_delta=line - 1 + shift,
            hint=hint,
        )
    if place == "credential" and _credential_path(path):
        return
    for line, name in info.secret_reads:
        where = _PLACES.get(place, "this field") if place != "credential" else "a field not named like a credential"
        report(
            "SECRET_USE",
            f"the secret {name} may not go into {where}: secrets only fill credential fields",
            path,
            step_id=sid,
            line_delta=line - 1 + shift,
            hint=hint,
        )


def _check_env(info: TemplateInfo, path: Path, scope: StepScope, report: Reporter, sid: str | None) -> None:
    for name in sorted(info.env - scope.env):
        report(
            "UNKNOWN_REFERENCE",
            f"template reads undeclared environment variable 'env.{name}'",
            path,
            step_id=sid,
            hint=f"declare it in the workflow: runtime: {{environment: [{{name: {name}}}]}} "
            f"(or allow it with OpenWorkflow(env=['{name}']))",
        )


def check_template_text(
    text: str,
    path: Path,
    scope: StepScope,
    report: Reporter,
    sid: str | None,
    *,
    in_loop: bool,
    in_catch: bool,
    secrets: str = "field",
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
    if info.secret_reads or info.secret_misuse:
        _check_secrets(info, text, path, report, sid, secrets)
    if info.env:
        _check_env(info, path, scope, report, sid)
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
