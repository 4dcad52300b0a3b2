"""The langchain backend's agents, built once: the ``create_agent`` graph, its chat model and its
tools are made the first time an agent runs and reused by every later step and run.

What differs per call (the run's action runner and budgets, the tool-call count, the step's
context) is not baked into the graph: each call sets one `CallState` in a context variable, which
the tools and the turn-limit middleware read (LangGraph runs nodes and tools in tasks that copy
the caller's context). A cached agent is keyed by its manifest, the catalog its tools resolve in
(a load replaces the catalog) and the provider's environment variables (keys, base URLs).
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from owf_magics.agents import events
from owf_magics.agents.loop import agent_tools, system_prompt
from owf_magics.errors import OWFError, UnavailableError
from owf_magics.runtime.backend import ExecutionContext

if TYPE_CHECKING:
    from owf_magics.agents.providers import Model
    from owf_magics.backends.langchain_parts import AgentOptions
    from owf_magics.manifest.models import Agent, Connector

__all__ = ["AgentCache", "BuiltAgent", "CallState", "calling"]

#: How many built agents a backend keeps (least recently used first out).
CACHE_SIZE = 64

ActionCaller = Callable[["Connector", str, Any], Awaitable[Any]]
TurnHooks = tuple[Callable[[list[dict[str, Any]]], Awaitable[None]], Callable[[Any], None]]


@dataclass(slots=True)
class CallState:
    """What one agent call brings: the step's context, the run's action runner and turn hooks."""

    context: ExecutionContext
    caller: ActionCaller | None
    hooks: TurnHooks | None
    calls: int = 0


_CALL: ContextVar[CallState | None] = ContextVar("owf_langchain_agent_call", default=None)


class calling:
    """Make `state` the current call's state for the tools and middleware of a cached agent."""

    __slots__ = ("_state", "_token")

    def __init__(self, state: CallState) -> None:
        self._state = state

    def __enter__(self) -> CallState:
        self._token = _CALL.set(self._state)
        return self._state

    def __exit__(self, *exc: object) -> None:
        _CALL.reset(self._token)


def _current() -> CallState:
    state = _CALL.get()
    if state is None:  # a cached agent's graph invoked outside LangChainBackend.ainvoke
        raise OWFError("a cached langchain agent ran outside a backend call", code="BACKEND_ERROR")
    return state


@dataclass(slots=True)
class BuiltAgent:
    """An agent ready to run: its model, options, compiled graph and tool names."""

    agent: Agent
    options: AgentOptions
    model: Model
    graph: Any
    tools: list[str]
    system: str
    catalog: Any = field(repr=False)  # kept so the key's id() cannot be reused by another catalog


