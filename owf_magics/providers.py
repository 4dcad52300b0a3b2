"""Model providers for agents: the offline ``echo`` and ``scripted`` providers.

Both are always available, deterministic and free, so demos and tests need no key. A response's
``usage`` is exact when the manifest gives it; otherwise tokens are estimated (about four
characters a token) and marked ``estimated``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import BackendError, UnavailableError
from .models import ModelSpec

OFFLINE = ("echo", "scripted")


@dataclass(slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    estimated: bool

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class Reply:
    """One model turn: text, or tool calls, with its token usage."""

    content: Any = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: Usage | None = None


def estimate_tokens(value: Any) -> int:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return max(1, math.ceil(len(text) / 4)) if text else 0


def messages_text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(str(m.get("content") or "") for m in messages)


class Model:
    """A chat model the native agent loop talks to."""

    provider = "base"

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.name = spec.id or spec.provider

    async def respond(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], turn: int) -> Reply:
        raise NotImplementedError


class EchoModel(Model):
    """Answers with the agent's rendered input."""

    provider = "echo"

    async def respond(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], turn: int) -> Reply:
        user = next((m for m in reversed(messages) if m["role"] == "user"), {"content": ""})
        answer = user.get("raw", user.get("content"))
        usage = Usage(estimate_tokens(messages_text(messages)), estimate_tokens(answer), True)
        return Reply(content=answer, usage=usage)


class ScriptedModel(Model):
    """Answers from the manifest's ``responses`` list, in order (each invocation starts at the first)."""

    provider = "scripted"

    async def respond(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], turn: int) -> Reply:
        responses = self.spec.responses or []
        if turn >= len(responses):
            raise BackendError(
                f"the scripted model ran out of responses after {len(responses)} turn(s)",
                details={"provider": "scripted", "responses": len(responses)},
            )
        r = responses[turn]
        calls = [
            {"name": c.name, "args": dict(c.args), "id": c.id or f"call_{turn}_{i}"}
            for i, c in enumerate(r.tool_calls or [])
        ]
        if r.usage is not None:
            total = r.usage.total_tokens
            prompt, completion = r.usage.prompt_tokens, r.usage.completion_tokens
            if total is not None and prompt + completion != total:
                completion = max(0, total - prompt)
            usage = Usage(prompt, completion, False)
        else:
            usage = Usage(estimate_tokens(messages_text(messages)), estimate_tokens(r.content or calls), True)
        return Reply(content=r.content, tool_calls=calls, usage=usage)


def make_model(spec: ModelSpec) -> Model:
    """The model for a manifest's ``model`` block; raises UNAVAILABLE for providers not set up here."""
    if spec.provider == "echo":
        return EchoModel(spec)
    if spec.provider == "scripted":
        return ScriptedModel(spec)
    raise UnavailableError(
        f"model provider '{spec.provider}' is not available in this build",
        details={
            "provider": spec.provider,
            "suggestion": "use provider: echo or scripted offline; hosted providers come through langchain-core",
        },
    )


def cost_of(spec: ModelSpec, usage: Usage) -> float:
    """USD for a turn, from ``model.pricing`` (``prompt``/``completion`` per 1K tokens); 0 without it."""
    pricing = spec.pricing or {}
    prompt = float(pricing.get("prompt", pricing.get("input", 0.0)))
    completion = float(pricing.get("completion", pricing.get("output", 0.0)))
    return round(usage.prompt_tokens / 1000 * prompt + usage.completion_tokens / 1000 * completion, 8)
