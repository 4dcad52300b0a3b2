"""The langchain backend's side of agent events and user callbacks.

A hosted chat model's turns and streamed tokens reach `owf_magics.agents.events` through a
LangChain callback handler (an offline model emits its own turns, and tool calls are emitted by
the tools themselves, so that handler is only added for hosted models). User handlers come from
``LangChainBackend(callbacks=[...])`` and from ``execution.config.callbacks``: importable
``"module.Class"`` names, instantiated without arguments, given every chat-model and tool event.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from typing import Any

from owf_magics.agents import events
from owf_magics.errors import OWFError


def events_handler(agent: str, model: str, provider: str, cost: Any) -> Any:
    """A handler emitting ``agent.turn.*`` and ``agent.message.delta`` for a hosted model;
    `cost(usage)` prices one turn."""
    from langchain_core.callbacks import AsyncCallbackHandler

    from owf_magics.agents.providers import Usage

    class TurnEvents(AsyncCallbackHandler):
        def __init__(self) -> None:
            self.turn = 0

        async def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
            self.turn += 1
            events.emit(events.TURN_STARTED, agent=agent, turn=self.turn, model=model)

        async def on_llm_new_token(self, token: Any, **kwargs: Any) -> None:
            if isinstance(token, str) and token:
                events.emit(events.MESSAGE_DELTA, agent=agent, delta=token)

        async def on_llm_end(self, response: Any, **kwargs: Any) -> None:
            for gens in response.generations:
                for g in gens:
                    msg = getattr(g, "message", None)
                    meta = getattr(msg, "usage_metadata", None) or {}
                    usage = Usage(int(meta.get("input_tokens", 0)), int(meta.get("output_tokens", 0)), not meta)
                    price = cost(usage)
                    events.emit(
                        events.TURN_COMPLETED,
                        agent=agent,
                        turn=self.turn,
                        model=model,
                        provider=provider,
                        prompt_tokens=usage.prompt_tokens,
                        completion_tokens=usage.completion_tokens,
                        total_tokens=usage.total_tokens,
                        estimated=usage.estimated,
                        cost_usd=0.0 if math.isnan(price) else price,
                        tool_calls=[c["name"] for c in getattr(msg, "tool_calls", None) or []],
                    )

    return TurnEvents()


def user_handlers(configured: Sequence[Any], names: Any) -> list[Any]:
    """The backend's own handlers plus instances of the classes `names` (``execution.config.callbacks``).

    Raises:
        OWFError: VALIDATION naming a class that does not import.
    """
    out = list(configured)
    for name in names or []:
        if not isinstance(name, str):
            out.append(name)
            continue
        module, _, attr = name.replace(":", ".").rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError, ValueError) as exc:
            raise OWFError(
                f"execution.config.callbacks: cannot import '{name}'",
                code="VALIDATION",
                details={"callback": name, "suggestion": "name an importable class, e.g. 'mypkg.handlers.MyHandler'"},
            ) from exc
        out.append(cls())
    return out
