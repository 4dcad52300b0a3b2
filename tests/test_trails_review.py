"""Review of schema 6 (trails): the stored events are the run's, whatever path wrote them."""

from __future__ import annotations

import json

import pytest

from owf_magics import OpenWorkflow, inline
from tests.test_trails import CONNECTOR, FLOWS, by_id

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
