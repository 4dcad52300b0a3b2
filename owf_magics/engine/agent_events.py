"""Where a step's agent events go: the run's events, store and callback, in the step's order.

`attempts` binds `sink(run, frame, step, attempt)` around an agent step, so every
`owf_magics.agents.events.emit` inside lands between the step's started and completed events.
Text deltas go to the callback only (as they arrive), unless the agent's
``execution.config.storeDeltas`` (or ``store_deltas``) is true: a long answer would otherwise
store one event per token.
"""

from __future__ import annotations

import contextlib
from typing import Any

from owf_magics.agents.events import HANDOFF, MESSAGE_DELTA, Sink
from owf_magics.agents.history import session_id
from owf_magics.engine.frame import Frame
from owf_magics.manifest.models import StepBase
from owf_magics.manifest.render import redact
from owf_magics.runtime.context import RunContext, stamp


def sink(run: RunContext, frame: Frame, step: StepBase, attempt: int) -> Sink:
    """The sink for one attempt of an agent step."""
    key = (frame.order.get(step.id, 0), frame.iteration, attempt)
    entry = frame.plan.entries[step.id]
    iteration = ".".join(map(str, frame.iteration)) if frame.iteration else ""
    step_id = frame.prefix + step.id
    keep_deltas = _store_deltas(frame, step)
    target = frame.plan.targets.get(step.id)
    agent = getattr(getattr(target, "model", None), "name", None)

    def deliver(kind: str, fields: dict[str, Any]) -> None:
        fields = dict(fields)
        timestamp = fields.pop("timestamp_s")
        event = {
            "type": kind,
            "timestamp": stamp(timestamp),
            "run_id": run.run_id,
            "step_id": step_id,
            "step_type": step.type,  # type: ignore[attr-defined]
            "iteration": iteration,
            "attempt": attempt,
            "backend": entry.backend,
            **fields,
            "agent": fields.get("agent") or agent,
        }
        if kind == HANDOFF:
            run.last_agent = str(fields.get("to") or event["agent"])
        elif event["agent"]:
            run.last_agent = str(event["agent"])
        session = session_id()
        if session is not None:
            event["session"] = session
        if kind == MESSAGE_DELTA and not keep_deltas:
            if run.callback is not None:  # as it arrives; not kept in the run's events
                with contextlib.suppress(Exception):
                    run.callback(redact(event, run.secrets) if run.secrets else event)
            return
        run.emit(key, event)

    return deliver


def _store_deltas(frame: Frame, step: StepBase) -> bool:
    target = frame.plan.targets.get(step.id)
    model = getattr(target, "model", None)
    execution = getattr(model, "execution", None)
    config = getattr(execution, "config", None) or {}
    return bool(config.get("storeDeltas", config.get("store_deltas", False)))
