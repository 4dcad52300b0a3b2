"""A handoff step's agents pass the conversation on, up to ``maxTransfers`` times."""

from __future__ import annotations

from owf_magics import OpenWorkflow

AGENTS = """
---
type: agent
name: triage
model:
  provider: scripted
  responses:
    - tool_calls: [{name: transfer_to_billing, args: {reason: "a refund"}}]
---
type: agent
name: billing
model:
  provider: scripted
  responses:
    - tool_calls: [{name: transfer_to_triage, args: {reason: "back"}}]
    - content: "refund issued"
---
name: desk
steps:
  - {id: route, type: handoff, agent: triage, selectAgent: [{agent: billing, condition: false}],
     maxTransfers: MAX, input: "I want my money back"}
outputs: {said: {value: "{{ steps.route.output.agentResponse }}"}, to: {value: "{{ steps.route.output.handoffTo }}"}}
"""


def run(limit: int):  # type: ignore[no-untyped-def]
    ow = OpenWorkflow(state=":memory:")
    ow.load(AGENTS.replace("MAX", str(limit)))
    return ow.workflow("desk").execute()


def test_a_transfer_moves_the_conversation_and_the_limit_holds():
    r = run(1)
    assert r.status == "completed", r.steps["route"].error
    assert r.outputs["said"] == "refund issued" and "billing" in r.outputs["to"]
    moves = [(e["from"], e["to"]) for e in r.events if e["type"] == "agent.handoff"]
    assert moves[1:] == [("triage", "billing")]  # one transfer; billing's attempt to go back is refused
    refused = [e for e in r.events if e["type"] == "agent.tool.completed"]
    assert refused and "unknown tool" in refused[0]["result"]["error"]


def test_without_max_transfers_a_transfer_tool_is_not_offered():
    r = run(0)
    assert r.steps["route"].status == "failed"  # triage's script has nothing after the refused transfer
    assert not [e for e in r.events if e["type"] == "agent.handoff" and e.get("to") == "billing"]
    calls = [e for e in r.events if e["type"] == "agent.tool.completed"]
    assert calls and "unknown tool" in calls[0]["result"]["error"]
