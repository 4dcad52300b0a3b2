"""Review of schema 6 (trails): the stored events are the run's, whatever path wrote them."""

from __future__ import annotations

import json

import pytest

from owf_magics import OpenWorkflow
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
