"""The scope a block of steps runs in (`Frame`), the step views templates read, and the inputs
and outputs of a workflow.
"""

from __future__ import annotations

import asyncio
from collections import ChainMap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from owf_magics.engine.input_rules import Violation, check_value, resolve_file
from owf_magics.errors import OWFError
from owf_magics.manifest.models import (
    StepBase,
)
from owf_magics.manifest.render import TemplateError, render, render_string
from owf_magics.manifest.secrets import CREDENTIAL_FIELD_RE, EnvView, SecretMap, credential_field
from owf_magics.plan.graph import BlockKey, Graph
from owf_magics.plan.resolution import Plan
from owf_magics.runtime.context import (
    RunContext,
    StepFailed,
)
from owf_magics.runtime.results import StepError, StepResult

#: Field names (a path in a step input) that secrets may fill.
TRUSTED_SECRET_KEYS = CREDENTIAL_FIELD_RE


@dataclass(slots=True)
class Frame:
    """The scope a block runs in: its plan, results, and loop or error variables."""

    plan: Plan
    models: dict[str, StepBase]
    inputs: dict[str, Any]
    views: ChainMap[str, Any]
    results: dict[str, StepResult]
    iteration: tuple[int, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    order: dict[str, float] = field(default_factory=dict)
    prefix: str = ""
    _scope: dict[str, Any] | None = None

    def scope(self, run: RunContext) -> dict[str, Any]:
        """The template scope; built once per frame (it holds the live views, so it stays current)."""
        scope = self._scope
        if scope is None:
            env_names = {*self.plan.memo.get("env_names", ()), *(getattr(run.host, "env", None) or ())}
            scope = self._scope = {
                "inputs": self.inputs,
                "steps": self.views,
                # only the declared variables (runtime.environment, OpenWorkflow(env=...)); secrets opaque
                "env": EnvView(run.env, env_names),
                "secrets": SecretMap(run.secrets),
                "trigger": run.trigger,
                **self.extra,
            }
        return scope

    def child(self, *, iteration: tuple[int, ...] | None = None, extra: dict[str, Any] | None = None) -> Frame:
        return Frame(
            self.plan,
            self.models,
            self.inputs,
            self.views.new_child() if iteration is not None else self.views,
            self.results,
            iteration if iteration is not None else self.iteration,
            {**self.extra, **(extra or {})},
            self.order,
            self.prefix,
        )


VIEW_KEYS = frozenset({"output", "status", "error", "attempts"})


def view(res: StepResult, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    view = {
        "output": res.output,
        "status": res.status,
        "error": res.error.to_dict() if res.error else None,
        "attempts": res.attempts,
    }
    if extra:
        view.update(extra)
    return view


def put_result(frame: Frame, res: StepResult, extra: Mapping[str, Any] | None = None) -> None:
    frame.results[res.step_id] = res
    frame.views[res.step_id] = view(res, extra)


def execution_key(frame: Frame, step_id: str) -> str:
    """The key of one execution of a step: its id, with its loop iteration path (``body[2.0]``)."""
    key = frame.prefix + step_id
    return f"{key}[{'.'.join(map(str, frame.iteration))}]" if frame.iteration else key


def descendants(graph: Graph, sid: str) -> list[str]:
    out: list[str] = []
    for key in graph.child_blocks.get(sid, ()):
        for child in graph.order.get(key, ()):
            out.append(child)
            out.extend(descendants(graph, child))
    return out


def loop_frame(frame: Frame, index: int, item: Any, total: int) -> Frame:
    return frame.child(
        iteration=(*frame.iteration, index),
        extra={"item": item, "index": index, "isFirst": index == 0, "isLast": index == total - 1},
    )


def at_item(error: StepError, index: int, item: Any) -> StepError:
    """A loop's error saying which item failed: ``... (forEach item 2: 'c')``, and in details."""
    shown = repr(item)
    shown = shown if len(shown) <= 60 else shown[:59] + "…"
    details = {**error.details, "index": index, "item": shown}
    return StepError(error.code, f"{error.message} (forEach item {index}: {shown})", details)


def children_views(frame: Frame, sid: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in frame.plan.graph.child_blocks.get(sid, ()):
        for child in frame.plan.graph.order.get(key, ()):
            if child in frame.views:
                out[child] = frame.views[child]
    return out


def last_output(frame: Frame, key: BlockKey) -> tuple[str, Any, StepError | None]:
    members = frame.plan.graph.order.get(key, ())
    status, output, error = "success", None, None
    for sid in members:
        view = frame.views.get(sid)
        if view is None:
            continue
        if view["status"] == "failed" and error is None:
            status, error = "failed", frame.results[sid].error
    if members:
        last = frame.views.get(members[-1])
        output = last["output"] if last else None
    return status, output, error


async def map_items(items: list[Any], limit: int | None, fn: Callable[[int, Any], Any]) -> list[Any]:
    """Run `fn(index, item)` for every item, at most `limit` at once; results in item order."""
    if limit is None or limit >= len(items):
        return list(await asyncio.gather(*(fn(i, item) for i, item in enumerate(items))))
    sem = asyncio.Semaphore(limit)

    async def guarded(i: int, item: Any) -> Any:
        async with sem:
            return await fn(i, item)

    return list(await asyncio.gather(*(guarded(i, item) for i, item in enumerate(items))))


def resolve_inputs(wf: Any, given: Mapping[str, Any], *, files_root: Any = None, item: Any = None) -> dict[str, Any]:
    """Declared defaults filled in, required inputs checked, types and rules checked
    (`engine.input_rules`); a ``file`` input becomes its resolved path under `files_root`.

    A problem raises ``VALIDATION`` with ``details.problems`` (sentences) and
    ``details.violations`` (input, rule, where, and the manifest's file and line when `item`, the
    loaded workflow, is given).
    """
    out = dict(given)
    problems: list[str] = []
    found: list[Violation] = []
    for name in given:
        if name not in wf.inputs:  # a misspelt input would otherwise be ignored, and a default used
            from owf_magics.errors import did_you_mean

            best = did_you_mean(name, list(wf.inputs))
            hint = f" (did you mean '{best}'?)" if best else f" (it declares {', '.join(wf.inputs) or 'none'})"
            problems.append(f"the workflow declares no input '{name}'{hint}")
    for name, spec in wf.inputs.items():
        if name not in out:
            if spec.default is not None:
                out[name] = spec.default
            elif spec.required:
                problems.append(f"input '{name}' is required")
                found.append(Violation(name, "required", f"input '{name}' is required", name))
                continue
            else:
                out[name] = None
                continue
            if spec.type != "file":  # a default is trusted, but a default file must exist too
                continue
        value = out[name]
        before = len(found)
        check_value(name, name, spec, value, found, files_root=files_root, typed=True)
        if spec.type == "file" and isinstance(value, str) and len(found) == before:
            out[name] = resolve_file(value, files_root)[0]
    problems.extend(v.message for v in found if v.rule != "required")
    if problems:
        violations = [v.to_dict() for v in found]
        if item is not None:
            from owf_magics.engine.input_lines import locate

            locate(item, violations)
            broken = [v for v in violations if v["rule"] != "required"]  # the last of `problems`, in order
            problems[len(problems) - len(broken) :] = [
                (f"{v['file']}:{v['line']}: " if v.get("line") else "") + f"{v['message']} (rule {v['rule']})"
                for v in broken
            ]
        raise OWFError("; ".join(problems), code="VALIDATION", details={"problems": problems, "violations": violations})
    return out


def render_outputs(
    outputs: Mapping[str, Any], scope: dict[str, Any], *, failures: dict[str, Exception] | None = None
) -> dict[str, Any]:
    """The workflow's outputs; one whose template fails is None (and, given `failures`, its
    error is put there by name: the executor fails a run whose steps succeeded on it)."""
    out: dict[str, Any] = {}
    for name, spec in outputs.items():
        try:
            out[name] = render(spec.value, scope)
        except Exception as exc:  # a template error, or whatever a template's value raised
            if failures is None and not isinstance(exc, TemplateError):
                raise
            out[name] = None  # e.g. the step it reads did not run (a branch not taken, a failure)
            if failures is not None:
                failures[name] = exc
    return out


def render_input(
    value: Any, scope: dict[str, Any], step_id: str, path: str = "input", *, credentials: bool = True
) -> Any:
    """Render a step's input; a secret may only fill a credential-like field (headers, tokens...).

    `credentials` is False where no field may hold a secret (an agent's prompt, say).
    """
    if isinstance(value, str):
        trusted = credentials and bool(TRUSTED_SECRET_KEYS.search(path))
        if not trusted and "secrets" in value and "{{" in value:
            from owf_magics.manifest.templates import analyse

            if "secrets" in analyse(value).roots:
                raise StepFailed(
                    StepError(
                        "VALIDATION",
                        f"secret exposure blocked in step '{step_id}' field '{path}': secrets may only fill "
                        "credential fields (headers, auth, token, password, key)",
                        {"field": path},
                    )
                )
        if trusted:
            with credential_field():
                return render_string(value, scope, path)
        return render_string(value, scope, path)
    if isinstance(value, dict):
        return {k: render_input(v, scope, step_id, f"{path}.{k}", credentials=credentials) for k, v in value.items()}
    if isinstance(value, list):
        return [render_input(v, scope, step_id, f"{path}[{i}]", credentials=credentials) for i, v in enumerate(value)]
    return value
