"""OpenTelemetry spans from a run's events, read back with the SDK's in-memory exporter."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from owf_magics.runs.callbacks import run_completed, run_failed, run_started, to_envelope
from owf_magics.runs.telemetry import RunTracer

CONNECTOR = """
connector: {name: t, namespace: test, kind: sdk}
actions:
  - name: echo
    handler: {function: tests.handlers.echo}
  - name: boom
    handler: {function: tests.handlers.boom}
"""


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _by_name(exporter):
    return {s.name: s for s in exporter.get_finished_spans()}


def test_a_run_of_the_executor_gives_a_run_span_and_step_spans(ow, spans):
    provider, exporter = spans
    ow.load(CONNECTOR)
    ow.load(
        """
agents: [{name: parrot, model: {provider: echo}}]
workflows:
  - name: traced
    version: 2.1.0
    steps:
      - {id: get, connector: t, action: echo, input: {x: 1}}
      - {id: say, type: agent, agent: parrot, input: {text: hello}}
      - {id: shape, type: transform, expression: "{{ steps.say.output.text }}!"}
"""
    )
    wf = ow.workflow("traced")
    tracer = RunTracer(provider, plan=wf.plan(), step_info={"say": {"model": "echo-1", "provider": "echo"}})
    result = wf.execute(callback=tracer)
    assert result.status == "completed"
    found = _by_name(exporter)
    # the agent step also gets its GenAI spans (invoke_agent, and a chat span per model turn) under it
    assert set(found) == {"workflow traced", "step get", "step say", "step shape", "invoke_agent parrot", "chat echo"}
    assert found["invoke_agent parrot"].parent.span_id == found["step say"].context.span_id
    assert found["chat echo"].parent.span_id == found["invoke_agent parrot"].context.span_id
    run = found["workflow traced"]
    assert run.attributes["owf.run.id"] == result.run_id
    assert run.attributes["owf.workflow.version"] == "2.1.0"
    assert run.attributes["owf.run.status"] == "completed"
    assert run.attributes["backend.name"] == "native"
    assert run.status.status_code == StatusCode.OK
    for name in ("step get", "step say", "step shape"):
        span = found[name]
        assert span.parent is not None and span.parent.span_id == run.context.span_id
        assert span.context.trace_id == run.context.trace_id
        assert span.attributes["backend.name"] == "native" and span.attributes["backend.version"]
        assert span.end_time >= span.start_time
    get = found["step get"]
    assert get.attributes["step.id"] == "get" and get.attributes["step.type"] == "action"
    assert get.attributes["connector.id"].startswith("connector:test/t@")
    assert "agent.id" not in get.attributes and "gen_ai.usage.input_tokens" not in get.attributes
    say = found["step say"]
    usage = result.usage.iloc[0]
    assert say.attributes["step.type"] == "agent" and "parrot" in say.attributes["agent.id"]
    assert say.attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert say.attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert say.attributes["gen_ai.request.model"] == "echo-1"
    assert say.attributes["gen_ai.provider.name"] == "echo" and say.attributes["gen_ai.system"] == "echo"
    assert run.attributes["owf.usage.total_tokens"] == result.total_tokens
    assert found["step shape"].attributes["step.type"] == "transform"


def test_a_failed_step_and_run_are_errors(ow, spans):
    provider, exporter = spans
    ow.load(CONNECTOR)
    ow.load("name: bad\nsteps: [{id: b, connector: t, action: boom}]")
    tracer = RunTracer(provider)
    result = ow.workflow("bad").execute(callback=tracer)
    assert result.status == "failed"
    found = _by_name(exporter)
    step, run = found["step b"], found["workflow bad"]
    assert step.status.status_code == StatusCode.ERROR
    assert step.attributes["error.type"] == result.steps["b"].error.code
    assert step.attributes["owf.step.status"] == "failed"
    assert run.status.status_code == StatusCode.ERROR and run.attributes["owf.run.status"] == "failed"


def test_envelopes_and_explicit_calls_give_the_same_spans(spans):
    provider, exporter = spans
    tracer = RunTracer(provider)
    step_event = {
        "type": "step.execution.completed",
        "timestamp": "2026-01-01T12:00:00.000Z",
        "run_id": "r1",
        "step_id": "s",
        "step_type": "agent",
        "iteration": "2",
        "attempt": 3,
        "execution": {
            "backend": "langchain",
            "runtime": "python",
            "adapter_version": "0.3.1",
            "duration_ms": 250.0,
            "token_usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            "model": "gpt-x",
            "provider": "openai",
            "agent_id": "agent:a/b@1.0.0",
        },
        "result": {"status": "success", "output": 1},
    }
    started = run_started("r1", "w", version="1.0.0")
    started["timestamp"] = "2026-01-01T11:59:59.000Z"
    tracer(started)
    tracer(to_envelope(step_event))  # the callback envelope works as well as the raw event
    tracer({"type": "something.else"})  # ignored
    tracer(run_failed("r1", {"code": "TIMEOUT", "message": "slow", "details": {}}))
    found = _by_name(exporter)
    step = found["step s"]
    assert step.start_time == 1767268800 * 10**9
    assert step.end_time - step.start_time == 250 * 10**6
    assert found["workflow w"].start_time == 1767268799 * 10**9
    assert step.attributes["backend.name"] == "langchain" and step.attributes["backend.runtime"] == "python"
    assert step.attributes["backend.version"] == "0.3.1" and step.attributes["agent.id"] == "agent:a/b@1.0.0"
    assert step.attributes["gen_ai.request.model"] == "gpt-x" and step.attributes["gen_ai.provider.name"] == "openai"
    assert step.attributes["owf.step.iteration"] == "2" and step.attributes["owf.step.attempt"] == 3
    run = found["workflow w"]
    assert run.attributes["error.type"] == "TIMEOUT" and run.attributes["owf.usage.total_tokens"] == 15
    assert run.status.status_code == StatusCode.ERROR

    exporter.clear()
    direct = RunTracer(provider)
    direct.start_run("r2", "w2")
    direct.step("a", "action", status="success", connector_id="connector:x/y@1.0.0")
    direct.close()  # the run never said how it ended
    found = _by_name(exporter)
    assert found["step a"].attributes["connector.id"] == "connector:x/y@1.0.0"
    assert found["workflow w2"].attributes["owf.run.status"] == "unknown"
    assert found["step a"].parent.span_id == found["workflow w2"].context.span_id


def test_waiting_run_span_has_no_error_and_nothing_is_exported_without_a_provider(spans):
    provider, exporter = spans
    tracer = RunTracer(provider)
    tracer(run_started("r", "w"))
    tracer(run_completed("r", status="waiting_approval"))
    [span] = exporter.get_finished_spans()
    assert span.attributes["owf.run.status"] == "waiting_approval"
    assert span.status.status_code == StatusCode.UNSET
    # with no provider configured, the API's default is a no-op: spans are not recording
    quiet = RunTracer()
    assert not quiet.start_run("r", "w").is_recording()
    quiet.close()
