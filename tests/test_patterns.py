"""Orchestration patterns as steps (docs/patterns.md): groupChat, sequential, concurrent, magentic."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from owf_magics import ManifestError, OpenWorkflow, patterns
from tests.pattern_fixtures import scripted


def registry(*docs: str) -> OpenWorkflow:
    ow = OpenWorkflow(state=":memory:")
    ow.load("".join(docs))
    return ow


DEBATERS = scripted("pro", "pro 1", "pro 2", "pro 3") + scripted("con", "con 1", "con 2", "con 3")


def chat_flow(**step: object) -> str:
    body = {"id": "chat", "type": "groupChat", "participants": ["pro", "con"], "input": {"task": "{{ inputs.task }}"}}
    body.update(step)
    return "---\n" + json.dumps(
        {
            "type": "workflow",
            "name": "debate",
            "inputs": {"task": {"type": "string", "default": "tabs or spaces?"}},
            "steps": [body],
            "outputs": {"final": {"value": "{{ steps.chat.output.final }}"}},
        }
    )


def rounds_of(result: object) -> list[dict]:
    return [e for e in result.events if e["type"] == "pattern.round"]  # type: ignore[attr-defined]


def test_round_robin_over_two_agents_for_four_rounds():
    ow = registry(DEBATERS, chat_flow(termination={"maxRounds": 4}))
    r = ow.workflow("debate").execute()
    assert r.status == "completed", r.steps["chat"].error
    out = r.steps["chat"].output
    assert [m["agent"] for m in out["conversation"]] == ["pro", "con", "pro", "con"]
    assert [m["content"] for m in out["conversation"]] == ["pro 1", "con 1", "pro 2", "con 2"]
    assert out["rounds"] == 4 and out["final"] == "con 2" and r.outputs == {"final": "con 2"}
    events = rounds_of(r)
    assert [(e["round"], e["speaker"], e["reason"]) for e in events] == [
        (1, "pro", "roundRobin"),
        (2, "con", "roundRobin"),
        (3, "pro", "roundRobin"),
        (4, "con", "roundRobin"),
    ]
    rows = r.trace[r.trace.iteration != ""]
    assert list(rows.iteration) == ["1.1", "2.1", "3.1", "4.1"]
    assert list(rows.total_tokens) == [15, 15, 15, 15]  # each turn's exact usage
    assert rows.cost_usd.sum() == pytest.approx(4 * (10 * 1.0 + 5 * 2.0) / 1_000_000)
    whole = r.trace[r.trace.iteration == ""]
    assert list(whole.total_tokens) == [0]  # the container's own row: no double counting
    assert out["usage"]["pro"]["turns"] == 2 and out["usage"]["con"]["total_tokens"] == 30


def test_a_phrase_ends_the_chat_at_once():
    ow = registry(scripted("pro", "I agree. DONE", "never said"), scripted("con", "never said"))
    ow.load(chat_flow(termination={"maxRounds": 6, "phrase": "DONE"}))
    r = ow.workflow("debate").execute()
    out = r.steps["chat"].output
    assert out["rounds"] == 1 and out["final"] == "I agree. DONE" and out["terminated"] == "phrase"
    assert len(rounds_of(r)) == 1


def test_a_condition_template_ends_the_chat():
    ow = registry(DEBATERS, chat_flow(termination={"maxRounds": 6, "condition": "{{ '2' in item.content }}"}))
    out = ow.workflow("debate").execute().steps["chat"].output
    assert [m["content"] for m in out["conversation"]] == ["pro 1", "con 1", "pro 2"]
    assert out["terminated"] == "condition"


def test_a_managers_choices_are_followed():
    lead = scripted("lead", "con", "con", "pro")
    ow = registry(DEBATERS, lead, chat_flow(selection={"manager": "lead"}, termination={"maxRounds": 3}))
    r = ow.workflow("debate").execute()
    out = r.steps["chat"].output
    assert [m["agent"] for m in out["conversation"]] == ["con", "con", "pro"]
    assert [m["content"] for m in out["conversation"]] == ["con 1", "con 2", "pro 1"]
    assert [e["reason"] for e in rounds_of(r)] == ["manager lead: con", "manager lead: con", "manager lead: pro"]
    assert out["usage"]["lead"]["turns"] == 3  # the manager's calls are costed too
    assert list(r.trace[r.trace.iteration != ""].iteration) == ["1.0", "1.1", "2.0", "2.1", "3.0", "3.1"]


def test_a_manager_naming_no_participant_fails_the_step():
    ow = registry(DEBATERS, scripted("lead", "nobody"), chat_flow(selection={"manager": "lead"}))
    r = ow.workflow("debate").execute()
    assert r.status == "failed" and r.steps["chat"].error.code == "VALIDATION"
    assert "nobody" in r.steps["chat"].error.message


def test_a_selection_function_chooses():
    ow = registry(
        DEBATERS, chat_flow(selection={"function": "tests.pattern_fixtures.next_speaker"}, termination={"maxRounds": 3})
    )
    out = ow.workflow("debate").execute().steps["chat"].output
    assert [m["agent"] for m in out["conversation"]] == ["con", "pro", "con"]


def test_participants_see_the_conversation_so_far():
    echo = "---\n" + json.dumps({"type": "agent", "name": "parrot", "model": {"provider": "echo"}})
    ow = registry(DEBATERS, echo)
    ow.load(
        """
