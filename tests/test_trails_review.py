"""Review of schema 6 (trails): the stored events are the run's, whatever path wrote them."""

from __future__ import annotations

import asyncio
import json

import pytest

from owf_magics import OpenWorkflow, inline
from owf_magics.runs.store import SQLiteRunStore
from owf_magics.runtime.records import StepRecord
from tests.agent_fixtures import MATH
from tests.agent_fixtures import WORKFLOW as MATH_FLOW
from tests.test_durable import APPROVAL_FLOW, CONNECTORS
from tests.test_trails import CONNECTOR, FLOWS, _pair_events, by_id

SECRET = "sk-very-secret-value"


@pytest.fixture(params=["sqlite", "postgresql"])
def state(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "runs.db")
    return str(request.getfixturevalue("postgres_url"))


def test_a_secret_output_is_redacted_in_every_store(state):
    ow = OpenWorkflow(state=state)
    ow.load(CONNECTOR)
    ow.load(FLOWS["leaky"])
    result = ow.workflow("leaky").execute(inputs={"text": f"the key is {SECRET}!"}, secrets={"K": SECRET})
    back = ow.store.get_events(result.run_id)
    assert not [e.event for e in back if SECRET in json.dumps(e.event)]
    assert by_id(e.event for e in back) == by_id(result.events)
    ow.close()


class Awkward:
    """A value the store cannot write (its conversion fails)."""

    def to_dict(self) -> dict:
        raise RuntimeError("no")


@inline
def awkward() -> Awkward:
    return Awkward()


SIDE_BY_SIDE = """
connector: {name: rv, kind: sdk}
actions:
  - {name: echo, handler: {function: tests.test_trails.echo}}
  - {name: awkward, handler: {function: tests.test_trails_review.awkward}}
---
name: side
inputs: {text: {type: string}}
steps:
  - {id: a, connector: rv, action: echo, input: {text: "{{ inputs.text }}"}}
  - {id: odd, connector: rv, action: awkward}
"""


def test_a_batch_with_a_value_the_store_cannot_write_still_redacts_the_others(tmp_path):
    # `a` and `odd` finish in the same loop tick: one batch, which the store refuses (`odd`'s output);
    # the fallback writes the batch's events as dicts, `a`'s output redacted
    path = tmp_path / "runs.db"
    ow = OpenWorkflow(state=str(path))
    ow.load(SIDE_BY_SIDE)
    result = ow.workflow("side").execute(inputs={"text": f"the key is {SECRET}!"}, secrets={"K": SECRET})
    back = [e.event for e in ow.store.get_events(result.run_id)]
    assert [e["type"] for e in back if e["type"].startswith("step.")].count("step.execution.completed") == 2
    assert not [e for e in back if SECRET in json.dumps(e)]
    ow.close()
    assert SECRET.encode() not in path.read_bytes()


def _odd_pairs() -> list[tuple[str, list[dict]]]:
    """Step events the engine never writes, each differing from its shape in one field that a
    trail would give back otherwise."""
    out = []
    events = _pair_events("r", "a", 0, None)
    events[1]["timestamp"] = 1765000000.25  # a number, not the engine's text
    out.append(("a number for a time", events))
    events = _pair_events("r", "a", 0, None)
    events[0]["iteration"] = None  # the started event's iteration is not the completed one's
    out.append(("a started event of another iteration", events))
    events = _pair_events("r", "a", 0, None)
    events[0]["attempt"] = True
    out.append(("a started event's attempt as a boolean", events))
    return out


@pytest.mark.parametrize("alone", [True, False], ids=["one-step", "two-steps"])
@pytest.mark.parametrize(("name", "events"), _odd_pairs(), ids=[n for n, _ in _odd_pairs()])
def test_events_a_trail_cannot_give_back_exactly_are_rows(tmp_path, alone, name, events):
    with SQLiteRunStore(tmp_path / "runs.db") as s:
        s.create_run("r", "w")
        steps = [StepRecord("a", "a", "success", None)]
        if not alone:  # the general path: another step's events in the same batch
            steps.append(StepRecord("b", "b", "success", None))
            events = [*events, *_pair_events("r", "b", 2, None)]
        s.checkpoint_many("r", steps, events)
        back = [e.event for e in s.get_events("r")]
        assert back == events
        assert [type(e["timestamp"]) for e in back] == [type(e["timestamp"]) for e in events]
        assert [type(e["attempt"]) for e in back] == [type(e["attempt"]) for e in events]


