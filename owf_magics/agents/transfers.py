"""Transfers between agents inside one handoff step (``maxTransfers``; docs/patterns.md).

While a handoff step allows more transfers, the agent it runs is offered a
``transfer_to_<agent>`` tool for every other agent the step names; calling one ends that agent's
turn (`Transferred`) and the step hands the conversation to the other agent.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Iterator
from typing import Any

_OFFERED: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("owf_transfers", default=None)


class Transferred(Exception):
    """An agent called ``transfer_to_<agent>``: the handoff step continues with `target`."""

    def __init__(self, target: str, arguments: dict[str, Any]) -> None:
        super().__init__(target)
        self.target = target
        self.arguments = arguments


def tool_name(agent: str) -> str:
    return "transfer_to_" + re.sub(r"\W", "_", agent)


@contextlib.contextmanager
def offer(targets: list[str]) -> Iterator[None]:
    """Offer transfer tools to the agent run inside (`targets`: agent names or references)."""
    token = _OFFERED.set({tool_name(t.rpartition("/")[2].partition("@")[0]): t for t in targets} or None)
    try:
        yield
    finally:
        _OFFERED.reset(token)


def offered() -> dict[str, str]:
    """Tool name -> agent, for the agent running now."""
    return _OFFERED.get() or {}


def specs(tools: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "description": f"Hand the conversation to the {target} agent.",
            "parameters": {"type": "object", "properties": {"reason": {"type": "string"}}},
        }
        for name, target in tools.items()
    ]
