"""Model providers for agents: the offline ``echo`` and ``scripted`` providers.

Both are always available, deterministic and free, so demos and tests need no key. A response's
``usage`` is exact when the manifest gives it; otherwise tokens are estimated (about four
characters a token) and marked ``estimated``.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from owf_magics.errors import BackendError, UnavailableError
from owf_magics.manifest.models import ModelSpec
from owf_magics.runtime.results import StepError

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


class WorkflowModel(Model):
    """A workflow as an agent (``Workflow.as_agent()``, docs/patterns.md): the first turn calls the
    agent's one workflow tool with the input (a mapping of its inputs, or the text as its first
    input), the second answers with the outputs (the only one, ``final``, or all as JSON)."""

    provider = "workflow"

    async def respond(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], turn: int) -> Reply:
        done = Usage(0, 0, False)  # no model: nothing to count
        if turn == 0:
            if not tools:
                raise BackendError(
                    "a workflow agent needs its workflow in its toolset", details={"provider": "workflow"}
                )
            user = next((m for m in reversed(messages) if m["role"] == "user"), {"content": ""})
            data = user.get("raw", user.get("content"))
            props = list((tools[0].get("parameters") or {}).get("properties") or {})
            if isinstance(data, dict) and (not props or set(data) <= set(props)):
                args = dict(data)
            else:
                args = {props[0]: data if isinstance(data, str) else json.dumps(data, default=str)} if props else {}
            return Reply(
                content=None, tool_calls=[{"name": tools[0]["name"], "args": args, "id": "call_0_0"}], usage=done
            )
        result = json.loads(next(m for m in reversed(messages) if m["role"] == "tool")["content"])
        if isinstance(result, dict) and "error" not in result and len(result) == 1:
            result = next(iter(result.values()))
        elif isinstance(result, dict) and "final" in result:
            result = result["final"]
        content = result if isinstance(result, str) else json.dumps(result, default=str)
        return Reply(content=content, usage=done)


_KEYS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


def tool_choice(spec: ModelSpec, messages: list[dict[str, Any]]) -> str | None:
    """The turn's tool choice from ``model.params.tool_choice`` (``auto``, ``none``, ``required``
    or a tool's name). ``required`` (OpenFlow's ``tool_selection: manual``) holds until the model
    has called a tool in this invocation, so it can then answer; None lets the provider choose."""
    choice = spec.params.get("tool_choice")
    if not isinstance(choice, str) or not choice or choice == "auto":
        return None
    if choice in ("required", "any") and any(m.get("role") == "tool" for m in messages):
        return None
    return "required" if choice == "any" else choice


def required_tool_missed(tools: list[str]) -> StepError:
    """The step error when a model answers without the tool call ``tool_choice: required`` asks for."""
    return StepError(
        "VALIDATION",
        "the model answered without calling a tool, and its tool_choice is 'required'",
        {"tool_choice": "required", "tools": tools},
    )


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
            specs = [
                {
                    "type": "function",
                    "function": {"name": t["name"], "description": t["description"], "parameters": t["parameters"]},
                }
                for t in tools
            ]
            choice = tool_choice(self.spec, messages)
            chat = chat.bind_tools(specs, tool_choice=choice) if choice else chat.bind_tools(specs)
        if self.streaming:
            msg: Any = None
            from owf_magics.agents import events

            async for chunk in chat.astream(lc):
                msg = chunk if msg is None else msg + chunk
                if isinstance(chunk.content, str) and chunk.content:
                    events.emit(events.MESSAGE_DELTA, delta=chunk.content)
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


def _unavailable(provider: str, message: str, package: str | None = None, **details: Any) -> UnavailableError:
    info: dict[str, Any] = {"provider": provider, **details}
    if package:
        info["package"] = package
        info.setdefault("suggestion", f"pip install {package}")
    return UnavailableError(message, details=info)


def make_model(spec: ModelSpec) -> Model:
    """The model for a manifest's ``model`` block: the offline providers, OpenAI and the
    OpenAI-compatible ones through a base URL (``manifest/providers.py``), any other provider
    LangChain's ``init_chat_model`` knows. Raises UNAVAILABLE naming the package to install."""
    if spec.provider == "echo":
        return EchoModel(spec)
    if spec.provider == "scripted":
        return ScriptedModel(spec)
    if spec.provider == "workflow":
        return WorkflowModel(spec)
    from owf_magics.manifest import providers as registry

    provider = spec.provider
    config = dict(spec.providerConfig)
    streaming = bool(config.pop("streaming", False))
    module = registry.chat_module(provider)
    if module is None:
        raise _unavailable(
            provider,
            f"model provider '{provider}' is not one LangChain's init_chat_model knows",
            suggestion="name a provider of init_chat_model (openai, anthropic, bedrock, mistralai...), or "
            "openai_compatible with providerConfig.base_url",
        )
    package = registry.package_of(module)
    if not registry.installed(module):
        raise _unavailable(provider, f"model provider '{provider}' needs the {package} package", package)
    params: dict[str, Any] = {"model": spec.id}
    for value, name in ((spec.temperature, "temperature"), (spec.maxTokens, "max_tokens"), (spec.topP, "top_p")):
        if value is not None:
            params[name] = value
    if provider == "openai" or provider in registry.COMPATIBLE:
        chat = _openai_chat(spec, config, params, streaming)
    else:
        if not registry.installed("langchain"):
            raise _unavailable(provider, f"model provider '{provider}' needs the langchain package", "langchain")
        import os

        env = _KEYS.get(provider)
        if env and not (config.get("api_key") or os.environ.get(env)):
            raise _unavailable(
                provider,
                f"model provider '{provider}' needs an API key",
                suggestion=f"set {env}, or providerConfig.api_key",
            )
        from langchain.chat_models import init_chat_model

        try:
            chat = init_chat_model(model_provider=provider, **params, **config)
        except ImportError as exc:
            raise _unavailable(provider, f"model provider '{provider}' needs the {package} package", package) from exc
        except Exception as exc:  # the provider's own checks (a missing key or setting)
            raise _unavailable(
                provider,
                f"model provider '{provider}' could not be configured: {exc}",
                suggestion="set the provider's key and settings in the environment or model.providerConfig",
            ) from exc
    return LangChainChatModel(spec, chat, streaming)


