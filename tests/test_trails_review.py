"""Review of schema 6 (trails): the stored events are the run's, whatever path wrote them."""

from __future__ import annotations

import json

import pytest

from owf_magics import OpenWorkflow, inline
from owf_magics.runs.store import SQLiteRunStore
from owf_magics.runtime.records import StepRecord
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
