"""What the live view shows of running agent steps: their turns, tool calls and streaming text.

`AgentActivity` folds agent events per step (the text of ``agent.message.delta`` events joined,
a line per turn and tool call); a step's activity is dropped ("folded") when the step ends. The
view redraws it at most a few times a second, never per token.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

#: Lines kept per step (the latest), and characters of streamed text shown.
MAX_LINES = 6
MAX_TEXT = 600


class AgentActivity:
    """Agent events of the steps running now, by step id."""

    def __init__(self) -> None:
        self.lines: dict[str, list[str]] = {}
        self.text: dict[str, str] = {}

    def on_event(self, event: Mapping[str, Any]) -> None:
        kind = str(event.get("type", ""))
        sid = str(event.get("step_id", ""))
        if kind == "step.execution.completed":
            self.lines.pop(sid, None)
            self.text.pop(sid, None)
            return
        if not kind.startswith("agent."):
            return
        if kind == "agent.message.delta":
            self.text[sid] = (self.text.get(sid, "") + str(event.get("delta", "")))[-MAX_TEXT:]
            return
        line = _line(kind, event)
        if line:
            lines = self.lines.setdefault(sid, [])
            lines.append(line)
            del lines[:-MAX_LINES]
            if kind == "agent.turn.started":
                self.text.pop(sid, None)  # a new turn streams new text

    def html(self) -> str:
        parts = []
        for sid in sorted(set(self.lines) | set(self.text)):
            items = "".join(f"<li>{html.escape(x)}</li>" for x in self.lines.get(sid, []))
            text = self.text.get(sid)
            stream = f"<div style='white-space:pre-wrap;color:#333'>{html.escape(text)}▌</div>" if text else ""
            parts.append(f"<div class='owf-agent-step'><b>{html.escape(sid)}</b><ul>{items}</ul>{stream}</div>")
        return "".join(parts)


def _line(kind: str, event: Mapping[str, Any]) -> str:
    agent = event.get("agent") or "agent"
    if kind == "agent.turn.started":
        return f"{agent}: turn {event.get('turn')} ({event.get('model')})…"
    if kind == "agent.turn.completed":
        return f"{agent}: turn {event.get('turn')}, {event.get('total_tokens', 0)} tokens"
    if kind == "agent.tool.called":
        args = json.dumps(event.get("arguments"), default=str, sort_keys=True)
        return f"{agent} → {event.get('tool')}({args[:80]})"
    if kind == "agent.tool.completed":
        return f"{agent} ← {event.get('tool')}: {json.dumps(event.get('result'), default=str)[:80]}"
    if kind == "agent.handoff":
        return f"handoff {event.get('from')} → {event.get('to')}"
    if kind == "agent.guardrail.tripped":
        return f"{agent}: guardrail {event.get('guardrail')} tripped"
    return ""