class AgentCache:
    """Built agents of one backend, least recently used first out."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._built: OrderedDict[tuple[str, int, tuple[tuple[str, str], ...], bool], BuiltAgent] = OrderedDict()
        self.builds = 0  # how many agents were built (read by tests and the benchmark)

    def get(self, manifest: Mapping[str, Any], context: ExecutionContext) -> BuiltAgent:
        registry = context.metadata.get("registry")
        catalog = getattr(registry, "catalog", None)
        provider = str((manifest.get("model") or {}).get("provider") or "")
        prefix = provider.upper().replace("-", "_") + "_"
        env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(prefix))) if provider else ()
        limited = context.metadata.get("turn_hooks") is not None  # budgets or rate limits to apply
        key = (json.dumps(manifest, sort_keys=True, default=str), id(catalog), env, limited)
        hit = self._built.get(key)
        if hit is not None and hit.catalog is catalog:
            self._built.move_to_end(key)
            return hit
        built = build_agent(manifest, context, limited=limited)
        built.catalog = catalog
        self.builds += 1
        self._built[key] = built
        while len(self._built) > self.size:
            self._built.popitem(last=False)
        return built

    def clear(self) -> None:
        self._built.clear()


def build_agent(manifest: Mapping[str, Any], context: ExecutionContext, *, limited: bool) -> BuiltAgent:
    """Validate the agent, make its model and tools, and compile its ``create_agent`` graph (with
    the turn-limit middleware when `limited`: it adds two nodes to every turn)."""
    from langchain.agents import create_agent

    from owf_magics.agents.providers import LangChainChatModel, make_model
    from owf_magics.backends.langchain_parts import (
        AgentOptions,
        OfflineChatModel,
        native_unknown_tools,
        no_confirmations,
    )
    from owf_magics.backends.langchain_tool_choice import tool_choice_middleware
    from owf_magics.manifest.models import Agent

    agent = Agent.model_validate(manifest)
    no_confirmations(agent, "langchain")
    options = AgentOptions.from_config(agent.execution.config if agent.execution else {})
    model = make_model(agent.model)
    chat = model.chat if isinstance(model, LangChainChatModel) else OfflineChatModel(owf_model=model)
    tools = _tools(agent, context, options)
    system = system_prompt(agent)
    names = [t.name for t in tools]
    middleware = [_turn_limits(system)] if limited else []
    choice = tool_choice_middleware(agent.model, names)  # model.params.tool_choice (OpenFlow tool_selection)
    if choice is not None:
        middleware.append(choice)
    graph = create_agent(chat, tools, system_prompt=system or None, middleware=middleware, name=agent.name)
    if tools and not _answer_unknown_tools(graph, names):  # a LangGraph without the seam: the middleware
        middleware.insert(0, native_unknown_tools(names))
        graph = create_agent(chat, tools, system_prompt=system or None, middleware=middleware, name=agent.name)
    return BuiltAgent(agent, options, model, graph, names, system, None)


def _answer_unknown_tools(graph: Any, names: list[str]) -> bool:
    """Make the agent's tool node answer a call to a tool it does not have as the native loop does.

    A ``wrap_tool_call`` middleware does the same, but LangChain wraps every such hook in a
    LangSmith ``traceable`` that hops to a thread four times per tool call (a quarter of an agent
    step); the tool node's own check for unknown names costs nothing. Returns False when this
    LangGraph's tool node has no such check (the caller then uses the middleware).
    """
    from langchain_core.messages import ToolMessage

    node = getattr(graph.nodes.get("tools"), "bound", None)
    if node is None or not callable(getattr(node, "_validate_tool_call", None)):
        return False
    known = set(names)
    body = json.dumps  # the native loop's answer, as native_unknown_tools gives it

    def validate(call: Mapping[str, Any]) -> Any:
        if call["name"] in known:
            return None
        text = body({"error": f"unknown tool '{call['name']}'", "tools": sorted(names)})
        return ToolMessage(text, tool_call_id=call["id"], name=call["name"], status="error")

    node._validate_tool_call = validate
    return True


def _tools(agent: Agent, context: ExecutionContext, options: AgentOptions) -> list[Any]:
    """The toolset as ``StructuredTool``s whose calls go through the current call's action runner."""
    from langchain_core.tools import StructuredTool

    from owf_magics.backends.langchain_parts import native_error, standalone_action

    if not agent.toolset:
        return []
    registry = context.metadata.get("registry")
    if registry is None:
        raise UnavailableError(
            "the agent's toolset needs the registry its connectors are loaded in",
            details={"backend": "langchain", "suggestion": "pass context.metadata['registry'] = your OpenWorkflow"},
        )
    behavior = agent.guardrails.behavior if agent.guardrails else None
    max_calls = behavior.maxToolCalls if behavior and behavior.maxToolCalls is not None else None
    handle = options.handle_parsing_errors
    out = []
    for tool in agent_tools(registry, agent).values():

        async def run(_tool: Any = tool, **args: Any) -> str:
            state = _current()
            events.emit(events.TOOL_CALLED, agent=agent.name, tool=_tool.name, arguments=args)
            state.calls += 1
            if max_calls is not None and state.calls > max_calls:
                raise OWFError(
                    f"agent exceeded maxToolCalls ({max_calls})", code="VALIDATION", details={"maxToolCalls": max_calls}
                )
            try:
                if state.caller is not None:
                    result = await state.caller(_tool.connector, _tool.action, args)
                else:
                    result = await standalone_action(_tool.connector, _tool.action, args, state.context)()
            except OWFError as exc:
                if exc.code == "VALIDATION" and handle is False:
                    raise
                if isinstance(handle, str) and exc.code == "VALIDATION":
                    return handle
                result = {"error": exc.message, "code": exc.code}
            except Exception as exc:  # a handler's own error fails the step, as in the native loop
                raise native_error(exc) from exc
            events.emit(events.TOOL_COMPLETED, agent=agent.name, tool=_tool.name, result=result)
            return json.dumps(result, default=str)

        out.append(
            StructuredTool(
                name=tool.name,
                description=tool.description or f"The '{tool.action}' action of the '{tool.connector.name}' connector",
                args_schema=tool.parameters,
                coroutine=run,
            )
        )
    return out


def _turn_limits(system: str) -> Any:
    """Middleware applying the current call's turn hooks (budgets, rate limits) around each model
    call; a call without hooks passes through."""
    from langchain.agents.middleware import AgentMiddleware
    from langchain_core.messages import AIMessage

    from owf_magics.agents.providers import Usage
    from owf_magics.backends.langchain_parts import plain_messages

    head = [{"role": "system", "content": system}] if system else []

    class TurnLimits(AgentMiddleware):
        async def abefore_model(self, state: Any, runtime: Any) -> None:
            hooks = _current().hooks
            if hooks is not None:
                await hooks[0](head + plain_messages(state["messages"]))

        async def aafter_model(self, state: Any, runtime: Any) -> None:
            hooks = _current().hooks
            last = state["messages"][-1] if state["messages"] else None
            meta = last.usage_metadata if isinstance(last, AIMessage) else None
            if hooks is not None and meta:
                hooks[1](Usage(int(meta["input_tokens"]), int(meta["output_tokens"]), False))

    return TurnLimits()
