"""Adapters between parts (``b.add_adapter``) and the default prefix of ``add_workflow``."""

from __future__ import annotations

import pytest

from owf_magics import ManifestError, OpenWorkflow

PARTS = """
workflows:
  - name: count
    steps: [{id: n, type: transform, expression: "{{ 3 }}"}]
    outputs: {n: {value: "{{ steps.n.output.result }}", type: integer}}
  - name: greet
    inputs: {who: {type: string, required: true}}
    steps: [{id: g, type: transform, expression: "hello {{ inputs.who }}"}]
    outputs: {text: {value: "{{ steps.g.output.result }}", type: string}}
"""


@pytest.fixture
def ow() -> OpenWorkflow:
    reg = OpenWorkflow(state=":memory:")
    reg.load(PARTS)
    return reg


def mismatched(ow: OpenWorkflow, name: str):  # type: ignore[no-untyped-def]
    b = ow.builder(name).add_workflow("count", id="c")
    return b.add_workflow("greet", id="g", inputs={"who": "{{ steps.c.outputs.n }}"})


def test_a_mismatch_fails_at_build_and_the_same_parts_through_an_adapter_build_and_run(ow):
    with pytest.raises(ManifestError) as info:
        mismatched(ow, "bad").build()
    assert [d.code for d in info.value.diagnostics] == ["TYPE_MISMATCH"]

    b = mismatched(ow, "good").add_adapter("c", "g", "{{ steps.c.outputs.n }} friends", type="string")
    b.outputs({"text": {"value": "{{ steps.g.outputs.text }}"}})
    r = b.build().execute()
    assert r.status == "completed" and r.outputs == {"text": "hello 3 friends"}
    assert r.steps["c_to_g"].output == "3 friends"  # the adapter's output is the value itself
    assert r.steps["g/g"].status == "success"


def test_an_adapter_declaring_the_wrong_type_is_itself_a_type_mismatch(ow):
    b = mismatched(ow, "still-bad").add_adapter("c", "g", "{{ steps.c.outputs.n }}", id="conv", type="integer")
    with pytest.raises(ManifestError) as info:
        b.build()
    (d,) = info.value.diagnostics
    assert d.code == "TYPE_MISMATCH" and "adapter 'conv'" in d.message and d.step_id == "g"


def test_the_adapter_runs_between_the_two_parts(ow):
    b = mismatched(ow, "ordered").add_adapter("c", "g", "{{ steps.c.outputs.n }}", id="conv", type="string")
    wf = b.build()
    edges = {(e.source, e.target) for e in wf.graph.edges}
    assert ("c/n", "conv") in edges and ("conv", "g/g") in edges


def test_a_fragment_added_without_id_is_prefixed_with_its_name(ow):
    b = ow.builder("plain").add_workflow("greet", inputs={"who": "ada"})
    b.add_workflow(ow.workflow("count"))
    b.outputs({"text": {"value": "{{ steps.greet.outputs.text }}"}, "n": {"value": "{{ steps.count.outputs.n }}"}})
    r = b.build().execute()
    assert r.outputs == {"text": "hello ada", "n": 3}
    assert {"greet/g", "count/n"} <= set(r.steps)
