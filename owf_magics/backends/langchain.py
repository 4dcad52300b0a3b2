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
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from owf_magics._version import __version__
from owf_magics.agents import events
from owf_magics.agents.content import message_content
from owf_magics.agents.history import earlier as session_history
from owf_magics.agents.loop import agent_tools
from owf_magics.backends.langchain_agents import AgentCache
from owf_magics.backends.langchain_events import events_handler, user_handlers
from owf_magics.backends.langchain_parts import (
    AGENT_TYPES,
    DEFAULT_MAX_ITERATIONS,
    MEMORY_TYPES,
    PRODUCED,
    ActionCaller,
    AgentOptions,
    OfflineChatModel,
    check_output,
    native_error,
    no_confirmations,
    run_prices,
    run_sync,
    standalone_action,
)
from owf_magics.backends.native import LOGIC_CAPABILITIES
from owf_magics.errors import BackendError, OWFError, StepTimeoutError, UnavailableError
from owf_magics.runtime.backend import Backend, BackendInfo, ExecutionContext

if TYPE_CHECKING:
    from owf_magics.manifest.models import Agent

ADAPTER_VERSION = __version__
log = logging.getLogger("owf_magics.langchain")

# Shared with the assistants backend and the cached agents, kept importable from here as before.
__all__ = [
    "AGENT_TYPES",
    "DEFAULT_MAX_ITERATIONS",
    "MEMORY_TYPES",
    "AgentOptions",
    "LangChainBackend",
    "OfflineChatModel",
    "check_output",
    "connector_tools",
    "framework_versions",
    "native_error",
    "no_confirmations",
    "run_sync",
    "standalone_action",
]


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


class LangChainBackend(Backend):
    """LangGraph agents and nodes behind the spec's backend contract.

    Args:
        runtime: Only ``python``: the Node.js adapter is a separate package.
        version: The adapter version to report (the spec's example passes one); default owf-magics'.
        callbacks: LangChain callback handlers that receive every chat-model and tool event of the
            agents this backend runs (``execution.config.callbacks`` adds more per agent).

    Example:
        >>> ow.register_backend("langchain", LangChainBackend(runtime="python"))  # doctest: +SKIP
    """

    name = "langchain"

    def __init__(self, runtime: str = "python", version: str | None = None, callbacks: Any = None) -> None:
        if runtime != "python":
            raise UnavailableError(_node_message(), details=_node_details())
        self.runtime = runtime
        self.version = version or ADAPTER_VERSION
        self.callbacks = list(callbacks or [])  # LangChain handlers given every agent's model and tool events
        self._node_graph: Any = None
        self._memory: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self._agents = AgentCache()
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
        return await _within_deadline(self._graph().ainvoke(native), context)

    # -- steps ---------------------------------------------------------------------------------

    def _graph(self) -> Any:
        """The one-node graph, built once per backend: a Pregel node that fires on its input
        channel (no ``START`` node, so one superstep per step instead of two)."""
        if self._node_graph is None:
            from langgraph.channels import EphemeralValue, LastValue
            from langgraph.pregel import NodeBuilder, Pregel

            async def step(run: Callable[[], Awaitable[Any]]) -> Any:
                return await run()

            self._node_graph = Pregel(
                nodes={"step": NodeBuilder().subscribe_only("run").do(step).write_to("value")},
                channels={"run": EphemeralValue(Any), "value": LastValue(Any)},
                input_channels="run",
                output_channels="value",
                name="owf-step",
            )
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
        from langchain_core.messages import AIMessage, HumanMessage
        from langgraph.errors import GraphRecursionError

        from owf_magics.agents.providers import LangChainChatModel, Usage, cost_of, estimate_tokens
        from owf_magics.backends.langchain_agents import CallState, calling

        built = self._agents.get(manifest, context)  # the agent's graph, model and tools, built once
        agent, options, model, graph = built.agent, built.options, built.model, built.graph
        raw = context.metadata.get("raw_input", input)
        content = message_content(raw)  # text, or text and image parts (agents/content.py)
        memory_on = (agent.memory is not None and agent.memory.type == "buffer") or options.memory_type == "buffer"
        store = self._memory_store(context)
        key = f"{agent.namespace or 'local'}/{agent.name}"
        history: list[Any] = []
        if memory_on:
            past = store.get(key, [])
            keep = agent.memory.maxMessages if agent.memory and agent.memory.maxMessages is not None else len(past)
            for m in past[-keep:] if keep else []:
                history.append(HumanMessage(m["content"]) if m["role"] == "user" else AIMessage(m["content"]))
        for m in session_history():  # a session's earlier exchanges (`Agent.execute(session=...)`)
            history.append(HumanMessage(m["content"]) if m["role"] == "user" else AIMessage(m["content"]))
        call = CallState(context, context.metadata.get("call_action"), context.metadata.get("turn_hooks"))
        start = len(history) + 1
        turns: list[Any] = []  # every AIMessage the model produced, in order, also when the run fails
        offline = not isinstance(model, LangChainChatModel)  # an offline model reports its turns itself
        callbacks = [] if offline else [_usage_collector(turns)]
        if not offline and events.active():
            callbacks.append(
                events_handler(
                    agent.name, model.name, agent.model.provider, lambda u: cost_of(agent.model, u, run_prices(context))
                )
            )
        config = agent.execution.config if agent.execution else {}
        if self.callbacks or config.get("callbacks"):
            callbacks.extend(user_handlers(self.callbacks, config.get("callbacks")))
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
            produced_token = PRODUCED.set(turns if offline else None)
            try:
                with calling(call):
                    state = await graph.ainvoke(
                        {"messages": [*history, HumanMessage(content, additional_kwargs={"owf_raw": raw})]},
                        {"recursion_limit": 2 * options.max_iterations, "callbacks": callbacks},
                    )
            finally:
                PRODUCED.reset(produced_token)
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
            "metadata": {"agent_type": options.agent_type, "turns": len(produced), "tools": list(built.tools)},
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
