"""Workflow.to_langgraph(): the whole workflow as a compiled LangGraph StateGraph."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from owf_magics import OpenWorkflow, inline
from owf_magics.errors import OWFError
from owf_magics.testing import corpus_workflows, load_corpus

pytest.importorskip("langgraph")

OW = load_corpus()


@pytest.mark.parametrize("name", corpus_workflows(OW))
def test_compiled_graph_outputs_equal_the_native_run(name):
    wf = OW.workflow(name)
    native = wf.execute()
    graph = wf.to_langgraph()
    if native.status == "failed":
        with pytest.raises(OWFError) as err:
            graph.invoke({"inputs": {}})
        assert (err.value.code, err.value.message) == (native.error.code, native.error.message)
        return
    state = graph.invoke({"inputs": {}}, {"configurable": {"run_id": native.run_id}})
    assert state["outputs"] == native.outputs
    assert sum(u["total_tokens"] for u in state.get("usage", [])) == native.total_tokens
    for sid, res in native.steps.items():
        if sid in state["steps"] and res.status in ("success", "skipped"):
            assert state["steps"][sid]["status"] == res.status, sid


def test_async_invoke_and_inputs():
    wf = OW.workflow("parity-branches")
    state = asyncio.run(wf.to_langgraph().ainvoke({"inputs": {"text": "hi", "level": "high"}}))
    native = wf.execute(inputs={"text": "hi", "level": "high"})
    assert state["outputs"] == native.outputs
    assert state["outputs"]["branch"] == "else" and state["outputs"]["case"] == "high"
    assert state["outputs"]["gated"] == "success"


def test_the_graph_draws_branches_fanouts_and_subgraph_nodes():
    wf = OW.workflow("parity-loops")
    graph = wf.to_langgraph()
    mermaid = graph.get_graph().draw_mermaid()
    for line in (
        "__start__ --> owf__inputs;",
        "each -.-> each__body;",
        "each__body --> each__join;",
        "inline -.-> inline__item;",
        "fan -.-> fan__left;",
        "fan -.-> fan__right;",
        "fan__left --> fan__join;",
        "total --> owf__outputs;",
        "owf__outputs --> __end__;",
    ):
        assert line in mermaid, line
    branches = OW.workflow("parity-branches").to_langgraph().get_graph().draw_mermaid()
    for line in ("long -.-> says_long;", "long -.-> says_short;", "route -.-> med;", "route -.-> other;"):
        assert line in branches, line


def test_retries_compile_to_a_retry_policy(ow):
    from langgraph.types import RetryPolicy

    from tests import handlers

    ow.load("""
connector: {name: t, kind: sdk}
actions: [{name: flaky, input: {type: object}, handler: {function: tests.handlers.flaky}}]
---
name: retrying
inputs: {key: {type: string}}
steps:
  - {id: shaky, connector: t, action: flaky, input: {key: "{{ inputs.key }}", fail_times: 2}, retry: {maxAttempts: 3, initialDelay: 0, backoff: fixed}}
  - {id: tries, type: transform, expression: "{{ steps.shaky.attempts }}"}
outputs: {attempts: {value: "{{ steps.tries.result }}"}, out: {value: "{{ steps.shaky.output }}"}}
""")
    graph = ow.workflow("retrying").to_langgraph()
    policy = graph.builder.nodes["shaky"].retry_policy
    assert isinstance(policy, RetryPolicy) and (policy.max_attempts, policy.backoff_factor) == (3, 1.0)
    handlers.CALLS.pop("lg-retry", None)
    state = graph.invoke({"inputs": {"key": "lg-retry"}})
    handlers.CALLS.pop("native-retry", None)
    native = ow.workflow("retrying").execute(inputs={"key": "native-retry"})
    assert state["outputs"] == native.outputs == {"attempts": 3, "out": {"attempts": 3}}


def test_sub_workflows_compile_to_subgraphs():
    wf = OW.workflow("parity-subflow")
    state = wf.to_langgraph().invoke({"inputs": {"start": 5}})
    assert state["outputs"] == {"answer": 10, "child": {"doubled": 10, "label": "v=10"}}


def test_what_does_not_compile_fails_with_a_clear_error(ow):
    ow.load("""
name: racing
steps:
  - id: race
    type: parallel
    join: any
    branches:
      a: [{id: x, type: transform, expression: "1"}]
      b: [{id: y, type: transform, expression: "2"}]
