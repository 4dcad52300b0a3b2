"""OpenTelemetry GenAI spans of an agent step, with the SDK's in-memory exporter."""

from __future__ import annotations

import pytest

from owf_magics import OpenWorkflow
from owf_magics.runtime.backend import Backend, BackendInfo, ExecutionContext
from tests.agent_fixtures import MATH

pytest.importorskip("opentelemetry.sdk")


@pytest.fixture
def exporter():
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    original = trace.get_tracer_provider
    trace.get_tracer_provider = lambda: provider  # type: ignore[assignment]
    try:
        yield memory
    finally:
        trace.get_tracer_provider = original  # type: ignore[assignment]


@pytest.mark.parametrize("backend", ["native", "langchain"])
def test_invoke_agent_chat_and_execute_tool_spans(exporter, backend: str) -> None:
    ow = OpenWorkflow(state=":memory:")
    ow.load(MATH)
    res = ow.load_agent("mathbot").execute("2+3", backend=backend, session="conv-1")
    assert res.status == "completed"
    spans = exporter.get_finished_spans()
    by_op: dict[str, list] = {}
    for s in spans:
        by_op.setdefault(s.attributes.get("gen_ai.operation.name"), []).append(s)
    (invoke,) = by_op["invoke_agent"]
    chats, (tool,) = by_op["chat"], by_op["execute_tool"]
    assert len(chats) == 2
    step = next(s for s in spans if s.attributes.get("step.id") == "agent")
    assert invoke.parent.span_id == step.context.span_id
    assert all(s.parent.span_id == invoke.context.span_id for s in [*chats, tool])
    assert invoke.attributes["gen_ai.agent.name"] == "mathbot"
    assert invoke.attributes["gen_ai.conversation.id"] == "conv-1"
    assert [(c.attributes["gen_ai.usage.input_tokens"], c.attributes["gen_ai.usage.output_tokens"]) for c in chats] == [
        (30, 12),
        (55, 6),
    ]
    assert all(c.attributes["gen_ai.request.model"] == "scripted-math" for c in chats)
    assert all(c.attributes["gen_ai.provider.name"] == "scripted" for c in chats)
    assert tool.attributes["gen_ai.tool.name"] == "calculator_add"
    assert invoke.attributes["gen_ai.usage.input_tokens"] == 85
    assert len({s.context.trace_id for s in spans}) == 1


class Seeing(Backend):
    """A backend that answers an agent step and keeps the context it was given."""

    def __init__(self) -> None:
        self.contexts: list[ExecutionContext] = []

    def get_info(self) -> BackendInfo:
        return BackendInfo("seeing", "1.0", capabilities=("agent",))

    def invoke(self, manifest, input, context):  # type: ignore[no-untyped-def]
        self.contexts.append(context)
        return {"status": "success", "output": "seen"}


def test_trace_id_is_the_w3c_trace_id_when_tracing_is_on(exporter) -> None:
    ow = OpenWorkflow(state=":memory:")
    seeing = Seeing()
    ow.register_backend("seeing", seeing)
    ow.load("type: agent\nname: plain\nmodel: {provider: echo}\n")
    res = ow.load_agent("plain").execute("hi", backend="seeing")
    assert res.output == "seen"
    run_span = next(s for s in exporter.get_finished_spans() if s.name.startswith("workflow "))
    assert seeing.contexts[0].trace_id == format(run_span.context.trace_id, "032x")
    assert len(seeing.contexts[0].trace_id) == 32


def test_trace_id_is_the_run_id_without_tracing() -> None:
    ow = OpenWorkflow(state=":memory:")
    seeing = Seeing()
    ow.register_backend("seeing", seeing)
    ow.load("type: agent\nname: plain\nmodel: {provider: echo}\n")
    res = ow.load_agent("plain").execute("hi", backend="seeing")
    assert seeing.contexts[0].trace_id == res.run_id
