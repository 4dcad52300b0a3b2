"""Pattern steps in the graph views (a group of their agents) and compiled to LangGraph."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from owf_magics import OpenWorkflow
from owf_magics.notebook.views.graph import to_dot, to_mermaid, to_text
from tests.pattern_fixtures import scripted
from tests.test_patterns import DEBATERS, MAGENTIC, chat_flow, ledger


def managed() -> OpenWorkflow:
    ow = OpenWorkflow(state=":memory:")
    ow.load(
        DEBATERS
        + scripted("lead", "con", "pro", "con")
        + chat_flow(selection={"manager": "lead"}, termination={"maxRounds": 3})
    )
    return ow


def test_a_pattern_step_is_drawn_with_a_group_of_its_agents():
    plan = managed().workflow("debate").plan()
    assert plan.graph.nodes["chat"].members == ("lead (manager)", "pro", "con")
    mermaid = to_mermaid(plan)
    assert 'subgraph n0_agents["groupChat chat: agents"]' in mermaid
    assert 'n0_m0(["lead (manager)"])' in mermaid and "n0 -.- n0_m2" in mermaid
    assert "agents: lead (manager), pro, con" in to_text(plan)
    dot = to_dot(plan)
    assert "subgraph cluster_n0_agents" in dot and 'n0_m1 [label="pro"' in dot
    if shutil.which("dot"):
        assert subprocess.run(["dot", "-Tsvg"], input=dot.encode(), capture_output=True, check=False).returncode == 0


def test_other_steps_draw_no_agent_group():
    ow = OpenWorkflow(state=":memory:")
    ow.load("name: plain\nsteps: [{id: t, type: transform, expression: x}]")
    plan = ow.workflow("plain").plan()
    assert plan.graph.nodes["t"].members == () and "_agents" not in to_mermaid(plan)


@pytest.mark.parametrize("kind", ["groupChat", "magentic"])
def test_to_langgraph_gives_the_native_outputs(kind):
    pytest.importorskip("langgraph")
    if kind == "groupChat":
        ow = managed()
        name = "debate"
    else:
        lead = scripted(
            "lead",
            "PLAN",
            ledger("researcher", "look"),
            ledger("writer", "write"),
            ledger("writer", "", done=True),
            "end",
        )
        ow = OpenWorkflow(state=":memory:")
        ow.load(lead + scripted("researcher", "found") + scripted("writer", "written") + "---\n" + MAGENTIC)
        name = "report"
    wf = ow.workflow(name)
    native = wf.execute()
    state = wf.to_langgraph().invoke({"inputs": {}})
    assert native.status == "completed" and state["outputs"] == native.outputs


def test_a_group_chat_is_a_loop_in_the_state_graph():
    pytest.importorskip("langgraph")
    ow = managed()
    graph = ow.workflow("debate").to_langgraph()
    drawn = graph.get_graph()
    edges = {(e.source, e.target) for e in drawn.edges}
    assert ("chat", "chat") in edges and ("chat", "chat__done") in edges  # the round loops on itself
    state = graph.invoke({"inputs": {}})
    assert state["steps"]["chat"]["output"]["rounds"] == 3
    turns = [row for row in state["trace"] if row["step_id"] == "chat" and row["iteration"]]
    assert [row["iteration"] for row in turns] == ["1.0", "1.1", "2.0", "2.1", "3.0", "3.1"]