""")
    with pytest.raises(OWFError) as err:
        ow.workflow("racing").to_langgraph()
    assert err.value.code == "VALIDATION" and "step 'race'" in err.value.message and "join 'any'" in err.value.message
    ow.load("name: waiting\nsteps: [{id: w, type: wait, until: {event: order.shipped}}]")
    with pytest.raises(OWFError, match="step 'w' of workflow 'waiting' does not compile"):
        ow.workflow("waiting").to_langgraph()


def test_secrets_come_from_the_config_and_never_reach_the_outputs(ow):
    ow.load("""
connector: {name: t, kind: sdk}
actions: [{name: echo, input: {type: object}, handler: {function: owf_magics.testing.echo}}]
---
name: secretive
steps:
  - {id: call, connector: t, action: echo, input: {headers: {Authorization: "Bearer {{ secrets.TOKEN }}"}}}
outputs: {o: {value: "{{ steps.call.output }}"}}
""")
    graph = ow.workflow("secretive").to_langgraph()
    state = graph.invoke({"inputs": {}}, {"configurable": {"secrets": {"TOKEN": "sk-very-secret"}}})
    assert state["outputs"] == {"o": {"echo": {"headers": {"Authorization": "Bearer ***"}}}}
    assert "sk-very-secret" not in repr(state["outputs"]) + repr(state.get("trace"))


STEPWISE = """
connector: {name: t, kind: sdk}
actions:
  - {name: count, input: {type: object}, handler: {function: tests.handlers.count}}
  - {name: gate, input: {type: object}, handler: {function: tests.test_compile_langgraph.gate}}
---
name: stepwise
steps:
  - {id: first, connector: t, action: count, input: {name: lg-first}}
  - {id: second, connector: t, action: gate, input: {n: "{{ steps.first.output.calls }}"}}
outputs: {first: {value: "{{ steps.first.output.calls }}"}, second: {value: "{{ steps.second.output }}"}}
"""
OPEN = {"gate": False}


def gate(n: int) -> dict:
    if not OPEN["gate"]:
        raise ConnectionError("the gate is closed")
    return {"passed": n}


def test_sqlite_checkpoints_resume_a_failed_run(tmp_path):
    from owf_magics.runs.store import SQLiteRunStore
    from tests import handlers

    store = SQLiteRunStore(tmp_path / "runs.db")  # the durable run store owns the file first
    ow = OpenWorkflow(state=tmp_path / "runs.db")
    ow.load(STEPWISE)
    graph = ow.workflow("stepwise").to_langgraph(checkpointer=True)
    config = {"configurable": {"thread_id": "run-1"}}
    handlers.CALLS.pop("lg-first", None)
    OPEN["gate"] = False
    with pytest.raises(OWFError, match="the gate is closed"):
        graph.invoke({"inputs": {}}, config)
    with sqlite3.connect(tmp_path / "runs.db") as db:
        assert db.execute("select count(*) from checkpoints where thread_id = 'run-1'").fetchone()[0] >= 2
    OPEN["gate"] = True
    state = graph.invoke(None, config)  # resumes at the failed step: the first one does not run again
    assert state["outputs"] == {"first": 1, "second": {"passed": 1}}
    assert handlers.CALLS["lg-first"] == 1
    assert graph.get_state(config).values["outputs"] == state["outputs"]
    # one file: the durable run store (open on it, in WAL mode) and LangGraph's checkpoints side by side
    with sqlite3.connect(tmp_path / "runs.db") as db:
        tables = {r[0] for r in db.execute("select name from sqlite_master where type = 'table'")}
    assert {"runs", "steps", "checkpoints", "writes"} <= tables
    store.close()


def test_a_checkpointer_path_or_instance(tmp_path):
    from langgraph.checkpoint.memory import InMemorySaver

    ow = OpenWorkflow(state=":memory:")
    ow.load(
        "name: tiny\nsteps: [{id: a, type: transform, expression: '{{ 6 * 7 }}'}]\noutputs: {v: {value: '{{ steps.a.result }}'}}"
    )
    path = tmp_path / "nested" / "lg.db"
    by_path = ow.workflow("tiny").to_langgraph(checkpointer=path)
    assert by_path.invoke({"inputs": {}}, {"configurable": {"thread_id": "t"}})["outputs"] == {"v": 42}
    assert path.exists()
    saver = InMemorySaver()
    graph = ow.workflow("tiny").to_langgraph(checkpointer=saver)
    graph.invoke({"inputs": {}}, {"configurable": {"thread_id": "t2"}})
    assert graph.get_state({"configurable": {"thread_id": "t2"}}).values["outputs"] == {"v": 42}


def test_sync_invoke_inside_a_running_loop_with_a_step_pinned_to_langchain(ow):
    ow.load("""
