"""Adapters build once. The langchain backend builds an agent (its create_agent graph, model and
tools) once and reuses it across steps and runs (a changed agent, a new catalog or a provider variable builds it again);
`to_langgraph()` compiles once per plan."""

from __future__ import annotations

import asyncio
import json

import pytest

from owf_magics import ExecutionContext
from tests.flows import CALCULATOR

pytest.importorskip("langgraph")
pytest.importorskip("langchain.agents")

AGENT = """
agents:
  - name: mathbot
    toolset: [calculator]
    execution: {backend: langchain, runtime: python}
    guardrails: {behavior: {maxToolCalls: 1}}
    model:
      provider: scripted
      responses:
        - tool_calls: [{name: calculator_add, args: {a: 1, b: 2}}]
        - content: "SUM"
workflows:
  - name: ask
    steps:
      - {id: q1, type: agent, agent: mathbot, input: "1 + 2?"}
      - {id: q2, type: agent, agent: mathbot, input: "again", dependsOn: [q1]}
    outputs: {a: {value: "{{ steps.q1.output }}"}, b: {value: "{{ steps.q2.output }}"}}
"""


def cache(ow):
    return ow.backend("langchain")._agents


def test_an_agent_is_built_once_for_every_step_and_run(ow):
    ow.load(CALCULATOR)
    ow.load(AGENT)
    wf = ow.workflow("ask")
    for _ in range(3):
        r = wf.execute()
        assert r.status == "completed", r.steps
        assert r.outputs == {"a": "SUM", "b": "SUM"}
    assert cache(ow).builds == 1


def test_tool_call_limits_count_per_call_not_per_cached_agent(ow):
    """maxToolCalls is 1: each of the six calls makes one tool call, none is over its limit."""
    ow.load(CALCULATOR)
    ow.load(AGENT)
    r = ow.workflow("ask").execute()
    assert r.status == "completed" and r.steps["q2"].status == "success"


def test_concurrent_calls_of_one_cached_agent_keep_their_own_state(ow):
    ow.load(CALCULATOR)
    ow.load(AGENT)
    wf = ow.workflow("ask")

    async def both():
        return await asyncio.gather(wf.aexecute(), wf.aexecute(), wf.aexecute())

    results = asyncio.run(both())
    assert [r.status for r in results] == ["completed"] * 3
    assert len({r.run_id for r in results}) == 3 and cache(ow).builds == 1


def test_a_changed_agent_or_a_new_catalog_builds_again(ow):
    ow.load(CALCULATOR)
    ow.load(AGENT)
    assert ow.workflow("ask").execute().outputs["a"] == "SUM"
    ow.load(AGENT.replace('content: "SUM"', 'content: "TOTAL"'))
    assert ow.workflow("ask").execute().outputs["a"] == "TOTAL"
    assert cache(ow).builds == 2


def test_a_provider_variable_is_part_of_the_key(ow, monkeypatch):
    ow.load(CALCULATOR)
    ow.load(AGENT)
    backend = ow.backend("langchain")
    manifest = ow.agent("mathbot").model.model_dump(mode="json", by_alias=True)
    ctx = ExecutionContext(run_id="r", metadata={"registry": ow})
    first = backend._agents.get(manifest, ctx)
    assert backend._agents.get(manifest, ctx) is first
    monkeypatch.setenv("SCRIPTED_BASE_URL", "http://127.0.0.1:9")
    assert backend._agents.get(manifest, ctx) is not first


def test_the_graph_of_a_cached_agent_does_not_run_outside_a_backend_call(ow):
    ow.load(CALCULATOR)
    ow.load(AGENT)
    ow.workflow("ask").execute()
    [built] = cache(ow)._built.values()
    from langchain_core.messages import HumanMessage

    with pytest.raises(Exception, match="outside a backend call"):
        asyncio.run(built.graph.ainvoke({"messages": [HumanMessage("1 + 2?")]}))


FLOW = """
name: twice
inputs: {n: {type: number, default: 2}}
steps:
  - {id: a, type: transform, expression: "{{ inputs.n * 2 }}"}
outputs: {r: {value: "{{ steps.a.result }}"}}
"""


def test_to_langgraph_compiles_once_per_plan(ow, tmp_path):
    ow.load(FLOW)
    wf = ow.workflow("twice")
    graph = wf.to_langgraph()
    assert wf.to_langgraph() is graph
    assert graph.invoke({"inputs": {"n": 5}})["outputs"] == {"r": 10}
    assert wf.to_langgraph(name="other") is not graph
    saver = tmp_path / "lg.db"
    assert wf.to_langgraph(checkpointer=saver) is wf.to_langgraph(checkpointer=str(saver))
    ow.load(FLOW.replace("inputs.n * 2", "inputs.n * 3"))  # a new catalog: a new plan, a new graph
    again = ow.workflow("twice").to_langgraph()
    assert again is not graph and again.invoke({"inputs": {"n": 5}})["outputs"] == {"r": 15}


def test_a_cached_agent_answers_an_unknown_tool_as_native(ow):
    """The scripted model calls a tool the agent lacks, sees the answer, then calls the real one:
    the run completes on the langchain backend exactly as on native."""
    ow.load(CALCULATOR)
    ow.load(
        AGENT.replace(
            "        - tool_calls: [{name: calculator_add, args: {a: 1, b: 2}}]\n",
            "        - tool_calls: [{name: calculator_nope, args: {}}]\n"
            "        - tool_calls: [{name: calculator_add, args: {a: 1, b: 2}}]\n",
        ).replace("maxToolCalls: 1", "maxToolCalls: 2")
    )
    on_langchain = ow.workflow("ask").execute()
    native = ow.workflow("ask").execute(prefer_backend="native")
    assert on_langchain.status == native.status == "completed"
    assert on_langchain.outputs == native.outputs == {"a": "SUM", "b": "SUM"}
    [built] = cache(ow)._built.values()
    answer = built.graph.nodes["tools"].bound._validate_tool_call({"name": "calculator_nope", "id": "c1", "args": {}})
    assert answer.status == "error" and answer.tool_call_id == "c1"
    assert json.loads(answer.content) == {"error": "unknown tool 'calculator_nope'", "tools": ["calculator_add"]}
