"""The native engine: runs a frozen plan (scheduler, logic steps, checkpoints, results).

What is exported here is the engine interface the backends and the LangGraph compiler build on
(documented in docs/architecture.md); everything else in this package is internal to it.
"""

from __future__ import annotations

from owf_magics.engine.executor import DEFAULT_MAX_WORKERS, Executor, Resume
from owf_magics.engine.frame import VIEW_KEYS, Frame, descendants, render_outputs, resolve_inputs, view
from owf_magics.engine.logic import case_key
from owf_magics.engine.patterns import chat_round
from owf_magics.engine.scheduler import STEP_KINDS, attempts, execute
from owf_magics.runtime.context import RunContext, StepFailed, new_run_id, to_step_error
from owf_magics.runtime.retry import retry_delay, retryable

__all__ = [
    "DEFAULT_MAX_WORKERS",
    "STEP_KINDS",
    "VIEW_KEYS",
    "Executor",
    "Frame",
    "Resume",
    "RunContext",
    "StepFailed",
    "attempts",
    "case_key",
    "chat_round",
    "descendants",
    "execute",
    "new_run_id",
    "render_outputs",
    "resolve_inputs",
    "retry_delay",
    "retryable",
    "to_step_error",
    "view",
]