name: relay
steps:
  - {id: seq, type: sequential, participants: [pro, parrot], input: {task: "say hi"}}
outputs: {final: {value: "{{ steps.seq.output.final }}"}, rounds: {value: "{{ steps.seq.output.rounds }}"}}
"""
    )
    r = ow.workflow("relay").execute()
    assert r.outputs["rounds"] == 2
    assert "Task: say hi" in r.outputs["final"] and "pro: pro 1" in r.outputs["final"]


def test_concurrent_gathers_every_answer_and_aggregates():
    ow = registry(DEBATERS, scripted("judge", "both have a point"))
    ow.load(
        """
name: panel
steps:
  - {id: par, type: concurrent, participants: [pro, con], input: {task: "views?"}}
  - {id: judged, type: concurrent, participants: [pro, con], aggregator: judge, input: {task: "views?"}}
  - {id: joined, type: concurrent, participants: [pro, con], input: {task: "views?"},
     aggregator: {template: "{{ item.pro }} / {{ item.con }}"}}
outputs: {plain: {value: "{{ steps.par.output }}"}, judged: {value: "{{ steps.judged.output.final }}"},
          joined: {value: "{{ steps.joined.output.final }}"}}
"""
    )
    r = ow.workflow("panel").execute()
    assert r.status == "completed"
    plain = r.outputs["plain"]
    assert plain["answers"] == {"pro": "pro 1", "con": "con 1"} and plain["rounds"] == 1
    assert plain["final"] == "pro: pro 1\n\ncon: con 1"
    assert r.outputs["judged"] == "both have a point"
    assert r.outputs["joined"] == "pro 1 / con 1"


LEDGER = json.dumps


def ledger(speaker: str, instruction: str, *, done: bool = False, progress: bool = True) -> str:
    return LEDGER(
        {
            "next_speaker": {"answer": speaker, "reason": f"{speaker} is next"},
            "instruction": {"answer": instruction, "reason": "the plan"},
            "is_request_satisfied": {"answer": done, "reason": "."},
            "is_progress_being_made": {"answer": progress, "reason": "."},
            "is_in_loop": {"answer": False, "reason": "."},
        }
    )


MAGENTIC = """
name: report
inputs: {task: {type: string, default: "a note on tides"}}
steps:
  - {id: team, type: magentic, manager: lead, participants: [researcher, writer], maxRounds: 6, maxStalls: 2,
     input: {task: "{{ inputs.task }}"}}
outputs:
  final: {value: "{{ steps.team.output.final }}"}
