"""Scripted agents for the pattern tests and docs (docs/patterns.md): offline, deterministic."""

from __future__ import annotations

from typing import Any


def scripted(name: str, *answers: str, description: str = "", tokens: tuple[int, int] = (10, 5)) -> str:
    """An agent document whose model answers `answers` in order, each with exact usage."""
    import json

    responses = [{"content": a, "usage": {"prompt_tokens": tokens[0], "completion_tokens": tokens[1]}} for a in answers]
    doc = {
        "type": "agent",
        "name": name,
        "description": description or f"the {name} agent",
        "model": {
            "provider": "scripted",
            "id": f"scripted-{name}",
            "pricing": {"prompt": 1.0, "completion": 2.0},
            "responses": responses,
        },
    }
    return "---\n" + json.dumps(doc) + "\n"


def next_speaker(state: dict[str, Any]) -> str:
    """A selection function: con speaks first, then whoever did not speak last."""
    if not state["conversation"]:
        return "con"
    last = state["conversation"][-1]["agent"]
    return "pro" if last == "con" else "con"
