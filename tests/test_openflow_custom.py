"""Custom OpenFlow node types (namespace:name) through the registry; reserved namespaces refused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from owf_magics import ManifestError, OpenWorkflow
from owf_magics.formats.openflow.custom import register_node_type, unregister_node_type


def shout(config: dict[str, Any], input: Any) -> dict[str, Any]:
    return {"text": str(input["text"]).upper() + str(config.get("suffix", ""))}


FLOW = {
    "name": "custom_nodes",
    "version": "1.0.0",
    "variables": [{"id": "word", "type": "string", "default": "hey"}, {"id": "out", "default": ""}],
    "input": ["word"],
    "output": ["out"],
    "nodes": [
        {"id": "loud", "type": "acme:shout", "config": {"suffix": "!"}, "input": {"text": "{{@word}}"}},
        {
            "id": "keep",
            "type": "UPDATE_VARIABLE",
            "config": {"type": "update", "variable_id": "out"},
            "value": "{{loud.text}}",
        },
    ],
}


@pytest.fixture
def shout_type() -> Iterator[None]:
    register_node_type("acme:shout", "tests.test_openflow_custom.shout")
    yield
    unregister_node_type("acme:shout")


def test_a_registered_custom_node_runs(shout_type: None) -> None:
    ow = OpenWorkflow(state=":memory:")
    ow.load(FLOW)
    assert ow.workflow("custom_nodes").execute(inputs={"word": "owl"}).outputs == {"out": "OWL!"}


def test_an_unregistered_custom_node_is_invalid_node_type() -> None:
    with pytest.raises(ManifestError) as err:
        OpenWorkflow(state=":memory:").load(FLOW)
    assert err.value.codes == ["INVALID_NODE_TYPE"]


@pytest.mark.parametrize("name", ["core:x", "std:x", "openflow:x", "nocolon", "Acme:x"])
def test_reserved_or_malformed_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        register_node_type(name, "tests.test_openflow_custom.shout")