"""


def test_magentic_ledgers_drive_who_speaks_and_the_final_answer_is_the_steps():
    lead = scripted(
        "lead",
        "PLAN: research, then write",
        ledger("researcher", "find facts about tides"),
        ledger("writer", "write two sentences"),
        ledger("writer", "", done=True),
        "Tides follow the moon.",
    )
    ow = registry(
        lead, scripted("researcher", "the moon pulls the sea"), scripted("writer", "draft: tides follow the moon")
    )
    ow.load(MAGENTIC)
    r = ow.workflow("report").execute()
    assert r.status == "completed", r.steps["team"].error
    out = r.steps["team"].output
    assert out["task_ledger"] == "PLAN: research, then write"
    assert [m["agent"] for m in out["conversation"]] == ["researcher", "writer"]
    assert [p["round"] for p in out["progress_ledger"]] == [1, 2, 3]
    assert out["progress_ledger"][0]["instruction"]["answer"] == "find facts about tides"
    assert out["final"] == "Tides follow the moon." == r.outputs["final"]
    assert out["rounds"] == 3 and out["terminated"] == "satisfied"
    assert [(e["speaker"], e["reason"]) for e in rounds_of(r)] == [
        ("researcher", "progress ledger: researcher is next"),
        ("writer", "progress ledger: writer is next"),
    ]


def test_magentic_replans_after_max_stalls():
    lead = scripted(
        "lead",
        "PLAN A",
        ledger("researcher", "look", progress=False),
        ledger("researcher", "look again", progress=False),
        "PLAN B",
        ledger("writer", "write it"),
        ledger("writer", "", done=True),
        "final",
    )
    ow = registry(lead, scripted("researcher", "nothing", "still nothing"), scripted("writer", "written"))
    ow.load(MAGENTIC)
    out = ow.workflow("report").execute().steps["team"].output
    assert out["task_ledger"] == "PLAN B" and out["replans"] == 1
    assert [m["agent"] for m in out["conversation"]] == ["researcher", "writer"]  # the stalled round re-plans instead
    assert out["final"] == "final"


def test_a_ledger_that_is_not_json_fails_with_a_clear_error():
    ow = registry(scripted("lead", "PLAN", "no idea"), scripted("researcher", "x"), scripted("writer", "y"))
    ow.load(MAGENTIC)
    r = ow.workflow("report").execute()
    assert r.status == "failed"
    assert r.steps["team"].error.code == "VALIDATION" and "progress ledger" in r.steps["team"].error.message


def test_unknown_participants_and_a_manager_among_participants_are_diagnostics():
    ow = registry(DEBATERS)
    with pytest.raises(ManifestError) as err:
        ow.load(
            """
name: bad
steps:
  - {id: chat, type: groupChat, participants: [pro, ghost], selection: {manager: nobody}}
  - {id: team, type: magentic, manager: pro, participants: [pro, con]}
"""
        )
    unknown = [d for d in err.value.diagnostics if d.code == "UNKNOWN_REFERENCE"]
    assert any("ghost" in d.message for d in unknown) and any("nobody" in d.message for d in unknown)
    codes = {(d.code, d.step_id) for d in err.value.diagnostics}
    assert ("UNKNOWN_REFERENCE", "chat") in codes and ("INVALID_VALUE", "team") in codes
    assert all(d.line for d in err.value.diagnostics)


def test_python_builders_compose_with_add_workflow():
    ow = registry(DEBATERS, scripted("judge", "verdict"))
    chat = patterns.group_chat(ow, ["pro", "con"], max_rounds=2, name="chat2").build()
    r = chat.execute(inputs={"task": "x"})
    assert r.outputs["final"] == "con 1" and r.outputs["rounds"] == 2
    assert [m["agent"] for m in r.outputs["conversation"]] == ["pro", "con"]
    b = ow.builder("outer")
    b.inputs({"task": {"type": "string"}})
    b.add_workflow(
        patterns.concurrent(ow, ["pro", "con"], aggregator="judge"), id="panel", inputs={"task": "{{ inputs.task }}"}
    )
    b.add_workflow(
        patterns.sequential(ow, ["con", "pro"]), id="seq", inputs={"task": "{{ steps.panel.outputs.final }}"}
    )
    b.outputs({"final": {"value": "{{ steps.seq.outputs.final }}"}})
    r = b.build().execute(inputs={"task": "y"})
    assert r.status == "completed", {k: v.error for k, v in r.steps.items() if v.error}
    assert r.outputs == {"final": "pro 1"}
    assert r.steps["panel/par"].output["final"] == "verdict"


def test_other_spellings_load_with_alias_warnings():
    ow = registry(DEBATERS)
    ow.load(
        """
name: spelled
steps:
  - {id: chat, type: group_chat, participants: [pro, con], selection: round_robin, termination: {max_rounds: 2}}
  - {id: route, type: handoff, agent: pro, max_transfers: 1, input: hi}
"""
    )
    wf = ow.workflow("spelled")
    assert {w.code for w in wf.warnings} == {"ALIAS"} and len(wf.warnings) == 4
    assert wf.manifest.steps[1].maxTransfers == 1
    assert wf.execute().steps["chat"].output["rounds"] == 2


def test_the_stdout_callback_prints_each_round(capsys):
    ow = registry(DEBATERS, chat_flow(termination={"maxRounds": 2}))
    ow.workflow("debate").execute(callback="stdout")
    printed = capsys.readouterr().out
    assert "chat round 1: pro (roundRobin)" in printed and "chat round 2: con (roundRobin)" in printed


BANK = """
---
type: connector
name: bank
kind: sdk
approval: {required: always, timeout: 3600, onTimeout: reject}
actions:
  - {name: pay, handler: {function: tests.handlers.count}}
