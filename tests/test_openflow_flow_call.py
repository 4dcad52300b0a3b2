"""FLOW_CALL: `output_selection` keeps only the named outputs of the called flow, `config.flow_id`
(the SDK's spelling) works, and a run nests at most five calls (the SDK's limit)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from owf_magics import OpenWorkflow
from owf_magics.formats.convert import convert_file


def flow(name: str, call: str | None, **node: Any) -> str:
    nodes: list[dict[str, Any]] = []
    if call:
        nodes.append({"id": "c", "type": "FLOW_CALL", "config": {"flow_id": call}, "input_mapping": {}, **node})
        nodes.append(
            {"id": "u", "type": "UPDATE_VARIABLE", "config": {"type": "update", "variable_id": "got"}, "value": "{{c}}"}
        )
    else:
        nodes.append(
            {"id": "u", "type": "UPDATE_VARIABLE", "config": {"type": "update", "variable_id": "got"}, "value": "leaf"}
        )
    return json.dumps(
        {
            "name": name,
            "version": "1.0.0",
            "variables": [
                {"id": "got", "type": "any", "default": None},
                {"id": "extra", "type": "string", "default": "x"},
            ],
            "input": [],
            "output": ["got", "extra"],
            "nodes": nodes,
        }
    )


@pytest.mark.parametrize("backend", ["native", "langchain"])
def test_output_selection_keeps_only_the_named_outputs(backend: str) -> None:
    ow = OpenWorkflow(state=":memory:")
    ow.load(flow("leaf", None))
    ow.load(flow("all", "leaf"))
    ow.load(flow("some", "leaf", output_selection=["got", "missing"]))
    assert ow.workflow("all").execute(prefer_backend=backend).outputs["got"] == {"got": "leaf", "extra": "x"}
    assert ow.workflow("some").execute(prefer_backend=backend).outputs["got"] == {"got": "leaf"}


def chain(ow: OpenWorkflow, length: int) -> None:
    """f0 calls f1 ... calls f<length>, which calls nothing."""
    ow.load(flow(f"f{length}", None))
    for i in range(length - 1, -1, -1):
        ow.load(flow(f"f{i}", f"f{i + 1}", output_selection=["got"]))


def test_five_nested_calls_run_and_a_sixth_fails() -> None:
    ow = OpenWorkflow(state=":memory:")
    chain(ow, 5)
    res = ow.workflow("f0").execute()
    assert res.status == "completed", res.error
    assert res.outputs["got"] == {"got": {"got": {"got": {"got": {"got": "leaf"}}}}}

    ow = OpenWorkflow(state=":memory:")
    chain(ow, 6)  # (a flow calling itself is refused at load time: CIRCULAR_DEPENDENCY)
    res = ow.workflow("f0").execute()
    assert res.status == "failed"
    assert res.error is not None and res.error.details.get("depth") == 5
    assert ow.workflow("f1").execute().status == "completed"  # five calls from f1


def test_the_converted_yaml_keeps_selection_and_limit(tmp_path: Any) -> None:
    path = tmp_path / "f0.json"
    path.write_text(flow("f0", "f1", output_selection=["got"]), encoding="utf-8")
    text = convert_file(path)
    assert "maxCallDepth: 5" in text
    ow = OpenWorkflow(state=":memory:")
    ow.load(flow("f1", None))
    ow.load(text)
    assert ow.workflow("f0").execute().outputs["got"] == {"got": "leaf"}
