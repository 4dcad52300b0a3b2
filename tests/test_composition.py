"""Workflow composition (issue 13): the builder, inline parts, nesting, edges, typed ports, and
what runs downstream of them (store, resume in a new process, LangGraph, plan, CLI)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from owf_magics import ManifestError, OpenWorkflow
from owf_magics.cli import main
from tests import handlers
from tests.conftest import ROOT
from tests.test_durable import APPROVAL_FLOW, CONNECTORS

FETCH = """
workflows:
  - name: fetch
    inputs: {topic: {type: string, required: true}}
    steps:
      - {id: get, type: transform, expression: "{{ inputs.topic | upper }}"}
      - {id: sum, type: transform, expression: "{{ steps.get.output.result }}!"}
    outputs: {summary: {value: "{{ steps.sum.output.result }}", type: string}}
  - name: count
    steps: [{id: n, type: transform, expression: "{{ 3 }}"}]
    outputs: {n: {value: "{{ steps.n.output.result }}", type: integer}}
  - name: two-ends
    steps:
      - {id: x, type: transform, expression: "1"}
      - {id: y, type: transform, expression: "2"}
"""


@pytest.fixture
def ow():
    reg = OpenWorkflow(state=":memory:")
    reg.load(FETCH)
    return reg


@pytest.fixture(autouse=True)
def _reset():
    handlers.CALLS.clear()


def pipeline(ow: OpenWorkflow, name: str = "pipe", *, inline: bool = True):
    b = ow.builder(name)
    b.add_step({"id": "prep", "type": "transform", "template": "{{ inputs.t }}-x"})
    b.add_workflow("fetch", id="a", inputs={"topic": "{{ steps.prep.output.result }}"}, inline=inline)
    b.add_workflow(ow.workflow("fetch"), id="b", inputs={"topic": "{{ steps.a.outputs.summary }}"}, inline=inline)
    b.add_edge("prep", "a")
    b.inputs({"t": {"type": "string", "required": True}})
    b.outputs({"o": {"value": "{{ steps.b.outputs.summary }}", "type": "string"}})
    return b


def test_one_source_added_twice_gives_two_parts_wired_in_order(ow):
    wf = pipeline(ow).build()
    assert [s.id for s in wf.manifest.steps] == ["prep", "a/get", "a/sum", "b/get", "b/sum"]
    edges = {(e.source, e.target) for e in wf.graph.edges}
    assert {("prep", "a/get"), ("a/get", "a/sum"), ("a/sum", "b/get"), ("b/get", "b/sum")} <= edges
    r = wf.execute(inputs={"t": "hi"})
    assert r.status == "completed" and r.outputs == {"o": "HI-X!!"}
    assert r.steps["a/sum"].output == {"result": "HI-X!"} and r.steps["b/sum"].output == {"result": "HI-X!!"}
    assert wf.fragments["a"] == {
        "workflow": "fetch",
        "entries": ["a/get"],
        "exits": ["a/sum"],
        "steps": ["a/get", "a/sum"],
    }
    assert ow.workflow("fetch").manifest.steps[0].id == "get"  # the source is unchanged
    assert ow.workflow("pipe") is not None  # build() registered it


def test_three_levels_nest_their_prefixes(ow):
    inner = pipeline(ow)
    middle = ow.builder("middle").inputs({"t": {"type": "string"}})
    middle.add_workflow(inner, id="p", inputs={"t": "{{ inputs.t }}"}).outputs({"o": "{{ steps.p.outputs.o }}"})
    mid = middle.build()
    outer = ow.builder("outer").add_workflow(mid, id="z", inputs={"t": "q"}).outputs({"o": "{{ steps.z.outputs.o }}"})
    wf = outer.build()
    assert [s.id for s in wf.manifest.steps] == ["z/p/prep", "z/p/a/get", "z/p/a/sum", "z/p/b/get", "z/p/b/sum"]
    assert wf.execute().outputs == {"o": "Q-X!!"}
    assert {"z", "z/p", "z/p/a", "z/p/b"} <= set(wf.fragments)
    assert wf.fragments["z/p/a"]["exits"] == ["z/p/a/sum"]


def test_an_edge_from_a_part_with_two_exits_lists_them(ow):
    b = ow.builder("bad").add_workflow("two-ends", id="f")
    b.add_step({"id": "z", "type": "transform", "expression": "3"}).add_edge("f", "z")
    with pytest.raises(ManifestError) as info:
        b.build()
    (d,) = info.value.diagnostics
    assert d.code == "AMBIGUOUS_EXIT" and "f/x" in d.message and "f/y" in d.message and d.step_id == "z"
    b2 = ow.builder("good").add_workflow("two-ends", id="f")
    b2.add_step({"id": "z", "type": "transform", "expression": "3"}).add_edge("f/y", "z")
    assert b2.build().graph is not None


def test_an_edge_into_a_part_goes_to_its_entries(ow):
    b = ow.builder("into").add_step({"id": "first", "type": "transform", "expression": "1"})
    b.add_workflow("two-ends", id="f").add_edge("first", "f")
    wf = b.build()
    assert {(e.source, e.target) for e in wf.graph.edges} == {("first", "f/x"), ("first", "f/y")}


def test_ids_that_collide_name_both_origins(ow):
    b = ow.builder("clash").add_step({"id": "a", "type": "transform", "expression": "1"})
    b.add_workflow("fetch", id="a", inputs={"topic": "x"})
    with pytest.raises(ManifestError) as info:
        b.build()
    msg = " ".join(d.message for d in info.value.diagnostics)
    assert "DUPLICATE_STEP_ID" in info.value.codes and "step 'a' of workflow 'clash'" in msg
    assert "fragment 'a' (workflow 'fetch')" in msg
    b = ow.builder("clash2").add_step({"id": "a/get", "type": "transform", "expression": "1"})
    b.add_workflow("fetch", id="a", inputs={"topic": "x"})
    with pytest.raises(ManifestError) as info:
        b.build()
    assert any("'a/get'" in d.message and "fragment 'a'" in d.message for d in info.value.diagnostics)


def test_integer_output_into_string_input_is_a_type_mismatch_at_build(ow):
    ow.load("name: greet\ninputs: {who: {type: string}}\nsteps: [{id: g, type: transform, expression: 'hi'}]")
    b = ow.builder("typed").add_workflow("count", id="c")
    b.add_workflow("greet", id="g", inputs={"who": "{{ steps.c.outputs.n }}"})
    with pytest.raises(ManifestError) as info:
        b.build()
    (d,) = info.value.diagnostics
    assert d.code == "TYPE_MISMATCH" and d.step_id == "g"
    assert "integer" in d.message and "string" in d.message and "'who'" in d.message and "'c'" in d.message
    assert "transform" in (d.hint or "")
    assert "typed" not in [w.name for w in ow.workflows()]  # nothing was registered


def test_the_same_mismatch_in_yaml_points_at_its_line(ow):
    text = "name: greet\ninputs: {who: {type: string}}\nsteps: [{id: g, type: transform, expression: 'hi'}]\n"
    ow.load(text)
    with pytest.raises(ManifestError) as info:
        ow.load(
            "name: m\nsteps:\n  - {id: c, workflow: count}\n  - id: g\n    workflow: greet\n"
            "    with:\n      who: '{{ steps.c.outputs.n }}'\n",
            name="m.yaml",
        )
    (d,) = info.value.diagnostics
    assert (d.code, d.file, d.line) == ("TYPE_MISMATCH", "m.yaml", 7)


def test_untyped_ends_are_not_checked(ow):
    ow.load("name: loose\ninputs: {who: {}}\nsteps: [{id: g, type: transform, expression: '{{ inputs.who }}'}]")
    b = ow.builder("untyped").add_workflow("count", id="c")
    b.add_workflow("loose", id="l", inputs={"who": "{{ steps.c.outputs.n }}"})
    b.add_workflow("fetch", id="f", inputs={"topic": "{{ steps.l.output }}"})  # loose has no typed outputs
    assert b.build().execute().status == "completed"


def test_integer_into_number_is_accepted(ow):
    ow.load("name: num\ninputs: {x: {type: number}}\nsteps: [{id: g, type: transform, expression: '{{ inputs.x }}'}]")
    b = ow.builder("widen").add_workflow("count", id="c")
    b.add_workflow("num", id="n", inputs={"x": "{{ steps.c.outputs.n }}"}, inline=False)
    assert b.build().execute().status == "completed"


def test_built_workflow_is_immutable_and_to_builder_copies_it(ow):
    wf = pipeline(ow).build()
    with pytest.raises(AttributeError):
        wf.add_step({"id": "x", "type": "transform", "expression": "1"})  # type: ignore[attr-defined]
    copy = wf.to_builder()
    copy.add_step({"id": "more", "type": "transform", "expression": "{{ steps['b/sum'].output.result }}?"})
    copy.name = "pipe2"
    copy.outputs({"more": "{{ steps.more.output.result }}"})
    again = copy.build()
    assert len(wf.manifest.steps) == 5 and len(again.manifest.steps) == 6
    assert again.execute(inputs={"t": "a"}).outputs == {"o": "A-X!!", "more": "A-X!!?"}
    assert again.fragments == wf.fragments


def test_inline_and_nested_give_equal_outputs(ow):
    inline = pipeline(ow, "inline").build()
    nested = pipeline(ow, "nested", inline=False).build()
    assert [s.id for s in nested.manifest.steps] == ["prep", "a", "b"]
    assert inline.execute(inputs={"t": "z"}).outputs == nested.execute(inputs={"t": "z"}).outputs == {"o": "Z-X!!"}


def test_yaml_inline_step_expands_and_keeps_lines():
    ow = OpenWorkflow(state=":memory:")
    text = FETCH + (
        "  - name: digest\n"
        "    steps:\n"
        "      - {id: f, workflow: fetch, inline: true, with: {topic: abc}}\n"
        "      - {id: n, workflow: fetch, with: {topic: abc}}\n"
        "    outputs: {same: '{{ steps.f.outputs.summary == steps.n.outputs.summary }}'}\n"
    )
    ow.load(text, name="flow.yaml")
    wf = ow.workflow("digest")
    assert [s.id for s in wf.manifest.steps] == ["f/get", "f/sum", "n"]
    assert wf.execute().outputs == {"same": True}
    bad = text.replace("{{ steps.get.output.result }}!", "{{ steps.nope.output }}")
    with pytest.raises(ManifestError) as info:
        OpenWorkflow(state=":memory:").load(bad, name="flow.yaml")
    lines = {(d.file, d.line, d.step_id) for d in info.value.diagnostics}
    assert ("flow.yaml", 7, "f/sum") in lines  # the fragment's own line, under its prefixed id
    assert ("flow.yaml", 7, "sum") in lines  # and the child itself


def test_plan_and_cli_list_prefixed_ids_with_their_own_backends(ow, tmp_path, capsys):
    text = FETCH.replace(
        "      - {id: sum, type: transform,", "      - {id: sum, type: transform, execution: {backend: native},"
    ) + ("  - name: p\n    steps:\n      - {id: a, workflow: fetch, inline: true, with: {topic: t}}\n")
    path = tmp_path / "flow.yaml"
    path.write_text(text)
    reg = OpenWorkflow(state=":memory:")
    reg.load(path)
    plan = reg.workflow("p").plan()
    assert plan["a/sum"].source != plan["a/get"].source  # the step's own execution block counts
    assert main(["plan", str(path), "--workflow", "p"]) == 0
    out = capsys.readouterr().out
    assert "a/get" in out and "a/sum" in out


def test_approval_inside_an_inlined_part_resumes_in_a_new_process(tmp_path):
    db = tmp_path / "runs.db"
    ow = OpenWorkflow(state=str(db))
    ow.load(CONNECTORS)
    ow.load(APPROVAL_FLOW)
    ow.load(COMPOSED)
    r = ow.workflow("release").execute()
    assert r.status == "waiting_approval" and r.pending[0].step_id == "pay/pay"
    assert handlers.CALLS == {"start": 1, "prepare": 1, "audit": 1}
    ow.close()
    script = RESUME.format(root=str(ROOT), db=str(db), run_id=r.run_id, request=r.pending[0].id)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
    )
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert answer["status"] == "completed" and answer["outputs"] == {"paid": "pay-ada", "after": "done pay-ada"}
    assert answer["calls"] == {"pay-ada": 1, "notify": 1, "finish": 1}  # nothing ran twice
    assert {"pay/prepare", "pay/pay", "pay/notify", "pay/audit"} <= set(answer["stored"])


COMPOSED = """
name: release
steps:
  - {id: start, connector: ops, action: count, input: {name: start}}
  - {id: pay, workflow: payout, inline: true, with: {who: ada}, needs: [start]}
  - {id: finish, connector: ops, action: count, input: {name: finish}, needs: [pay/notify]}
