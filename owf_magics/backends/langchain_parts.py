"""What the langchain backend's agents and nodes share with the assistants backend and the cached
agents (`langchain_agents`): the ``execution.config`` options, the offline chat model, message
conversion, native-equivalent errors and tool answers, and running a coroutine from sync code.
LangChain is imported inside the functions that need it.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from owf_magics.agents import events
from owf_magics.agents.loop import check_output as native_check_output
from owf_magics.agents.loop import turn_fields, turn_prompt
from owf_magics.agents.providers import cost_of
from owf_magics.connectors.actions import validate_action_input
from owf_magics.connectors.function import call_function
from owf_magics.errors import OWFError, UnavailableError
from owf_magics.runtime.backend import ExecutionContext
from owf_magics.runtime.context import StepFailed, to_step_error

if TYPE_CHECKING:
    from owf_magics.agents.providers import Model
    from owf_magics.manifest.models import Agent, Connector

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
            plain = plain_messages(messages)
            turn = 0
            for m in messages:  # model turns since the latest user message
                turn = 0 if isinstance(m, HumanMessage) else turn + isinstance(m, AIMessage)
            model: Model = self.owf_model
            on = events.active()
            if on:
                since = max((i for i, m in enumerate(plain) if m["role"] == "assistant"), default=0) if turn else 0
                events.emit(events.TURN_STARTED, turn=turn + 1, model=model.name, prompt=turn_prompt(plain, since))
            reply = await model.respond(plain, list(kwargs.get("owf_tools") or []), turn)
            if on:
                cost = cost_of(model.spec, reply.usage) if reply.usage is not None else 0.0
                events.emit(events.TURN_COMPLETED, **turn_fields("", turn, model.name, model.provider, reply, cost))
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
            sink = PRODUCED.get()
            if sink is not None:  # the backend's record of the turns, kept also when the run fails
                sink.append(msg)
            return ChatResult(generations=[ChatGeneration(message=msg)])

    return _Offline


_OFFLINE: type | None = None

#: The messages an offline chat model produces during one agent call, appended as they are made
#: (a callback handler would do the same, but any handler makes LangChain dispatch every node's
#: events: a fifth of an agent step).
PRODUCED: ContextVar[list[Any] | None] = ContextVar("owf_langchain_produced", default=None)


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


def plain_messages(messages: Sequence[Any]) -> list[dict[str, Any]]:
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


def native_unknown_tools(names: list[str]) -> Any:
    """Middleware answering a call to a tool the agent does not have as the native loop does."""
    from langchain.agents.middleware import AgentMiddleware
    from langchain_core.messages import ToolMessage

    def answer(call: Mapping[str, Any]) -> Any:
        body = {"error": f"unknown tool '{call['name']}'", "tools": sorted(names)}
        return ToolMessage(json.dumps(body), tool_call_id=call["id"], name=call["name"], status="error")

    class NativeUnknownTools(AgentMiddleware):
        # async only: the backend always invokes its agents with ainvoke, and a sync hook beside
        # the async one made every tool call of an async run cost ~150 µs more
        async def awrap_tool_call(self, request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
            return answer(request.tool_call) if request.tool is None else await handler(request)

    return NativeUnknownTools()
