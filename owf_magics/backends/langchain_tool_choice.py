"""An agent's ``model.params.tool_choice`` on the langchain backend: a middleware that sets the
model request's tool choice as the native loop does (``required`` until a tool has been called,
`agents.providers.tool_choice`) and fails the step, as native does, when the model answers
without the tool call ``required`` asks for (an offline model cannot be forced)."""

from __future__ import annotations

from typing import Any

from owf_magics.agents.providers import required_tool_missed, tool_choice
from owf_magics.errors import OWFError
from owf_magics.manifest.models import ModelSpec


def tool_choice_middleware(spec: ModelSpec, names: list[str]) -> Any:
    """The middleware, or None when the model has no tool choice."""
    if not isinstance(spec.params.get("tool_choice"), str):
        return None
    from langchain.agents.middleware import AgentMiddleware
    from langchain_core.messages import AIMessage

    from owf_magics.backends.langchain_parts import plain_messages

    class ToolChoice(AgentMiddleware):
        async def awrap_model_call(self, request: Any, handler: Any) -> Any:
            choice = tool_choice(spec, plain_messages(request.messages)) if names else None
            if choice:
                request = request.override(tool_choice=choice)
            response = await handler(request)
            if choice == "required":
                produced = [m for m in getattr(response, "result", []) if isinstance(m, AIMessage)]
                if not any(m.tool_calls for m in produced):
                    error = required_tool_missed(sorted(names))
                    raise OWFError(error.message, code=error.code, details=error.details)
            return response

    return ToolChoice()
