"""Agent events (turns, tool calls) reach the run's events and callbacks between the step's
start and end, from the native loop and from the langchain backend alike."""

from __future__ import annotations

import pytest

from owf_magics import OpenWorkflow
from tests.agent_fixtures import MATH, WORKFLOW

BACKENDS = ["native", "langchain"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_callback_sees_turns_and_tools_inside_the_step(backend: str) -> None:
    ow = OpenWorkflow(state=":memory:")
    ow.load(MATH + WORKFLOW)
    seen: list[dict] = []
    result = ow.workflow("ask-math").execute({"q": "2+3?"}, prefer_backend=backend, callback=seen.append)
    assert result.status == "completed" and result.outputs["answer"] == "The sum is 5"
    types = [e["type"] for e in seen]
    start, end = types.index("step.started"), types.index("step.execution.completed")
    agent_types = [t for t in types if t.startswith("agent.")]
    assert agent_types == [
        "agent.turn.started",
        "agent.turn.completed",
        "agent.tool.called",
        "agent.tool.completed",
        "agent.turn.started",
        "agent.turn.completed",
    ]
    assert all(start < i < end for i, t in enumerate(types) if t.startswith("agent."))
    by_type = {e["type"]: e for e in seen}
    called, completed = by_type["agent.tool.called"], by_type["agent.tool.completed"]
    assert called["tool"] == "calculator_add" and called["arguments"] == {"a": 2, "b": 3}
    assert completed["result"] == {"result": 5}
    turns = [e for e in seen if e["type"] == "agent.turn.completed"]
    assert [(t["prompt_tokens"], t["completion_tokens"]) for t in turns] == [(30, 12), (55, 6)]
    assert all(e["step_id"] == "ask" and e["agent"] == "mathbot" for e in seen if e["type"].startswith("agent."))
    # the same events are in the run's own list, in the same order
    assert [e["type"] for e in result.events if e["type"].startswith("agent.")] == agent_types


def test_events_without_a_callback_are_in_the_result() -> None:
    ow = OpenWorkflow(state=":memory:")
    ow.load(MATH + WORKFLOW)
    result = ow.workflow("ask-math").execute({"q": "2+3?"})
    types = [e["type"] for e in result.events]
    assert types.index("step.started") < types.index("agent.tool.called") < types.index("step.execution.completed")


def test_stdout_verbose_prints_agent_events_readably(capsys) -> None:
    ow = OpenWorkflow(state=":memory:")
    ow.load(MATH + WORKFLOW)
    ow.workflow("ask-math").execute({"q": "2+3?"}, callback="stdout_verbose")
    lines = capsys.readouterr().out.splitlines()
    text = "\n".join(lines)
    assert "agent ask/mathbot turn 1 done: 30+12 tokens" in text
    assert 'agent ask/mathbot calls calculator_add {"a": 2, "b": 3}' in text
    assert 'agent ask/mathbot got calculator_add -> {"result": 5}' in text
    started = next(i for i, line in enumerate(lines) if "step ask started" in line)
    done = next(i for i, line in enumerate(lines) if "step ask: success" in line)
    assert started < next(i for i, line in enumerate(lines) if "calls calculator_add" in line) < done


def test_secrets_are_scrubbed_from_tool_events() -> None:
    ow = OpenWorkflow(state=":memory:")
    ow.load(MATH.replace("args: {a: 2, b: 3}", "args: {a: 2, b: 3, note: hunter2}") + WORKFLOW)
    seen: list[dict] = []
    result = ow.workflow("ask-math").execute({"q": "x"}, secrets={"PW": "hunter2"}, callback=seen.append)
    called = [e for e in seen + result.events if e["type"] == "agent.tool.called"]
    assert called and all("hunter2" not in str(e) for e in called)


HANDOFF = """
---
type: agent
name: parrot
namespace: t
version: 1.0.0
model: {provider: echo}
---
type: workflow
name: hand
steps:
  - {id: ask, type: agent, agent: agent:t/mathbot@1.0.0, input: "2+3?"}
  - id: route
    type: handoff
    needs: [ask]
    selectAgent: [{default: "agent:t/parrot@1.0.0"}]
    reason: repeat it
    context: {answer: "{{ steps.ask.output }}"}
"""


@pytest.mark.parametrize("state", [":memory:", "file"])
def test_handoff_event_and_last_agent(tmp_path, state: str) -> None:
    ow = OpenWorkflow(state=str(tmp_path / "runs.db") if state == "file" else ":memory:")
    ow.load(MATH + HANDOFF)
    seen: list[dict] = []
    result = ow.workflow("hand").execute(callback=seen.append)
    assert result.status == "completed"
    handoff = next(e for e in seen if e["type"] == "agent.handoff")
    assert (handoff["from"], handoff["to"], handoff["step_id"]) == ("mathbot", "parrot", "route")
    assert result.last_agent == "parrot" and "last agent parrot" in result.summary()
    assert result.summary["last_agent"] == "parrot"
    done = next(e for e in result.events if e["type"] == "run.completed")
    assert done["payload"]["last_agent"] == "parrot"
    if state == "file":  # kept with the run's stored events
        stored = [e.event for e in ow.store.get_events(result.run_id) if e.type == "run.completed"]
        assert stored and stored[0]["payload"]["last_agent"] == "parrot"


@pytest.mark.parametrize("backend", BACKENDS)
def test_guardrail_tripped_event(backend: str) -> None:
    ow = OpenWorkflow(state=":memory:")
    ow.load(
        "type: agent\nname: loud\nmodel: {provider: scripted, responses: [{content: far too long}]}\n"
        "guardrails: {output: {maxLength: 3}}\n"
    )
    seen: list[dict] = []
    res = ow.load_agent("loud").execute("hi", backend=backend, callback=seen.append)
    assert res.status == "failed"
    tripped = [e for e in seen if e["type"] == "agent.guardrail.tripped"]
    assert len(tripped) == 1 and tripped[0]["guardrail"] == "output.maxLength" and tripped[0]["agent"] == "loud"