---
type: agent
name: payer
toolset: [bank]
model:
  provider: scripted
  responses:
    - tool_calls: [{name: bank_pay, args: {name: pay-ada}}]
    - content: "paid ada"
---
name: office
steps:
  - {id: chat, type: groupChat, participants: [pro, payer], termination: {maxRounds: 2}, input: {task: pay}}
outputs: {final: {value: "{{ steps.chat.output.final }}"}}
"""


def test_an_approval_in_a_turn_makes_the_run_wait_and_resume_without_redoing_earlier_turns(tmp_path):
    from tests import handlers

    handlers.CALLS.clear()
    ow = OpenWorkflow(state=str(tmp_path / "runs.db"))
    ow.load(DEBATERS + BANK)
    r = ow.workflow("office").execute()
    assert r.status == "waiting_approval" and [p.kind for p in r.pending] == ["approval"]
    done = ow.resume(r.run_id, approvals={r.pending[0].id: True})
    assert done.status == "completed", done.steps["chat"].error
    assert done.outputs == {"final": "paid ada"} and handlers.CALLS == {"pay-ada": 1}
    out = done.steps["chat"].output
    assert [m["content"] for m in out["conversation"]] == ["pro 1", "paid ada"]  # pro's turn was not redone


def test_a_magentic_run_waiting_in_round_2_resumes_with_the_plan_and_round_1_served_from_the_store(tmp_path):
    from tests import handlers

    handlers.CALLS.clear()
    lead = scripted(
        "lead", "PLAN", ledger("researcher", "look"), ledger("payer", "pay"), ledger("payer", "", done=True), "all paid"
    )
    payer = BANK.split("---\nname: office", maxsplit=1)[0].replace("name: payer", "name: payer\ndescription: pays")
    ow = OpenWorkflow(state=str(tmp_path / "runs.db"))
    ow.load(lead + scripted("researcher", "found it") + payer)
    ow.load(
        """
name: settle
steps:
  - {id: team, type: magentic, manager: lead, participants: [researcher, payer], input: {task: settle}}
outputs: {final: {value: "{{ steps.team.output.final }}"}}
"""
    )
    r = ow.workflow("settle").execute()
    assert r.status == "waiting_approval"
    turns = r.trace[(r.trace.step_id == "team") & (r.trace.iteration != "")]
    assert list(turns.iteration) == ["0.0", "1.0", "1.1", "2.0"]  # plan, round 1, round 2's ledger
    done = ow.resume(r.run_id, approvals={r.pending[0].id: True})
    assert done.status == "completed" and done.outputs == {"final": "all paid"}
    out = done.steps["team"].output
    assert out["task_ledger"] == "PLAN" and [m["agent"] for m in out["conversation"]] == ["researcher", "payer"]
    assert handlers.CALLS == {"pay-ada": 1}
    rows = done.trace[(done.trace.step_id == "team") & (done.trace.iteration != "")]
    assert list(rows.iteration) == ["0.0", "1.0", "1.1", "2.0", "2.1", "3.0", "3.3"]
    called = Counter(e["iteration"] for e in done.events if e["type"] == "agent.turn.completed")
    assert [called[it] for it in ("0.0", "1.0", "1.1", "2.0")] == [1, 1, 1, 1]  # each model asked once in all


def test_a_pattern_steps_token_budget_spans_all_its_turns():
    ow = registry(DEBATERS, chat_flow(termination={"maxRounds": 6}, guardrails={"maxTokens": 40}))
    r = ow.workflow("debate").execute()
    error = r.steps["chat"].error
    assert r.status == "failed" and error.code == "CANCELED" and error.details["reason"] == "budget"
    turns = r.trace[(r.trace.step_id == "chat") & (r.trace.iteration != "")]
    assert list(turns.iteration) == ["1.1", "2.1"]  # 15 tokens a turn: a third would cross 40


def test_an_invalid_pattern_step_still_reports_unknown_participants_and_reads_item_in_its_condition():
    ow = registry(DEBATERS)
    with pytest.raises(ManifestError) as err:
        ow.load(
            "name: bad\nsteps:\n  - id: chat\n    type: groupChat\n    participants: [pro, ghost]\n"
            "    termination: {maxRounds: 0, condition: \"{{ item.content == 'x' }}\"}\n"
        )
    found = {(d.code, d.line) for d in err.value.diagnostics}
    assert found == {("INVALID_VALUE", 6), ("UNKNOWN_REFERENCE", 5)}
