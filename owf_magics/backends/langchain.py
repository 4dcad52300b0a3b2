"""The ``langchain`` backend (alias ``langgraph``): agents as LangGraph tool-calling agents.

Agent steps run through ``langchain.agents.create_agent`` (the prebuilt agent LangChain 1.x and
LangGraph 1.x recommend; ``langgraph.prebuilt.create_react_agent`` is deprecated) with the model
from the same provider layer as native, and toolset connectors as LangChain ``StructuredTool``s.
Action and logic steps run as nodes of a one-node LangGraph graph around the native handler.
LangGraph and LangChain are imported only when this backend is first used.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypedDict

from owf_magics._version import __version__
from owf_magics.agents.loop import agent_tools, system_prompt
from owf_magics.agents.loop import check_output as native_check_output
from owf_magics.backends.native import LOGIC_CAPABILITIES
from owf_magics.connectors.actions import validate_action_input
from owf_magics.connectors.function import call_function
from owf_magics.errors import BackendError, OWFError, StepTimeoutError, UnavailableError
from owf_magics.runtime.backend import Backend, BackendInfo, ExecutionContext
from owf_magics.runtime.context import StepFailed, to_step_error

if TYPE_CHECKING:
    from owf_magics.agents.providers import Model
    from owf_magics.manifest.models import Agent, Connector

ADAPTER_VERSION = __version__
log = logging.getLogger("owf_magics.langchain")

#: LangChain's ``AgentType`` names (and the spec's ``react``): all run as the one tool-calling agent
#: LangGraph builds, since LangChain 1.x has no other agent loop.
AGENT_TYPES = frozenset(
    {
        "react",
        "tool-calling",
        "tool_calling",
        "tools",
        "openai-functions",
        "openai-tools",
        "structured-chat",
        "zero-shot-react-description",
        "chat-zero-shot-react-description",
        "conversational-react-description",
        "chat-conversational-react-description",
        "structured-chat-zero-shot-react-description",
        "openai-multi-functions",
    }
)
MEMORY_TYPES = frozenset({"buffer", "none"})
DEFAULT_MAX_ITERATIONS = 10


def framework_versions() -> dict[str, str]:
    """Installed versions of the frameworks this adapter wraps (read without importing them)."""
    from importlib import metadata

    out: dict[str, str] = {}
    for dist in ("langgraph", "langchain-core", "langchain"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def run_sync(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to completion from sync code, also when this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="owf-langchain-sync")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


@dataclass(frozen=True, slots=True)
class AgentOptions:
    """``execution.config`` as this backend reads it (snake_case or camelCase keys)."""

    agent_type: str = "tool-calling"
    max_iterations: int = DEFAULT_MAX_ITERATIONS
    handle_parsing_errors: bool | str = True
    verbose: bool = False
    memory_type: str | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AgentOptions:
        def get(snake: str, camel: str, default: Any) -> Any:
            value = config.get(snake, config.get(camel))
            return default if value is None else value

        agent_type = str(get("agent_type", "agentType", "tool-calling"))
        if agent_type.lower().replace("_", "-") not in {t.replace("_", "-") for t in AGENT_TYPES}:
            raise OWFError(
                f"execution.config.agent_type '{agent_type}' is not a LangChain agent type",
                code="VALIDATION",
                details={"backend": "langchain", "known": sorted(AGENT_TYPES)},
            )
        max_iter = get("max_iterations", "maxIterations", DEFAULT_MAX_ITERATIONS)
        if not isinstance(max_iter, int) or isinstance(max_iter, bool) or max_iter < 1:
            raise OWFError(
                f"execution.config.max_iterations must be a positive integer, got {max_iter!r}",
                code="VALIDATION",
                details={"backend": "langchain"},
            )
        memory = get("memory_type", "memoryType", None)
        if memory is not None and memory not in MEMORY_TYPES:
            raise OWFError(
                f"execution.config.memory_type '{memory}' is not supported by the langchain backend",
                code="VALIDATION",
                details={"backend": "langchain", "supported": sorted(MEMORY_TYPES)},
            )
        handle = get("handle_parsing_errors", "handleParsingErrors", True)
        return cls(
            agent_type,
            max_iter,
            handle if isinstance(handle, str) else bool(handle),
            bool(get("verbose", "verbose", False)),
            memory,
        )


class _StepState(TypedDict):
    value: Any


class LangChainBackend(Backend):
    """LangGraph agents and nodes behind the spec's backend contract.

    Args:
        runtime: Only ``python``: the Node.js adapter is a separate package.
        version: The adapter version to report (the spec's example passes one); default owf-magics'.

    Example:
        >>> ow.register_backend("langchain", LangChainBackend(runtime="python"))  # doctest: +SKIP
    """

    name = "langchain"

    def __init__(self, runtime: str = "python", version: str | None = None) -> None:
        if runtime != "python":
            raise UnavailableError(_node_message(), details=_node_details())
        self.runtime = runtime
        self.version = version or ADAPTER_VERSION
        self._node_graph: Any = None
        self._memory: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self._info: BackendInfo | None = None

    # -- contract ------------------------------------------------------------------------------

    def get_info(self) -> BackendInfo:
        if self._info is None:
            self._info = BackendInfo(
                name="langchain",
                version=self.version,
                installed=True,
                description="LangChain integration (LangGraph agents and graphs)",
                runtime="python",
                capabilities=("action", "agent", *LOGIC_CAPABILITIES),
                frameworks=framework_versions(),
            )
        return self._info

    def invoke(self, manifest: dict[str, Any], input: dict[str, Any], context: ExecutionContext) -> dict[str, Any]:
        result: dict[str, Any] = run_sync(self.ainvoke(manifest, input, context))
        return result

    async def ainvoke(
        self, manifest: dict[str, Any], input: dict[str, Any], context: ExecutionContext
    ) -> dict[str, Any]:
        _check_runtime(manifest, context)
        kind = manifest.get("type")
        if kind == "agent":
            coro: Awaitable[dict[str, Any]] = self._agent(manifest, input, context)
        elif kind == "connector":
            coro = self._action(manifest, input, context)
        else:
            raise BackendError(
                f"the langchain backend cannot invoke a manifest of type {kind!r}", details={"backend": "langchain"}
            )
        try:
            result: dict[str, Any] = await _within_deadline(coro, context)
        except OWFError:
            raise
        except Exception as exc:
            raise BackendError(
                f"LangChain {kind} execution failed: {type(exc).__name__}: {exc}",
                details={"backend": "langchain", "original_error": f"{type(exc).__name__}: {exc}"},
            ) from exc
        return result

    async def arun_step(self, native: Callable[[], Awaitable[Any]], context: ExecutionContext) -> Any:
        """Run a logic step (or an action's native handler) as the node of a one-node LangGraph graph."""
        _check_runtime({}, context)
        graph = self._graph()
        state = await _within_deadline(graph.ainvoke({"value": None}, {"configurable": {"owf_run": native}}), context)
        return state["value"]

    # -- steps ---------------------------------------------------------------------------------

    def _graph(self) -> Any:
        if self._node_graph is None:
            from langchain_core.runnables import RunnableConfig
            from langgraph.graph import END, START, StateGraph

            async def step(state: _StepState, config: RunnableConfig) -> dict[str, Any]:
                fn = config["configurable"]["owf_run"]
                return {"value": await fn()}

            g = StateGraph(_StepState)
            g.add_node("step", step)
            g.add_edge(START, "step")
            g.add_edge("step", END)
            self._node_graph = g.compile(name="owf-step")
        return self._node_graph

    async def _action(
        self, manifest: dict[str, Any], input: dict[str, Any], context: ExecutionContext
    ) -> dict[str, Any]:
        native = context.metadata.get("native")
        if native is None:  # called outside the executor: function handlers only
            from owf_magics.manifest.models import Connector

            connector = Connector.model_validate(manifest)
            action = str(context.metadata.get("action") or "")
            native = standalone_action(connector, action, context.metadata.get("raw_input", input), context)
        try:
            output = await self.arun_step(native, context)
        except OWFError:
            raise
        except Exception as exc:  # the handler's own error: reported exactly as native reports it
            raise native_error(exc) from exc
        return {"status": "success", "output": output}

    async def _agent(
        self, manifest: dict[str, Any], input: dict[str, Any], context: ExecutionContext
    ) -> dict[str, Any]:
        from langchain.agents import create_agent
        from langchain_core.messages import AIMessage, HumanMessage
        from langgraph.errors import GraphRecursionError

        from owf_magics.agents.providers import LangChainChatModel, Usage, cost_of, estimate_tokens, make_model
        from owf_magics.manifest.models import Agent

        agent = Agent.model_validate(manifest)
        no_confirmations(agent, "langchain")
        options = AgentOptions.from_config(agent.execution.config if agent.execution else {})
        model = make_model(agent.model)
        chat = model.chat if isinstance(model, LangChainChatModel) else OfflineChatModel(owf_model=model)
        tools = connector_tools(agent, context, options)
        raw = context.metadata.get("raw_input", input)
        content = raw if isinstance(raw, str) else json.dumps(raw, default=str, sort_keys=True)
        memory_on = (agent.memory is not None and agent.memory.type == "buffer") or options.memory_type == "buffer"
        store = self._memory_store(context)
        key = f"{agent.namespace or 'local'}/{agent.name}"
        history: list[Any] = []
        if memory_on:
            past = store.get(key, [])
            keep = agent.memory.maxMessages if agent.memory and agent.memory.maxMessages is not None else len(past)
            for m in past[-keep:] if keep else []:
                history.append(HumanMessage(m["content"]) if m["role"] == "user" else AIMessage(m["content"]))
        middleware = [_native_unknown_tools([t.name for t in tools])] if tools else []
        hooks = context.metadata.get("turn_hooks")
        if hooks is not None:  # the run's budgets and rate limits, checked around each model turn
            middleware.append(_turn_limits(hooks, system_prompt(agent)))
        graph = create_agent(
            chat, tools, system_prompt=system_prompt(agent) or None, middleware=middleware, name=agent.name
        )
        start = len(history) + 1
        turns: list[Any] = []  # every AIMessage the model produced, in order, also when the run fails
        callbacks = [_usage_collector(turns)]
        if options.verbose:
            callbacks.append(_VerboseLog(agent.name, context.secrets))

        def usage_rows() -> list[dict[str, Any]]:
            rows = []
            for msg in turns:
                meta = msg.usage_metadata
                if meta:
                    prompt, completion = int(meta["input_tokens"]), int(meta["output_tokens"])
                    estimated = bool(msg.response_metadata.get("owf_estimated", False))
                else:
                    prompt, completion, estimated = 0, estimate_tokens(msg.content), True
                turn = Usage(prompt, completion, estimated)
                rows.append(
                    {
                        "provider": agent.model.provider,
                        "model": model.name,
                        "prompt_tokens": prompt,
                        "completion_tokens": completion,
                        "total_tokens": turn.total_tokens,
                        "estimated": estimated,
                        "cost_usd": cost_of(agent.model, turn, run_prices(context)),
                    }
                )
            return rows

        try:
            state = await graph.ainvoke(
                {"messages": [*history, HumanMessage(content, additional_kwargs={"owf_raw": raw})]},
                {"recursion_limit": 2 * options.max_iterations, "callbacks": callbacks},
            )
        except GraphRecursionError as exc:
            raise _with_usage(
                BackendError(
                    f"agent did not finish within {options.max_iterations} iterations",
                    details={
                        "backend": "langchain",
                        "maxIterations": options.max_iterations,
                        "original_error": f"GraphRecursionError: {exc}",
                    },
                ),
                usage_rows(),
            ) from exc
        except OWFError as exc:
            raise _with_usage(exc, usage_rows()) from None
        except Exception as exc:
            raise _with_usage(
                BackendError(
                    f"LangChain agent execution failed: {type(exc).__name__}: {exc}",
                    details={"backend": "langchain", "original_error": f"{type(exc).__name__}: {exc}"},
                ),
                usage_rows(),
            ) from exc
        produced = [m for m in state["messages"][start:] if isinstance(m, AIMessage)]
        usage = usage_rows()
        final = produced[-1] if produced else None
        if final is None or final.tool_calls:
            raise BackendError("the agent ended without an answer", details={"backend": "langchain"})
        if "owf_content" in final.additional_kwargs:
            answer = final.additional_kwargs["owf_content"]
        else:
            answer = final.content if isinstance(final.content, str) else json.dumps(final.content)
        try:
            answer = check_output(agent, answer)
        except OWFError as exc:
            raise _with_usage(exc, usage) from None
        if memory_on:
            text = answer if isinstance(answer, str) else json.dumps(answer, default=str)
            store.setdefault(key, []).extend(
                [{"role": "user", "content": content}, {"role": "assistant", "content": text}]
            )
        return {
            "status": "success",
            "output": answer,
            "usage": usage,
            "metadata": {"agent_type": options.agent_type, "turns": len(produced), "tools": [t.name for t in tools]},
        }

    def _memory_store(self, context: ExecutionContext) -> dict[str, list[dict[str, Any]]]:
        shared = context.metadata.get("memory")
        if isinstance(shared, dict):  # the run's memory: native and langchain agents share it
            return shared
        if len(self._memory) > 64:  # standalone calls: keep the memory of the most recent runs only
            self._memory.pop(next(iter(self._memory)))
        return self._memory.setdefault(context.run_id, {})


# ------------------------------------------------------------------------------------------------
# helpers


def _node_message() -> str:
    return (
        "the langchain backend of owf-magics runs in Python only: runtime 'node' needs the Node.js "
        "LangChain adapter, which runs outside this kernel"
    )


def _node_details() -> dict[str, Any]:
    return {
        "backend": "langchain",
        "runtime": "node",
        "suggestion": "use 'runtime: python', or register a Node.js adapter with ow.register_backend()",
    }


def _check_runtime(manifest: Mapping[str, Any], context: ExecutionContext) -> None:
    runtime = context.metadata.get("runtime") or (manifest.get("execution") or {}).get("runtime")
    if runtime == "node":
        raise UnavailableError(_node_message(), details=_node_details())


async def _within_deadline(coro: Awaitable[Any], context: ExecutionContext) -> Any:
    if context.deadline is None:
        return await coro
    remaining = (context.deadline - datetime.now(UTC)).total_seconds()
    try:
        return await asyncio.wait_for(coro, max(remaining, 0.0))
    except TimeoutError as exc:
        raise StepTimeoutError(
            f"step '{context.node_id}' passed its deadline {context.deadline.isoformat()}",
            details={"backend": "langchain", "deadline": context.deadline.isoformat()},
        ) from exc


def native_error(exc: BaseException) -> OWFError:
    """A handler's exception as the `OWFError` native reports for it (same code, message, details),
    so a step fails identically on both backends."""
    err = to_step_error(exc)
    return OWFError(err.message, code=err.code, details=dict(err.details))


def check_output(agent: Agent, content: Any) -> Any:
    """The agent's output guardrails, exactly as native applies them (errors as `OWFError`)."""
    try:
        return native_check_output(agent, content)
    except StepFailed as exc:
        raise OWFError(exc.error.message, code=exc.error.code, details=dict(exc.error.details)) from exc


def standalone_action(
    connector: Connector, action: str, data: Any, context: ExecutionContext
) -> Callable[[], Awaitable[Any]]:
    spec = connector.action(action)
    if spec is None:
        raise OWFError(f"connector '{connector.name}' has no action '{action}'", code="VALIDATION")
    if spec.handler is None or not spec.handler.function:
        kind = spec.handler.kind if spec.handler else "no"
        raise UnavailableError(
            f"outside a workflow run the langchain backend runs function handlers only, not {kind} handlers",
            details={"backend": "langchain", "handler": kind},
        )
    target = spec.handler.function

    async def run() -> Any:
        checked = validate_action_input(spec, data)
        return await asyncio.to_thread(call_function, target, checked, context)

    return run


ActionCaller = Callable[["Connector", str, Any], Awaitable[Any]]


def connector_tools(agent: Agent, context: ExecutionContext, options: AgentOptions | None = None) -> list[Any]:
    """The agent's toolset as LangChain ``StructuredTool``s.

    Each connector action becomes a tool named ``<toolPrefix or connector name>_<action>`` with the
    action's description and its input JSON Schema as the argument schema, exactly as native names
    them. Calls go through ``context.metadata["call_action"]`` (the run's native action runner)
    when the executor provides it, otherwise through the function handler directly.
    """
    from langchain_core.tools import StructuredTool

    if not agent.toolset:
        return []
    registry = context.metadata.get("registry")
    if registry is None:
        raise UnavailableError(
            "the agent's toolset needs the registry its connectors are loaded in",
            details={"backend": "langchain", "suggestion": "pass context.metadata['registry'] = your OpenWorkflow"},
        )
    options = options or AgentOptions()
    caller: ActionCaller | None = context.metadata.get("call_action")
    behavior = agent.guardrails.behavior if agent.guardrails else None
    max_calls = behavior.maxToolCalls if behavior and behavior.maxToolCalls is not None else None
    calls = [0]
    out = []
    for tool in agent_tools(registry, agent).values():

        async def run(_tool: Any = tool, **args: Any) -> str:
            calls[0] += 1
            if max_calls is not None and calls[0] > max_calls:
                raise OWFError(
                    f"agent exceeded maxToolCalls ({max_calls})", code="VALIDATION", details={"maxToolCalls": max_calls}
                )
            try:
                if caller is not None:
                    result = await caller(_tool.connector, _tool.action, args)
                else:
                    result = await standalone_action(_tool.connector, _tool.action, args, context)()
            except OWFError as exc:
                if exc.code == "VALIDATION" and options.handle_parsing_errors is False:
                    raise
                if isinstance(options.handle_parsing_errors, str) and exc.code == "VALIDATION":
                    return options.handle_parsing_errors
                result = {"error": exc.message, "code": exc.code}
            except Exception as exc:  # a handler's own error fails the step, as in the native loop
                raise native_error(exc) from exc
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


def _offline_model_class() -> type:
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from langchain_core.utils.function_calling import convert_to_openai_tool

    class _Offline(BaseChatModel):
        """A LangChain chat model around an offline provider (``echo``, ``scripted``)."""

        owf_model: Any

        @property
        def _llm_type(self) -> str:
            return f"owf-{self.owf_model.provider}"

        def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
            specs = []
            for t in tools:
                fn = convert_to_openai_tool(t)["function"]
                specs.append(
                    {
                        "name": fn["name"],
                        "description": fn.get("description", ""),
                        "parameters": fn.get("parameters", {}),
                    }
                )
            return self.bind(owf_tools=specs, **kwargs)

        def _generate(
            self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
        ) -> ChatResult:
            result: ChatResult = run_sync(self._agenerate(messages, stop, None, **kwargs))
            return result

        async def _agenerate(
            self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
        ) -> ChatResult:
            plain = _plain_messages(messages)
            turn = 0
            for m in messages:  # model turns since the latest user message
                turn = 0 if isinstance(m, HumanMessage) else turn + isinstance(m, AIMessage)
            model: Model = self.owf_model
            reply = await model.respond(plain, list(kwargs.get("owf_tools") or []), turn)
            text = reply.content if isinstance(reply.content, str) else ""
            if reply.content is not None and not isinstance(reply.content, str):
                text = json.dumps(reply.content, default=str, sort_keys=True)
            usage = reply.usage
            msg = AIMessage(
                content=text,
                tool_calls=[
                    {"name": c["name"], "args": c["args"], "id": c["id"], "type": "tool_call"} for c in reply.tool_calls
                ],
                additional_kwargs={} if reply.tool_calls else {"owf_content": reply.content},
                usage_metadata=(
                    {
                        "input_tokens": usage.prompt_tokens,
                        "output_tokens": usage.completion_tokens,
                        "total_tokens": usage.total_tokens,
                    }
                    if usage is not None
                    else None
                ),
                response_metadata={
                    "owf_estimated": usage.estimated if usage is not None else True,
                    "model_name": model.name,
                },
            )
            return ChatResult(generations=[ChatGeneration(message=msg)])

    return _Offline


_OFFLINE: type | None = None


def OfflineChatModel(*, owf_model: Model) -> Any:
    """A LangChain ``BaseChatModel`` wrapping an offline provider (supports ``bind_tools``)."""
    global _OFFLINE  # noqa: PLW0603 - the class is built once, on first use, so LangChain loads lazily
    if _OFFLINE is None:
        _OFFLINE = _offline_model_class()
    return _OFFLINE(owf_model=owf_model)


def no_confirmations(agent: Agent, backend: str) -> None:
    """Tool calls that need a person's confirmation pause the run: only the native loop can, so
    such an agent fails here rather than call the tool unconfirmed."""
    behavior = agent.guardrails.behavior if agent.guardrails else None
    if behavior is not None and behavior.requireConfirmation:
        raise UnavailableError(
            f"guardrails.behavior.requireConfirmation needs the native agent loop (approvals pause the run); "
            f"the {backend} backend does not run tools that need confirmation",
            details={"backend": backend, "suggestion": "run this agent on the native backend"},
        )


def run_prices(context: ExecutionContext) -> Any:
    """The run's price table (``OpenWorkflow(prices=...)``), so costs match native ones."""
    return getattr(context.metadata.get("registry"), "prices", None)


def _plain_messages(messages: Sequence[Any]) -> list[dict[str, Any]]:
    """LangChain messages as the provider layer's dicts (roles, content, tool calls, raw input)."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

    plain: list[dict[str, Any]] = []
    for m in messages:
        if isinstance(m, SystemMessage):
            plain.append({"role": "system", "content": m.content})
        elif isinstance(m, HumanMessage):
            entry: dict[str, Any] = {"role": "user", "content": m.content}
            if "owf_raw" in m.additional_kwargs:
                entry["raw"] = m.additional_kwargs["owf_raw"]
            plain.append(entry)
        elif isinstance(m, AIMessage):
            if m.tool_calls:
                calls = [{"name": c["name"], "args": c["args"], "id": c["id"]} for c in m.tool_calls]
                plain.append({"role": "assistant", "content": None, "tool_calls": calls})
            else:
                plain.append({"role": "assistant", "content": m.content})
        elif isinstance(m, ToolMessage):
            plain.append({"role": "tool", "tool_call_id": m.tool_call_id, "name": m.name, "content": m.content})
    return plain


def _turn_limits(hooks: tuple[Any, Any], system: str) -> Any:
    """Middleware applying the executor's turn hooks (budgets, rate limits) around each model call."""
    from langchain.agents.middleware import AgentMiddleware
    from langchain_core.messages import AIMessage

    from owf_magics.agents.providers import Usage

    before, after = hooks

    class TurnLimits(AgentMiddleware):
        async def abefore_model(self, state: Any, runtime: Any) -> None:
            head = [{"role": "system", "content": system}] if system else []
            await before(head + _plain_messages(state["messages"]))

        async def aafter_model(self, state: Any, runtime: Any) -> None:
            last = state["messages"][-1] if state["messages"] else None
            meta = last.usage_metadata if isinstance(last, AIMessage) else None
            if meta:
                after(Usage(int(meta["input_tokens"]), int(meta["output_tokens"]), False))

    return TurnLimits()


def _native_unknown_tools(names: list[str]) -> Any:
    """Middleware answering a call to a tool the agent does not have as the native loop does."""
    from langchain.agents.middleware import AgentMiddleware
    from langchain_core.messages import ToolMessage

    def answer(call: Mapping[str, Any]) -> Any:
        body = {"error": f"unknown tool '{call['name']}'", "tools": sorted(names)}
        return ToolMessage(json.dumps(body), tool_call_id=call["id"], name=call["name"], status="error")

    class NativeUnknownTools(AgentMiddleware):
        def wrap_tool_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
            return answer(request.tool_call) if request.tool is None else handler(request)

        async def awrap_tool_call(self, request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
            return answer(request.tool_call) if request.tool is None else await handler(request)

    return NativeUnknownTools()


def _with_usage(exc: OWFError, usage: list[dict[str, Any]]) -> OWFError:
    """Attach the turns a failed agent run used (``exc.usage``): the executor still counts them."""
    exc.usage = usage  # type: ignore[attr-defined]
    return exc


def _usage_collector(turns: list[Any]) -> Any:
    from langchain_core.callbacks import AsyncCallbackHandler

    class _Collect(AsyncCallbackHandler):
        async def on_llm_end(self, response: Any, **kwargs: Any) -> None:
            for gens in response.generations:
                for g in gens:
                    msg = getattr(g, "message", None)
                    if msg is not None:
                        turns.append(msg)

    return _Collect()


def _verbose_class() -> type:
    from langchain_core.callbacks import AsyncCallbackHandler

    from owf_magics.manifest.render import redact

    class _Log(AsyncCallbackHandler):
        def __init__(self, agent: str, secrets: Mapping[str, str]) -> None:
            self.agent = agent
            self.secrets = dict(secrets)

        def _say(self, text: str) -> None:
            log.info("%s", redact(f"[{self.agent}] {text}", self.secrets))

        async def on_llm_end(self, response: Any, **kwargs: Any) -> None:
            for gens in response.generations:
                for g in gens:
                    msg = getattr(g, "message", None)
                    calls = getattr(msg, "tool_calls", None)
                    self._say(f"model: tool calls {[c['name'] for c in calls]}" if calls else f"model: {g.text[:200]}")

        async def on_tool_start(self, serialized: dict[str, Any], input_str: str, **kwargs: Any) -> None:
            self._say(f"tool {serialized.get('name')}: {input_str[:200]}")

        async def on_tool_end(self, output: Any, **kwargs: Any) -> None:
            self._say(f"tool result: {str(getattr(output, 'content', output))[:200]}")

    return _Log


def _VerboseLog(agent: str, secrets: Mapping[str, str]) -> Any:
    return _verbose_class()(agent, secrets)