def _openai_chat(spec: ModelSpec, config: dict[str, Any], params: dict[str, Any], streaming: bool) -> Any:
    """ChatOpenAI for ``openai`` and the OpenAI-compatible providers (``grok``, ``azure``,
    ``openai_compatible``), which need a base URL (their default, or ``providerConfig.base_url``)."""
    import os

    from owf_magics.manifest import providers as registry

    provider = spec.provider
    if provider in registry.COMPATIBLE:
        base_url = registry.compatible_params(provider, config, registry.COMPATIBLE)
        if not base_url:
            raise _unavailable(
                provider,
                f"model provider '{provider}' needs a base URL",
                suggestion="set model.providerConfig.base_url (OpenFlow: config.base_url)",
            )
        config["base_url"] = base_url
        env = registry.COMPATIBLE_KEYS.get(provider)
        key = config.get("api_key") or (os.environ.get(env) if env else None)
        if not key and provider != "openai_compatible":
            raise _unavailable(provider, f"model provider '{provider}' needs an API key", suggestion=f"set {env}")
        config["api_key"] = key or os.environ.get("OPENAI_API_KEY") or "unused"  # local servers need none
    elif not (config.get("api_key") or os.environ.get(_KEYS["openai"])):
        raise _unavailable(
            provider,
            f"model provider '{provider}' needs an API key",
            suggestion=f"set {_KEYS['openai']}, or providerConfig.api_key",
        )
    from langchain_openai import ChatOpenAI

    params = {**params, **config}
    if streaming:  # the exact usage in the last chunk; tokens as they come (agent.message.delta)
        params["stream_usage"] = True
        params["streaming"] = True
    return ChatOpenAI(**params)


class Prices:
    """Model prices in USD per 1M tokens: the shipped table (``owf_magics/data/prices.json``),
    overridden by ``OpenWorkflow(prices=...)``, overridden by a manifest's ``model.pricing``.

    A model found nowhere costs NaN (unknown), never a silent 0; the offline providers are free.
    """

    def __init__(self, overrides: Mapping[str, Mapping[str, float]] | None = None) -> None:
        table = _shipped_prices()
        self.free = frozenset(table.get("free_providers", ()))
        self.models: dict[str, tuple[float, float]] = {
            k.lower(): _rates(v) for k, v in {**table["models"], **(overrides or {})}.items()
        }

    def rates(self, spec: ModelSpec) -> tuple[float, float] | None:
        """(input, output) USD per 1M tokens, or None when the model's price is unknown."""
        if spec.pricing:
            return _rates(spec.pricing)
        if spec.provider in self.free:
            return (0.0, 0.0)
        model = (spec.id or "").lower()
        for key in (f"{spec.provider.lower()}/{model}", model):
            if key in self.models:
                return self.models[key]
        # dated or suffixed ids (gpt-4o-2024-08-06, claude-3-5-sonnet-20241022): the longest known prefix
        best = max(
            (k for k in self.models if f"{spec.provider.lower()}/{model}".startswith(k) or model.startswith(k)),
            key=len,
            default=None,
        )
        return self.models[best] if best else None

    def cost(self, spec: ModelSpec, usage: Usage) -> float:
        """USD for one model call; NaN when the model's price is unknown."""
        rates = self.rates(spec)
        if rates is None:
            return math.nan
        return round((usage.prompt_tokens * rates[0] + usage.completion_tokens * rates[1]) / 1_000_000, 10)


def _rates(pricing: Mapping[str, float]) -> tuple[float, float]:
    prompt = pricing.get("input", pricing.get("prompt", 0.0))
    completion = pricing.get("output", pricing.get("completion", 0.0))
    return float(prompt), float(completion)


@functools.cache
def _shipped_prices() -> dict[str, Any]:
    from importlib.resources import files

    data: dict[str, Any] = json.loads(files("owf_magics").joinpath("data/prices.json").read_text("utf-8"))
    return data


def cost_of(spec: ModelSpec, usage: Usage, prices: Prices | None = None) -> float:
    """USD for a model call (see `Prices`); NaN when the model's price is unknown."""
    return (prices or Prices()).cost(spec, usage)
