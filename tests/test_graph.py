"""The neutral step graph: references become edges between siblings; cycles name every step."""

from __future__ import annotations

import pytest

from owf_magics import ManifestError

NESTED = """
workflows:
  - name: G
    inputs: {x: {type: number}}
    steps:
      - id: fetch
        type: transform
        expression: "{{ inputs.x }}"
      - id: branch
        type: if
        condition: "{{ inputs.x > 1 }}"
        then:
          - id: inner
            type: transform
            expression: "{{ steps.fetch.output }}"
        else:
          - id: other
            type: transform
            expression: "no"
      - id: fan
        type: parallel
        branches:
          left: [{id: l1, type: transform, expression: "{{ steps.inner.output }}"}]
          right: [{id: r1, type: transform, expression: "r"}]
      - id: loop
        type: forEach
        items: [1, 2]
        steps:
          - {id: body, type: transform, expression: "{{ item }} {{ steps.fan.output }}"}
      - id: guard
        type: try
        steps: [{id: risky, type: transform, expression: "a"}]
        catch: [{id: handle, type: transform, expression: "{{ error.message }}"}]
      - id: pause
        type: wait
        duration: 1s
      - id: last
        type: transform
        expression: "done"
"""


def test_edges_are_lifted_to_siblings_and_groups_exist(ow):
    [wf] = ow.load(NESTED)
    g = wf.graph
    edges = {(e.source, e.target, e.kind) for e in g.edges}
    assert ("fetch", "branch", "data") in edges  # inner reads fetch → lifted to its if step
    assert ("branch", "fan", "data") in edges  # l1 reads inner → fan waits for branch
    assert ("fan", "loop", "data") in edges
    # the wait step is a barrier
    assert {("guard", "pause", "order"), ("pause", "last", "order"), ("fetch", "pause", "order")} <= edges
    kinds = {(grp.owner, grp.kind, grp.label) for grp in g.groups}
    assert {
        ("branch", "then", "then"),
        ("branch", "else", "else"),
        ("fan", "branch", "left"),
        ("loop", "loop", "loop"),
        ("guard", "try", "try"),
        ("guard", "catch", "catch"),
    } <= kinds
    assert g.nodes["inner"].parent == "branch" and g.nodes["inner"].depth == 1
    assert g.deps["loop"] == frozenset({"fan"})
    assert g.topological()[:3] == ["fetch", "branch", "inner"]


def test_independent_steps_have_no_edges(ow):
    [wf] = ow.load(
        "name: I\nsteps:\n" + "".join(f"  - {{id: s{i}, type: transform, expression: x}}\n" for i in range(5))
    )
    assert wf.graph.edges == ()
    assert wf.graph.roots() == ("s0", "s1", "s2", "s3", "s4")


def test_cycle_names_every_step(ow):
    with pytest.raises(ManifestError) as err:
        ow.load("""
name: C
steps:
  - {id: a, type: transform, expression: "{{ steps.c.output }}"}
  - {id: b, type: transform, expression: "{{ steps.a.output }}"}
  - {id: c, type: transform, expression: "{{ steps.b.output }}"}
  - {id: free, type: transform, expression: "x"}
""")
    [d] = err.value.diagnostics
    assert d.code == "CIRCULAR_DEPENDENCY"
    assert "a → b → c → a" in d.message
    assert d.line == 4


def test_needs_and_unknown_needs(ow):
    [wf] = ow.load(
        "name: N\nsteps:\n  - {id: a, type: transform, expression: x}\n  - {id: b, type: transform, expression: y, needs: [a]}\n"
    )
    assert wf.graph.deps["b"] == frozenset({"a"})
    with pytest.raises(ManifestError) as err:
        ow.load("name: N2\nsteps:\n  - {id: a, type: transform, expression: x, depends_on: [zz]}\n")
    assert [d.code for d in err.value.diagnostics] == ["UNKNOWN_REFERENCE"]


def test_reading_a_step_inside_yourself_is_a_cycle(ow):
    with pytest.raises(ManifestError) as err:
        ow.load("""
name: Self
steps:
  - id: outer
    type: if
    condition: "{{ steps.inner.output }}"
    then: [{id: inner, type: transform, expression: x}]
""")
    assert [d.code for d in err.value.diagnostics] == ["CIRCULAR_DEPENDENCY"]


def test_failed_load_changes_nothing(ow):
    ow.load("name: keep\nsteps: [{id: a, type: transform, expression: x}]")
    with pytest.raises(ManifestError):
        ow.load("name: keep\nversion: 2.0.0\nsteps: [{id: a, type: transfrom, expression: x}]")
    assert [w.version for w in ow.workflows()] == ["1.0.0"]
