"""Honest states: every attempt is its own trace row, only steps that ask wait, never-started steps
are pending, sub-workflow steps carry their parent, and a resumed run's status follows the run."""

from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from owf_magics import OpenWorkflow
from owf_magics.notebook.views.graph import overlay_from_result, to_mermaid
from tests import handlers

CONNECTORS = """
connectors:
  - name: ops
    kind: sdk
    actions:
      - {name: count, handler: {function: tests.handlers.count}}
      - {name: flaky, handler: {function: tests.handlers.flaky}}
  - name: bank
    kind: sdk
    approval: {required: always}
    actions:
      - {name: pay, handler: {function: tests.handlers.count}}
"""
FLOWS = """
name: retry_try
steps:
  - id: guard
    type: try
    retry: {maxAttempts: 3, backoff: fixed, initialDelay: 0}
    steps:
      - {id: prep, type: transform, expression: ready}
      - {id: call, connector: ops, action: flaky, input: {key: try, fail_times: 2}, needs: [prep]}
    catch:
      - {id: fix, type: transform, expression: fixed}
---
name: retry_step
steps:
  - {id: call, connector: ops, action: flaky, input: {key: step, fail_times: 2},
     retry: {maxAttempts: 3, backoff: fixed, initialDelay: 0}}
---
name: inner
steps:
  - {id: pay, connector: bank, action: pay, input: {name: pay}}
---
name: outer
steps:
  - {id: do_it, type: workflow, workflow: inner}
  - {id: notify, connector: ops, action: count, input: {name: notify}, needs: [do_it]}
"""


@pytest.fixture(autouse=True)
def _reset():
    handlers.CALLS.clear()


@pytest.fixture
def ow(tmp_path):
    ow = OpenWorkflow(state=str(tmp_path / "runs.db"))
    ow.load(CONNECTORS)
    ow.load(FLOWS)
    return ow


def rows(result, *columns):
    return [tuple(r[c] for c in columns) for r in result.trace_rows]


def test_every_attempt_of_a_retried_try_body_is_its_own_row(ow):
    r = ow.workflow("retry_try").execute()
    assert r.status == "completed" and handlers.CALLS == {"try": 3}
    # rows in graph order, then attempt: each pass of the body is attempt 1, 2, 3 of its steps
    assert rows(r, "step_id", "status", "attempt", "parent") == [
        ("guard", "success", 3, ""),
        ("prep", "success", 1, "guard"),
        ("prep", "success", 2, "guard"),
        ("prep", "success", 3, "guard"),
        ("call", "failed", 1, "guard"),
        ("call", "failed", 2, "guard"),
        ("call", "success", 3, "guard"),
        ("fix", "skipped", 0, "guard"),
    ]
    assert r.steps["guard"].attempts == 3 and r.steps["call"].attempts == 3
    started = [(e["step_id"], e["attempt"]) for e in r.events if e["type"] == "step.started"]
    assert ("call", 1) in started and ("call", 3) in started
    # the graph says so: the try and its step drawn with their attempts
    overlay = overlay_from_result(r)
    assert overlay["call"].attempts == 3
    assert "3 attempts" in to_mermaid(ow.workflow("retry_try").plan(), overlay)


def test_a_retried_step_counts_its_attempts(ow):
    r = ow.workflow("retry_step").execute()
    assert rows(r, "step_id", "status", "attempt") == [
        ("call", "failed", 1),
        ("call", "failed", 2),
        ("call", "success", 3),
    ]
    assert r.steps["call"].attempts == 3


def test_only_steps_that_ask_wait_and_sub_workflow_steps_carry_their_parent(ow):
    r = ow.workflow("outer").execute()
    assert r.status == "waiting_approval"
    assert {k: s.status for k, s in r.steps.items()} == {"do_it": "waiting", "notify": "pending"}
    assert rows(r, "step_id", "status", "parent") == [("do_it", "waiting", ""), ("do_it/pay", "waiting", "do_it")]
    assert "(1 waiting, 1 pending)" in r.summary_text()
    done = ow.resume(r.run_id, approvals={r.pending[0].id: True})
    assert done.status == "completed"
    assert {k: s.status for k, s in done.steps.items()} == {"do_it": "success", "notify": "success"}


@pytest.fixture
def shell(tmp_path):
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "owf_magics")
    ip.run_line_magic("config", f"OWF.state = '{tmp_path / 'runs.db'}'")
    yield ip
    ip.run_line_magic("unload_ext", "owf_magics")
    InteractiveShell.clear_instance()


def test_resume_without_answers_says_what_it_waits_for_and_changes_nothing(shell):
    with capture_output():
        assert shell.run_cell(f"%%workflow --quiet\n{CONNECTORS}").success
        assert shell.run_cell(f"%%workflow --quiet\n{FLOWS}").success
        shell.run_line_magic("workflow", "run outer --quiet -o rp")
    rp = shell.user_ns["rp"]
    assert rp.status == "waiting_approval"
    with capture_output() as cap:
        shell.run_line_magic("workflow", f"resume {rp.run_id}")
    assert "waiting for approval" in cap.stdout and "at step do_it/pay" in cap.stdout
    assert "answer with: %workflow resume" in cap.stdout and "nothing was changed" in cap.stdout
    assert handlers.CALLS.get("pay") is None and handlers.CALLS.get("notify") is None
    ow = shell._owf_magics.ow
    assert ow.run(rp.run_id).status == "waiting_approval"
    with capture_output():
        shell.run_line_magic("workflow", f"resume {rp.run_id} --approve {rp.pending[0].id} -o rp")
    assert shell.user_ns["rp"].status == "completed" and handlers.CALLS == {"pay": 1, "notify": 1}


def test_the_live_view_shows_a_retried_step_succeeding_with_its_attempts(ow):
    from owf_magics.notebook.live import LiveRunView

    wf = ow.workflow("retry_step")
    view = LiveRunView(wf.plan())
    wf.execute(callback=view.on_event)
    state = view.states["call"]
    assert (state.status, state.attempts) == ("success", 3)
    assert "3 attempts" in view.graph.value
