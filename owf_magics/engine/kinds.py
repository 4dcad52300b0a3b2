"""The step kinds the native engine runs: each step type's coroutine, registered in `STEP_KINDS`.

A new step type is a coroutine ``(run, frame, step, scope, usage) -> (output, view fields)`` in a
module of this package, and one line here.
"""

from __future__ import annotations

from owf_magics.engine import delegate, logic, magentic, patterns
from owf_magics.engine.direct import DIRECT_KINDS
from owf_magics.engine.scheduler import STEP_KINDS
from owf_magics.manifest import models

STEP_KINDS.update(
    {
        models.ActionStep: delegate.action_step,
        models.AgentStep: delegate.agent_step,
        models.HandoffStep: delegate.handoff_step,
        models.WorkflowStep: delegate.subworkflow,
        models.TransformStep: logic.transform_step,
        models.IfStep: logic.if_step,
        models.SwitchStep: logic.switch_step,
        models.ForEachStep: logic.for_each,
        models.ParallelStep: logic.parallel,
        models.TryStep: logic.try_step,
        models.WaitStep: logic.wait_step,
        models.GroupChatStep: patterns.group_chat,
        models.SequentialStep: patterns.sequential,
        models.ConcurrentStep: patterns.concurrent,
        models.MagenticStep: magentic.magentic,
    }
)

#: The kinds that can run without a coroutine (no retry, no timeout; see `engine.direct`).
DIRECT_KINDS[models.TransformStep] = logic.transform_direct
DIRECT_KINDS[models.ActionStep] = delegate.action_direct