name: pin
steps:
  - {id: a, type: transform, expression: "{{ 1 + 1 }}", execution: {backend: langchain, runtime: python}}
  - {id: b, type: transform, expression: "{{ steps.a.result * 3 }}"}
outputs: {v: {value: "{{ steps.b.result }}"}}
""")
    graph = ow.workflow("pin").to_langgraph()

    async def in_a_kernel():  # a notebook cell: the loop is running, the call is sync
        return graph.invoke({"inputs": {}})

    state = asyncio.run(in_a_kernel())
    assert state["outputs"] == {"v": 6}
    assert [(row["step_id"], row["backend"]) for row in state["trace"]] == [("a", "langchain"), ("b", "native")]


def test_independent_steps_share_a_superstep_and_branches_join_once(ow):
    from tests import handlers

    ow.load("""
connector: {name: t, kind: sdk}
actions:
  - {name: wait_for_gate, handler: {function: tests.handlers.wait_for_gate}}
  - {name: open_gate, handler: {function: tests.handlers.open_gate}}
---
name: overlap
steps:
  - {id: waiter, connector: t, action: wait_for_gate}
  - {id: opener, connector: t, action: open_gate}
  - id: both
    type: if
    condition: "{{ steps.waiter.output.gate }}"
    then:
      - {id: x, type: transform, expression: "x"}
      - {id: y, type: transform, expression: "y"}
  - {id: after, type: transform, expression: "{{ steps.x.result }}{{ steps.y.result }}", needs: [both]}
outputs: {joined: {value: "{{ steps.after.result }}"}, opened: {value: "{{ steps.opener.output }}"}}
""")
    graph = ow.workflow("overlap").to_langgraph()
    mermaid = graph.get_graph().draw_mermaid()
    assert "both__then__end" in mermaid and "owf__inputs --> opener;" in mermaid
    handlers.GATE.clear()  # waiter blocks until opener has run: only concurrent nodes can finish
    state = graph.invoke({"inputs": {}})
    assert state["outputs"] == {"joined": "xy", "opened": {"opened": True}}
    assert [row["step_id"] for row in state["trace"]].count("after") == 1


@inline
def double_inline(n: int) -> dict:
    return {"n": n * 2}


def test_inline_handlers_run_in_the_node_itself(ow):
    ow.load("""
connector: {name: t, kind: sdk}
actions: [{name: double, input: {type: object}, handler: {function: tests.test_compile_langgraph.double_inline}}]
---
name: inl
steps:
  - {id: a, connector: t, action: double, input: {n: 2}}
  - {id: b, connector: t, action: double, input: {n: "{{ steps.a.output.n }}"}}
outputs: {v: {value: "{{ steps.b.output.n }}"}}
""")
    graph = ow.workflow("inl").to_langgraph()

    async def in_a_kernel():
        return graph.invoke({"inputs": {}})

    assert graph.invoke({"inputs": {}})["outputs"] == {"v": 8} == asyncio.run(in_a_kernel())["outputs"]
    assert ow.workflow("inl").execute().outputs == {"v": 8}


def test_checkpointer_true_without_a_run_store_says_what_to_pass():
    ow = OpenWorkflow(state=False)
    ow.load("name: tiny\nsteps: [{id: a, type: transform, expression: '{{ 1 }}'}]")
    with pytest.raises(OWFError) as err:
        ow.workflow("tiny").to_langgraph(checkpointer=True)
    assert err.value.code == "VALIDATION" and "checkpointer='runs.db'" in err.value.details["suggestion"]


def test_run_budgets_and_confirmations_do_not_compile(ow):
    from tests.test_durable import BUDGET_AGENT

    ow.load(BUDGET_AGENT)
    ow.load(
        "name: budgeted\npolicies: {cost: {maxTokensPerRequest: 32}}\nsteps: [{id: ask, type: agent, agent: spender, input: go}]"
    )
    with pytest.raises(OWFError, match=r"policies\.cost budget spans the whole run"):
        ow.workflow("budgeted").to_langgraph()
    ow.load("""
agents:
  - name: careful
    toolset: [calculator]
    guardrails: {behavior: {requireConfirmation: [calculator_add]}}
    model: {provider: echo}
workflows:
  - name: confirm
    steps: [{id: a, type: agent, agent: careful, input: go}]
""")
    with pytest.raises(OWFError) as err:
        ow.workflow("confirm").to_langgraph()
    assert err.value.code == "VALIDATION" and err.value.details["feature"] == "requireConfirmation"
