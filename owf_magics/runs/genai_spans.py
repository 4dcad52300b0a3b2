"""OpenTelemetry GenAI spans of an agent step, built from its agent events.

Under the step's span: one ``invoke_agent {agent}`` span for the step, and under it one
``chat {model}`` span per model turn (``agent.turn.started`` to ``agent.turn.completed``) and one
``execute_tool {tool}`` span per tool call (``agent.tool.called`` to ``agent.tool.completed``),
with the GenAI semantic conventions' ``gen_ai.*`` attributes. The events carry their times, so
the spans are made when the step ends, with exactly those times.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
MODEL = "gen_ai.request.model"
AGENT_NAME = "gen_ai.agent.name"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CONVERSATION_ID = "gen_ai.conversation.id"


def agent_spans(
    tracer: Any,
    step_span: Any,
    events: Sequence[Mapping[str, Any]],
    *,
    start_ns: int | None,
    end_ns: int | None,
    ns: Callable[[Any], int | None],
    clean: Callable[[Mapping[str, Any]], dict[str, Any]],
) -> None:
    """Make the GenAI spans of one agent step execution under `step_span`."""
    from opentelemetry import trace

    if not events:
        return
    first = events[0]
    turns = [e for e in events if e.get("type") == "agent.turn.completed"]
    model = next((e.get("model") for e in events if e.get("model")), None)
    provider = next((e.get("provider") for e in turns if e.get("provider")), None)
    agent = first.get("agent")
    attrs = {
        OPERATION: "invoke_agent",
        AGENT_NAME: agent,
        PROVIDER: provider,
        MODEL: model,
        INPUT_TOKENS: sum(int(e.get("prompt_tokens") or 0) for e in turns),
        OUTPUT_TOKENS: sum(int(e.get("completion_tokens") or 0) for e in turns),
        CONVERSATION_ID: first.get("session"),
    }
    invoke = tracer.start_span(
        f"invoke_agent {agent}",
        context=trace.set_span_in_context(step_span),
        start_time=start_ns,
        attributes=clean(attrs),
        kind=trace.SpanKind.INTERNAL,
    )
    under = trace.set_span_in_context(invoke)
    started: dict[Any, Mapping[str, Any]] = {}
    calls: dict[Any, list[Mapping[str, Any]]] = {}
    for event in events:
        kind = event.get("type")
        if kind == "agent.turn.started":
            started[event.get("turn")] = event
        elif kind == "agent.turn.completed":
            begin = started.pop(event.get("turn"), event)
            span = tracer.start_span(
                f"chat {event.get('model')}",
                context=under,
                start_time=ns(begin.get("timestamp")),
                kind=trace.SpanKind.CLIENT,
                attributes=clean(
                    {
                        OPERATION: "chat",
                        PROVIDER: event.get("provider"),
                        MODEL: event.get("model"),
                        INPUT_TOKENS: event.get("prompt_tokens"),
                        OUTPUT_TOKENS: event.get("completion_tokens"),
                        CONVERSATION_ID: event.get("session"),
                    }
                ),
            )
            span.end(end_time=ns(event.get("timestamp")))
        elif kind == "agent.tool.called":
            calls.setdefault(event.get("tool"), []).append(event)
        elif kind == "agent.tool.completed":
            waiting = calls.get(event.get("tool")) or [event]
            begin = waiting.pop(0)
            span = tracer.start_span(
                f"execute_tool {event.get('tool')}",
                context=under,
                start_time=ns(begin.get("timestamp")),
                kind=trace.SpanKind.INTERNAL,
                attributes=clean({OPERATION: "execute_tool", TOOL_NAME: event.get("tool"), AGENT_NAME: agent}),
            )
            span.end(end_time=ns(event.get("timestamp")))
    invoke.end(end_time=end_ns)
