"""How the stdout callbacks print agent events (``agent.turn.completed``, tool calls, handoffs).

Text deltas are not lines: ``stdout_verbose`` writes them as they come, on one line after the
step's name, and plain ``stdout`` skips them (the answer is in the step's completion).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

DELTA = "agent.message.delta"


def _short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def agent_line(kind: str, payload: Mapping[str, Any], clock: str, *, verbose: bool) -> str | None:
    """One line for an agent event, or None when this kind is not an agent event."""
    if kind == "pattern.round":  # a pattern step's speaker (docs/patterns.md)
        speaker, why = payload.get("speaker"), payload.get("reason")
        return f"[{clock}] {payload.get('step_id', '?')} round {payload.get('round')}: {speaker} ({why})"
    if not kind.startswith("agent."):
        return None
    who = f"{payload.get('step_id', '?')}/{payload.get('agent', '?')}"
    if kind == "agent.turn.started":
        return f"[{clock}] agent {who} turn {payload.get('turn')} ({payload.get('model')})"
    if kind == "agent.turn.completed":
        text = (
            f"[{clock}] agent {who} turn {payload.get('turn')} done: {payload.get('prompt_tokens', 0)}+"
            f"{payload.get('completion_tokens', 0)} tokens"
        )
        if payload.get("estimated"):
            text += " (estimated)"
        if payload.get("cost_usd"):
            text += f", ${payload['cost_usd']:.6f}"
        if payload.get("tool_calls"):
            text += f", calls {', '.join(map(str, payload['tool_calls']))}"
        return text
    if kind == "agent.tool.called":
        text = f"[{clock}] agent {who} calls {payload.get('tool')}"
        return text + (f" {_short(payload.get('arguments'))}" if verbose else "")
    if kind == "agent.tool.completed":
        text = f"[{clock}] agent {who} got {payload.get('tool')}"
        return text + (f" -> {_short(payload.get('result'))}" if verbose else "")
    if kind == "agent.handoff":
        return f"[{clock}] agent {who} hands off: {payload.get('from')} -> {payload.get('to')}"
    if kind == "agent.guardrail.tripped":
        return f"[{clock}] agent {who} guardrail {payload.get('guardrail', '')} tripped: {payload.get('reason', '')}"
    return f"[{clock}] {kind} {who}"
