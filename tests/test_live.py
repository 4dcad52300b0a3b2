"""The live run view, fed by a real run's events through `execute(callback=...)`."""

from __future__ import annotations

from pathlib import Path

import pytest

from owf_magics.notebook.live import TABS, LiveRunView, use_widgets
from owf_magics.notebook.views import SETTINGS
from tests.flows import APPROVAL

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def digest(ow):
    ow.load(ROOT / "examples" / "research-digest.yaml")
    return ow.workflow()


def test_view_follows_the_events_and_ends_as_tabs(digest):
    plan = digest.plan()
    view = LiveRunView(plan, "name: Research Digest\n")
    seen: list[str] = []

    def callback(event):
        view.on_event(event)
        seen.append(view.counts.value)

    assert view.running() == ["search"]
    result = digest.execute(callback=callback)
    assert view.events == len(result.events)
    # every step completed: the bar is full, tokens were counted as they came
    assert view.progress.value == view.progress.max == 4
    assert seen[-1] == "56 tokens so far" and seen[0] == "0 tokens so far"
    assert view.states["summarize"].tokens == 56 and view.states["count_words"].status == "success"
    assert view.running() == []
    assert "success" in view.graph.value
    view.finish(result)
    assert [view.tabs.get_title(i) for i in range(len(TABS))] == list(TABS)
    pages = [child.value for child in view.tabs.children]
    assert "OpenWorkflow describes portable AI workflows" in pages[0]
    assert "count_words" in pages[1] and "scripted" in pages[2]
    assert "step.execution.completed" in pages[3] and "name: Research Digest" in pages[5]
    assert view.widget.children[1] is view.tabs


def test_current_steps_follow_dependencies(digest):
    view = LiveRunView(digest.plan())
    view.on_event({"type": "run.started"})
    view.on_event(
        {"type": "step.execution.completed", "step_id": "search", "execution": {}, "result": {"status": "success"}}
    )
    # measure and summarize both wait only for search; the loop body waits for its loop
    assert view.running() == ["measure", "count_words", "summarize"]
    assert "current: <code>measure</code>" in view.current.value


def test_a_failing_step_is_shown_failed(digest):
    view = LiveRunView(digest.plan())
    event = {"type": "step.execution.completed", "step_id": "search", "execution": {"duration_ms": 3}}
    view.on_event({**event, "result": {"status": "error"}})
    assert view.states["search"].status == "failed"
    view.on_event({"type": "something.new"})  # unknown events are counted, never fatal
    assert view.events == 2


def test_widgets_only_in_a_widget_front_end():
    saved = SETTINGS.deterministic
    try:
        SETTINGS.deterministic = False
        assert use_widgets("always") and not use_widgets("never")
        assert not use_widgets("auto")  # no kernel here
        SETTINGS.deterministic = True
        assert not use_widgets("auto")
    finally:
        SETTINGS.deterministic = saved


def test_step_started_events_make_the_current_steps_exact(digest):
    view = LiveRunView(digest.plan())
    view.on_event({"type": "step.started", "step_id": "search"})
    assert view.running() == ["search"]
    view.on_event({"type": "step.execution.completed", "step_id": "search", "result": {"status": "success"}})
    view.on_event({"type": "step.started", "step_id": "summarize"})
    assert view.running() == ["summarize"]  # measure has not started: not shown as running
    view.on_event({"type": "step.skipped", "step_id": "measure"})
    assert view.states["measure"].status == "skipped"


def test_approve_and_reject_buttons_resume_the_run(ow):
    ow.load(APPROVAL)
    wf = ow.workflow("payout")

    def resume(run_id, approvals):
        return ow.resume(run_id, approvals=approvals)

    bound: list = []
    for approve, status in ((True, "completed"), (False, "failed")):
        view = LiveRunView(wf.plan(), resume=resume)
        view.bind = bound.append
        result = wf.execute(callback=view.on_event)
        assert result.status == "waiting_approval" and view.states["pay"].status == "waiting"
        view.finish(result)
        [row] = view.buttons
        label, yes, no = row.children
        assert "bank.pay" in label.value and (yes.description, no.description) == ("Approve", "Reject")
        (yes if approve else no).click()  # what a person's click does: the run continues
        [(request_id, answer, continued)] = view.answers
        assert request_id == result.pending[0].id and answer is approve
        assert continued.status == status and continued.run_id == result.run_id
        assert yes.disabled and no.disabled  # answered once
        assert ow.run(result.run_id).status == status
        # the banner follows the continued run, and so does what the magic bound (-o VAR)
        assert status in view.title.value and "waiting" not in view.title.value
        assert bound == [continued]
        bound.clear()


def test_agent_turns_and_streamed_text_show_while_the_step_runs_then_fold(ow):
    from tests.agent_fixtures import MATH, WORKFLOW

    ow.load(MATH + WORKFLOW)
    wf = ow.workflow("ask-math")
    view = LiveRunView(wf.plan())
    shown: list[str] = []

    def callback(event):
        view.on_event(event)
        if event["type"] == "agent.tool.completed":
            view._draw(force=True)
            shown.append(view.agents.value)

    result = wf.execute({"q": "2+3"}, callback=callback)
    assert result.status == "completed"
    assert "calculator_add" in shown[0] and "turn 1, 42 tokens" in shown[0] and "<b>ask</b>" in shown[0]
    view._draw(force=True)
    assert view.agents.value == ""  # folded when the step ended
    # streamed text is joined, and a new turn starts it afresh
    view.on_event({"type": "agent.message.delta", "step_id": "s", "delta": "Hel"})
    view.on_event({"type": "agent.message.delta", "step_id": "s", "delta": "lo"})
    assert view.activity.text["s"] == "Hello"