outputs:
  paid: {value: "{{ steps.pay.outputs.paid }}"}
  after: {value: "done {{ steps.pay.outputs.paid }}"}
"""

RESUME = """
import json, sys
sys.path.insert(0, {root!r})
from owf_magics import OpenWorkflow
from tests.test_durable import CONNECTORS, APPROVAL_FLOW
from tests.test_composition import COMPOSED
from tests import handlers
ow = OpenWorkflow(state={db!r})
ow.load(CONNECTORS); ow.load(APPROVAL_FLOW); ow.load(COMPOSED)
r = ow.resume({run_id!r}, approvals={{{request!r}: True}})
stored = list(ow.run({run_id!r}).steps)
print(json.dumps({{"status": r.status, "outputs": r.outputs, "calls": handlers.CALLS, "stored": stored}}))
"""


def test_to_langgraph_of_an_inline_composition_equals_the_native_run(ow):
    pytest.importorskip("langgraph")
    wf = pipeline(ow).build()
    native = wf.execute(inputs={"t": "lg"}).outputs
    state = wf.to_langgraph().invoke({"inputs": {"t": "lg"}})
    assert state["outputs"] == native == {"o": "LG-X!!"}


def test_trace_rows_events_and_graph_views_know_the_parts(ow):
    from owf_magics.notebook.views.graph import to_mermaid, to_text

    wf = pipeline(ow).build()
    r = wf.execute(inputs={"t": "v"})
    rows = {row["step_id"]: row["fragment"] for row in r.trace_rows}
    assert rows == {"prep": "", "a/get": "a", "a/sum": "a", "b/get": "b", "b/sum": "b"}
    done = [e for e in r.events if e.get("type") == "step.execution.completed"]
    assert {e["step_id"]: e["fragment"] for e in done}["b/sum"] == "b"
    text = to_text(wf.plan())
    assert "┆ part a:" in text and "┆ part b:" in text
    mermaid = to_mermaid(wf.plan())
    assert 'subgraph g0["part a"]' in mermaid and 'subgraph g1["part b"]' in mermaid


def test_a_run_stored_by_another_composition_refuses_to_resume(tmp_path):
    from owf_magics.errors import OWFError

    db = tmp_path / "runs.db"
    ow = OpenWorkflow(state=str(db))
    ow.load(CONNECTORS)
    ow.load(APPROVAL_FLOW)
    ow.load(COMPOSED)
    r = ow.workflow("release").execute()
    ow.close()
    other = OpenWorkflow(state=str(db))
    other.load(CONNECTORS)
    other.load(APPROVAL_FLOW)
    other.load(
        COMPOSED.replace("id: pay, workflow", "id: payment, workflow")
        .replace("pay/notify", "payment/notify")
        .replace("steps.pay.", "steps.payment.")
    )
    with pytest.raises(OWFError) as info:
        other.resume(r.run_id, approvals={r.pending[0].id: True})
    assert "another graph" in info.value.message and handlers.CALLS == {"start": 1, "prepare": 1, "audit": 1}
    assert other.run(r.run_id).status == "waiting_approval"


def test_a_stored_runs_trace_keeps_the_fragment(tmp_path):
    ow = OpenWorkflow(state=str(tmp_path / "runs.db"))
    ow.load(FETCH)
    r = pipeline(ow).build().execute(inputs={"t": "s"})
    rows = ow.run(r.run_id).trace_rows
    assert {row["step_id"]: row["fragment"] for row in rows}["b/get"] == "b"


def test_a_part_from_another_file_points_at_the_inline_step(ow, tmp_path):
    (tmp_path / "child.yaml").write_text(
        "name: child\ninputs: {n: {type: integer}}\nsteps:\n  - {id: s, type: transform, expression: '{{ inputs.n }}'}\n"
    )
    ow.load(tmp_path / "child.yaml")
    parent = "name: parent\nsteps:\n  - {id: a, type: transform, expression: '1'}\n  - {id: c, workflow: child, inline: true,\n     with: {n: '{% if true %}1{% endif %}'}}\n"
    with pytest.raises(ManifestError) as info:
        ow.load(parent, name="parent.yaml")
    (d,) = info.value.diagnostics
    assert (d.code, d.file, d.step_id) == ("INVALID_VALUE", "parent.yaml", "c") and d.line == 5
    ok = ow.load(parent.replace("'{% if true %}1{% endif %}'", "'{{ steps.a.output.result }}'"), name="parent.yaml")
    wf = ow.workflow("parent")
    assert ok and [s.id for s in wf.manifest.steps] == ["a", "c/s"]
    assert wf.execute().steps["c/s"].output == {"result": "1"}


def test_an_edge_from_a_part_with_one_exit_leaves_from_that_exit(ow):
    b = pipeline(ow, "exit").add_step({"id": "z", "type": "transform", "expression": "3"}).add_edge("a", "z")
    wf = b.build()
    assert ("a/sum", "z") in {(e.source, e.target) for e in wf.graph.edges}
    assert wf.manifest.steps[-1].needs == ["a/sum"]