# -- the invariant on the paths test_trails does not take -------------------------------------------

RISKY = """
connector: {name: rk, kind: sdk}
actions:
  - {name: slow, handler: {function: tests.test_trails.slow}}
  - {name: add, handler: {function: tests.test_trails.add}}
  - {name: nap, handler: {function: tests.handlers.nap}}
---
name: late
timeout: 0.3s
steps:
  - {id: a, connector: rk, action: add, input: {x: 1}}
  - {id: quick, connector: rk, action: slow, input: {x: 1}, dependsOn: [a]}
  - {id: long, connector: rk, action: slow, input: {x: 500}, dependsOn: [a]}
  - {id: stuck, connector: rk, action: nap, input: {ms: 700}, dependsOn: [a]}
---
name: fanout
inputs: {n: {type: integer}}
steps:
  - id: each
    type: forEach
    items: "{{ range(inputs.n) | list }}"
    steps:
      - {id: s, connector: rk, action: slow, input: {x: 1}}
      - {id: t, connector: rk, action: add, input: {x: "{{ item }}"}, dependsOn: [s]}
"""


def _risky(path) -> OpenWorkflow:
    ow = OpenWorkflow(state=str(path))
    for text in (RISKY, CONNECTORS, APPROVAL_FLOW, MATH, MATH_FLOW):
        ow.load(text)
    return ow


def _approval(ow: OpenWorkflow) -> list:
    first = ow.workflow("payout").execute()
    assert first.status == "waiting_approval"
    done = ow.resume(first.run_id, approvals={first.pending[0].id: True})
    assert done.status == "completed"
    return [(first.run_id, first.events)]


def _timeout(ow: OpenWorkflow) -> list:
    result = ow.workflow("late").execute()
    assert result.status == "failed" and result.error.code == "TIMEOUT"
    return [(result.run_id, result.events)]


def _cancel(ow: OpenWorkflow) -> list:
    async def canceled():
        task = asyncio.ensure_future(ow.workflow("late").aexecute({}))
        await asyncio.sleep(0.1)
        task.cancel()
        return await task

    result = asyncio.run(canceled())
    assert result.status == "canceled"
    return [(result.run_id, result.events)]


def _agent(ow: OpenWorkflow) -> list:
    result = ow.workflow("ask-math").execute({"q": "2 + 3"})
    assert result.status == "completed"
    assert "agent.tool.completed" in [e["type"] for e in result.events]
    return [(result.run_id, result.events)]


def _batch(ow: OpenWorkflow) -> list:
    batch = ow.map("fanout", [{"n": n} for n in range(1, 7)], concurrency=3)
    assert batch.statuses == {"completed": 6}
    return [(r.run_id, r.events) for r in batch.results]


@pytest.mark.parametrize("path", [_approval, _timeout, _cancel, _agent, _batch], ids=lambda f: f.__name__[1:])
def test_the_store_holds_the_run_s_events_numbered_without_gaps(tmp_path, path):
    ow = _risky(tmp_path / "runs.db")
    for run_id, events in path(ow):
        back = ow.store.get_events(run_id)
        assert [e.seq for e in back] == list(range(1, len(back) + 1))
        # the ids as the run numbered them: 0, 1, 2... (a resumed run numbers on from the store)
        assert [e.event["event_id"] for e in back] == [f"evt_{run_id}_{n:05d}" for n in range(len(back))]
        mine = by_id(json.loads(json.dumps(events)))
        stored = by_id(e.event for e in back)
        assert {k: stored.get(k) for k in mine} == mine  # a resumed run's first part too
        if path is not _approval:
            assert stored == mine
    ow.close()
