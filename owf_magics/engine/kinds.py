"""The step kinds the native engine runs: each step type's coroutine, registered in `STEP_KINDS`.

A new step type is a coroutine ``(run, frame, step, scope, usage) -> (output, view fields)`` in a
module of this package, and one line here.
"""

from __future__ import annotations

from typing import Any

from owf_magics.agents.loop import Accounting
from owf_magics.engine import delegate, logic
from owf_magics.engine.frame import Frame
from owf_magics.engine.scheduler import STEP_KINDS
from owf_magics.manifest import models
from owf_magics.runtime.context import RunContext


async def _for_each(run: RunContext, frame: Frame, step: Any, scope: dict[str, Any], acc: Accounting) -> Any:
    return await logic.for_each(run, frame, step, scope)


async def _parallel(run: RunContext, frame: Frame, step: Any, scope: dict[str, Any], acc: Accounting) -> Any:
    return await logic.parallel(run, frame, step)


async def _try(run: RunContext, frame: Frame, step: Any, scope: dict[str, Any], acc: Accounting) -> Any:
    return await logic.try_step(run, frame, step)


async def _wait(run: RunContext, frame: Frame, step: Any, scope: dict[str, Any], acc: Accounting) -> Any:
    return await logic.wait_step(step, run), None


STEP_KINDS.update(
    {
        models.ActionStep: delegate.action_step,
        models.AgentStep: delegate.agent_step,
        models.HandoffStep: delegate.handoff_step,
        models.WorkflowStep: delegate.workflow_step,
        models.TransformStep: logic.transform_step,
        models.IfStep: logic.if_step,
        models.SwitchStep: logic.switch_step,
        models.ForEachStep: _for_each,
        models.ParallelStep: _parallel,
        models.TryStep: _try,
        models.WaitStep: _wait,
    }
)
