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


_PACKAGES = {"openai": "langchain-openai", "anthropic": "langchain-anthropic"}
_KEYS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


class LangChainChatModel(Model):
    """A hosted provider through a langchain-core chat model (``openai``, ``anthropic``, ...).

    ``model.providerConfig`` is passed to the chat model (``base_url``, ``api_key``, ``timeout``...);
    ``providerConfig.streaming: true`` streams and still reads the exact usage from the chunks.
    """

    def __init__(self, spec: ModelSpec, chat: Any, streaming: bool) -> None:
        super().__init__(spec)
        self.provider = spec.provider
        self.chat = chat
        self.streaming = streaming

    async def respond(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], turn: int) -> Reply:
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

        lc: list[Any] = []
        for m in messages:
            role = m["role"]
            if role == "system":
                lc.append(SystemMessage(m["content"]))
            elif role == "user":
                lc.append(HumanMessage(m["content"]))
            elif role == "assistant":
                calls = [
                    {"name": c["name"], "args": c.get("args") or {}, "id": c.get("id")} for c in m.get("tool_calls", [])
                ]
                lc.append(AIMessage(content=m.get("content") or "", tool_calls=calls))
            elif role == "tool":
                lc.append(ToolMessage(m["content"], tool_call_id=m.get("tool_call_id") or ""))
        chat = self.chat
        if tools:
            chat = chat.bind_tools(
                [
                    {
                        "type": "function",
                        "function": {"name": t["name"], "description": t["description"], "parameters": t["parameters"]},
                    }
                    for t in tools
                ]
            )
        if self.streaming:
            msg: Any = None
            async for chunk in chat.astream(lc):
                msg = chunk if msg is None else msg + chunk
        else:
            msg = await chat.ainvoke(lc)
        meta = getattr(msg, "usage_metadata", None) or {}
        if meta:
            usage = Usage(int(meta.get("input_tokens", 0)), int(meta.get("output_tokens", 0)), False)
        else:
            usage = Usage(estimate_tokens(messages_text(messages)), estimate_tokens(msg.content), True)
        calls = [{"name": c["name"], "args": c.get("args") or {}, "id": c.get("id")} for c in (msg.tool_calls or [])]
        content = msg.content if isinstance(msg.content, str) else json.dumps(msg.content)
        return Reply(content=None if calls else content, tool_calls=calls, usage=usage)


def make_model(spec: ModelSpec) -> Model:
    """The model for a manifest's ``model`` block; raises UNAVAILABLE with the install hint."""
    if spec.provider == "echo":
        return EchoModel(spec)
    if spec.provider == "scripted":
        return ScriptedModel(spec)
    config = dict(spec.providerConfig)
    streaming = bool(config.pop("streaming", False))
    package = _PACKAGES.get(spec.provider, f"langchain-{spec.provider}")
    key = _KEYS.get(spec.provider)
    import os

    if key and not (config.get("api_key") or os.environ.get(key)):
        raise UnavailableError(
            f"model provider '{spec.provider}' needs an API key",
            details={"provider": spec.provider, "suggestion": f"set {key}, or providerConfig.api_key"},
        )
    chat: Any
    try:
        if spec.provider == "openai":
            from langchain_openai import ChatOpenAI

            params: dict[str, Any] = {"model": spec.id, **config}
            if spec.temperature is not None:
                params["temperature"] = spec.temperature
            if spec.maxTokens is not None:
                params["max_tokens"] = spec.maxTokens
            if streaming:
                params["stream_usage"] = True
            chat = ChatOpenAI(**params)
        else:
            from langchain.chat_models import init_chat_model

            chat = init_chat_model(spec.id, model_provider=spec.provider, **config)
    except ImportError as exc:
        raise UnavailableError(
            f"model provider '{spec.provider}' needs the {package} package",
            details={"provider": spec.provider, "suggestion": f"pip install {package}"},
        ) from exc
    return LangChainChatModel(spec, chat, streaming)


def cost_of(spec: ModelSpec, usage: Usage) -> float:
    """USD for a turn, from ``model.pricing`` (``prompt``/``completion`` per 1K tokens); 0 without it."""
    pricing = spec.pricing or {}
    prompt = float(pricing.get("prompt", pricing.get("input", 0.0)))
    completion = float(pricing.get("completion", pricing.get("output", 0.0)))
    return round(usage.prompt_tokens / 1000 * prompt + usage.completion_tokens / 1000 * completion, 8)
