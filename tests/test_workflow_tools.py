"""Workflows as agent tools (``toolset: ["workflow:NAME"]``, ``wf.as_tool()``, ``wf.as_agent()``)."""

from __future__ import annotations

import pytest

from owf_magics import ManifestError, OpenWorkflow
from tests import handlers
from tests.pattern_fixtures import scripted

RESEARCH = """
---
type: workflow
name: deep-research
description: Research a topic
inputs: {topic: {type: string, required: true}, depth: {type: integer, default: 1}}
steps:
  - {id: note, type: transform, template: "notes on {{ inputs.topic }} (depth {{ inputs.depth }})"}
outputs: {summary: {value: "{{ steps.note.output.result }}", type: string}}
"""

BOSS = """
---
type: agent
name: boss
toolset: ["workflow:deep-research"]
model:
  provider: scripted
  responses:
    - tool_calls: [{name: deep_research, args: {topic: tides}}]
      usage: {prompt_tokens: 20, completion_tokens: 4}
    - content: "done"
      usage: {prompt_tokens: 30, completion_tokens: 2}
---
name: ask
steps:
  - {id: ask, type: agent, agent: boss, input: "go"}
outputs: {a: {value: "{{ steps.ask.output }}"}}
"""


def test_an_agent_calling_a_workflow_tool_gets_its_outputs_and_inner_steps_name_it_as_parent(tmp_path):
    ow = OpenWorkflow(state=str(tmp_path / "runs.db"))
    ow.load(RESEARCH + BOSS)
    r = ow.workflow("ask").execute()
    assert r.status == "completed" and r.outputs == {"a": "done"}
    done = [e for e in r.events if e["type"] == "agent.tool.completed"]
    assert done[0]["tool"] == "deep_research"
    assert done[0]["result"] == {"summary": "notes on tides (depth 1)"}
    inner = r.trace[r.trace.step_id == "ask/deep_research/note"]
    assert list(inner.parent) == ["ask"] and list(inner.status) == ["success"]
    assert "ask/deep_research/note" in handlers.committed_steps(str(tmp_path / "runs.db"))


def test_the_tool_parameters_are_the_workflow_inputs_as_json_schema():
    ow = OpenWorkflow(state=":memory:")
    ow.load(RESEARCH)
    tool = ow.workflow("deep-research").as_tool()
    assert tool.name == "deep_research" and tool.ref == "workflow:deep-research@1.0.0"
    assert tool.parameters == {
        "type": "object",
        "properties": {"topic": {"type": "string"}, "depth": {"type": "integer", "default": 1}},
        "required": ["topic"],
    }
    assert tool(topic="moons") == {"summary": "notes on moons (depth 1)"}


def test_as_agent_makes_a_workflow_a_participant():
    ow = OpenWorkflow(state=":memory:")
    ow.load(RESEARCH + scripted("writer", "written up"))
    agent = ow.workflow("deep-research").as_agent("researcher")
    assert agent.execute({"topic": "waves"}).output == "notes on waves (depth 1)"
    ow.load(
        """
name: team
steps:
  - {id: seq, type: sequential, participants: [researcher, writer], input: {task: "tides"}}
outputs: {conversation: {value: "{{ steps.seq.output.conversation }}"}}
"""
    )
    r = ow.workflow("team").execute()
    said = r.outputs["conversation"]
    assert said[0]["agent"] == "researcher" and said[0]["content"].startswith("notes on Task: tides")
    assert said[1] == {"agent": "writer", "content": "written up"}


def test_an_unknown_workflow_in_a_toolset_is_a_diagnostic():
    ow = OpenWorkflow(state=":memory:")
    with pytest.raises(ManifestError) as err:
        ow.load(
            "type: agent\nname: lost\ntoolset: ['workflow:nowhere']\n"
            "model: {provider: scripted, responses: [{content: x}]}\n"
        )
    d = err.value.diagnostics[0]
    assert d.code == "UNKNOWN_REFERENCE" and "nowhere" in d.message and d.line == 3


APPROVAL = """
---
type: connector
name: bank
kind: sdk
approval: {required: always, timeout: 3600, onTimeout: reject}
actions:
  - {name: pay, handler: {function: tests.handlers.count}}
---
type: workflow
name: payout
inputs: {who: {type: string, required: true}}
steps:
  - {id: pay, connector: bank, action: pay, input: {name: "pay-{{ inputs.who }}"}}
outputs: {paid: {value: "{{ steps.pay.output.name }}"}}
---
type: agent
name: clerk
toolset: ["workflow:payout"]
model:
  provider: scripted
  responses:
    - tool_calls: [{name: payout, args: {who: ada}}]
    - content: "paid"
---
name: office
steps:
  - {id: clerk, type: agent, agent: clerk, input: "pay ada"}
outputs: {said: {value: "{{ steps.clerk.output }}"}}
"""


def test_an_approval_inside_the_inner_workflow_makes_the_run_wait_and_resume(tmp_path):
    handlers.CALLS.clear()
    ow = OpenWorkflow(state=str(tmp_path / "runs.db"))
    ow.load(APPROVAL)
    r = ow.workflow("office").execute()
    assert r.status == "waiting_approval" and r.steps["clerk"].status == "waiting"
    assert [p.step_id for p in r.pending] == ["clerk/payout/pay"]
    assert handlers.CALLS == {}
    done = ow.resume(r.run_id, approvals={r.pending[0].id: True})
    assert done.status == "completed" and done.outputs == {"said": "paid"}
    assert handlers.CALLS == {"pay-ada": 1}


def test_a_workflow_agent_written_in_yaml_is_a_handoff_target():
    ow = OpenWorkflow(state=":memory:")
    ow.load(
        RESEARCH
        + """
---
type: agent
name: researcher
toolset: ["workflow:deep-research"]
model: {provider: workflow}
---
name: desk
steps:
  - {id: route, type: handoff, agent: researcher, input: {topic: reefs}}
outputs: {said: {value: "{{ steps.route.output.agentResponse }}"}}
"""
    )
    r = ow.workflow("desk").execute()
    assert r.outputs == {"said": "notes on reefs (depth 1)"}
    assert r.trace.cost_usd.sum() == 0.0  # no model, no cost
