"""How an agent step runs the workflows it has as tools (``toolset: ["workflow:NAME"]``).

Each call runs the workflow in the same run, as a block under the agent step: its steps are
``<agent step>/<tool>/<step>`` (``<tool>#2`` for a second call in the same step), and their plan
entries (trace rows, the graph) name the agent step as their parent. The inner steps are
checkpointed like any step, so a resumed run serves the ones already done. When an inner step
waits (an approval), the agent step waits with it and runs again on resume.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import ChainMap
from collections.abc import Iterator
from typing import Any

from owf_magics.agents.workflow_tools import Runner, bind
from owf_magics.engine.frame import Frame, render_outputs, resolve_inputs
from owf_magics.engine.scheduler import run_block
from owf_magics.errors import OWFError
from owf_magics.manifest.refs import parse_ref
from owf_magics.plan.graph import ROOT
from owf_magics.plan.resolution import step_models
from owf_magics.runtime.context import NESTED_WAIT, RunContext, Waiting
from owf_magics.runtime.records import check_storable


def runner(run: RunContext, frame: Frame, step_id: str) -> Runner:
    """The workflow-tool runner for one execution of agent step `step_id` in `frame`."""
    calls: dict[str, int] = {}

    async def run_tool(ref: str, name: str, args: dict[str, Any]) -> Any:
        loaded = run.host.catalog.workflow(parse_ref(ref, expected_kind="workflow"))
        if loaded is None:
            raise OWFError(f"workflow '{ref}' is not loaded", code="VALIDATION")
        calls[name] = calls.get(name, 0) + 1
        part = name if calls[name] == 1 else f"{name}#{calls[name]}"
        parent = frame.prefix + step_id
        plan = run.host.plan_loaded(loaded, frame.plan.prefer_backend)
        entries = {sid: dataclasses.replace(e, parent=e.parent or f"/{parent}") for sid, e in plan.entries.items()}
        plan = dataclasses.replace(plan, entries=entries, memo={})
        inputs = resolve_inputs(loaded.model, args)
        base = frame.order.get(step_id, 0)
        order = {sid: base + (i + 1) / 10_000 for i, sid in enumerate(plan.graph.topological())}
        sub = Frame(
            plan,
            step_models(loaded.model),
            inputs,
            ChainMap({}),
            {},
            frame.iteration,
            {},
            order,
            f"{parent}/{part}/",
        )
        failure = await run_block(run, sub, ROOT)
        if any(r.status == "waiting" for r in sub.results.values()):
            raise Waiting(NESTED_WAIT, {"workflow": loaded.name, "tool": name})
        if failure is not None:
            raise OWFError(failure.message, code=failure.code, details={"workflow": loaded.name, **failure.details})
        outputs = render_outputs(loaded.model.outputs, sub.scope(run))
        if run.store is not None:
            check_storable(outputs, step_id)
        return outputs

    return run_tool


@contextlib.contextmanager
def tools_bound(run: RunContext, frame: Frame, step_id: str) -> Iterator[None]:
    """Workflow tools called inside run under agent step `step_id`."""
    with bind(runner(run, frame, step_id)):
        yield
