"""The assistants backend's agent events: OpenAI Agents SDK run hooks that emit them.

Model turns come from ``on_llm_start``/``on_llm_end`` (with the response's exact usage) and
handoffs from ``on_handoff``; tool calls are emitted by the tools themselves (`assistants.py`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from owf_magics.agents import events


def run_hooks(agent: str, model: str, cost: Callable[[Any], float]) -> Any:
    """A `RunHooks` emitting ``agent.turn.*`` and ``agent.handoff``; `cost(usage)` prices a turn."""
    from agents import RunHooks

    from owf_magics.agents.providers import Usage

    class TurnEvents(RunHooks):
        def __init__(self) -> None:
            self.turn = 0

        async def on_llm_start(self, context: Any, sdk_agent: Any, system_prompt: Any, input_items: Any) -> None:
            self.turn += 1
            events.emit(events.TURN_STARTED, agent=agent, turn=self.turn, model=model)

        async def on_llm_end(self, context: Any, sdk_agent: Any, response: Any) -> None:
            usage = Usage(int(response.usage.input_tokens), int(response.usage.output_tokens), False)
            price = cost(usage)
            calls = [
                getattr(item, "name", None) for item in response.output if getattr(item, "type", "") == "function_call"
            ]
            events.emit(
                events.TURN_COMPLETED,
                agent=agent,
                turn=self.turn,
                model=model,
                provider="openai",
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                total_tokens=usage.total_tokens,
                estimated=False,
                cost_usd=0.0 if math.isnan(price) else price,
                tool_calls=[c for c in calls if c],
            )

        async def on_handoff(self, context: Any, from_agent: Any, to_agent: Any) -> None:
            events.emit(events.HANDOFF, agent=agent, **{"from": from_agent.name, "to": to_agent.name})

    return TurnEvents()
