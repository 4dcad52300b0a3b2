"""Memory and builtin-tool updates made inside a FOR_EACH are merged after the loop, in item order,
as UPDATE_VARIABLE's are (issue 15: formats/openflow/nodes.fold_memory, fold_variables)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from owf_magics import OpenWorkflow
from owf_magics.formats.openflow.nodes import fold_variables


def call(value: str) -> dict[str, Any]:
    return {"tool_calls": [{"name": "set_variable", "args": {"name": "last", "value": value}}]}


def flow(parallel: bool, memory: dict[str, Any] | None = None) -> dict[str, Any]:
    llm = {
        "id": "think",
        "type": "LLM",
        "config": {
            "provider": "scripted",
            "model": "s",
            "tools": {"builtin_tools": ["set_variable"]},
            "responses": [call("seen"), {"content": '{"text": "ok"}'}],
        },
        "messages": [{"type": "text", "role": "user", "text": "Item {{name}}"}],
        "output": {"text": {"type": "string"}},
    }
    mem_config = {"operation": "append", "variable_id": "history", "max_messages": 3} | (memory or {})
    return {
        "name": "loop_state",
        "version": "1.0.0",
        "variables": [
            {"id": "names", "type": "array", "default": ["a", "b", "c"]},
            {"id": "history", "type": "array", "default": [{"role": "system", "content": "start"}]},
            {"id": "last", "type": "string", "default": "none"},
            {"id": "summary", "type": "string", "default": ""},
        ],
        "output": ["history", "last", "summary"],
        "nodes": [
            {
                "id": "each",
                "type": "FOR_EACH",
                "config": {"each_key": "name", "parallel": parallel},
                "input": {"items": "{{@names}}"},
                "each_nodes": [
                    {
                        "id": "mem",
                        "type": "CONVERSATION_MEMORY",
                        "config": mem_config,
                        "input": {"role": "user", "content": "{{name}}"},
                    },
                    llm,
                ],
            },
            {
                "id": "sum",
                "type": "UPDATE_VARIABLE",
                "config": {"type": "update", "variable_id": "summary"},
                "value": "{{@last}} after {{each.processed_items}}, {{@history}}",
            },
        ],
    }


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("backend", ["native", "langchain"])
def test_memory_and_set_variable_inside_a_loop_are_merged_after_it(backend: str, parallel: bool) -> None:
    ow = OpenWorkflow(state=":memory:")
    ow.load(json.dumps(flow(parallel)))
    res = ow.workflow("loop_state").execute(prefer_backend=backend)
    assert res.status == "completed", res.error
    # each iteration appended to the list it saw before the loop; folded in item order, max 3 kept
    assert res.outputs["history"] == [{"role": "user", "content": c} for c in "abc"]
    assert res.outputs["last"] == "seen"  # set by the model in the loop, visible after it
    assert res.outputs["summary"].startswith("seen after 3, [")
    assert "'content': 'c'" in res.outputs["summary"]  # nodes after the loop read the merged list


def test_a_memory_kept_in_a_session_is_the_sessions_list_after_the_loop() -> None:
    ow = OpenWorkflow(state=":memory:")
    ow.load(json.dumps(flow(False, {"session_id": "loop-chat", "max_messages": 10})))
    first = ow.workflow("loop_state").execute()
    assert [m["content"] for m in first.outputs["history"]] == ["a", "b", "c"]  # a session starts empty
    second = ow.workflow("loop_state").execute()
    assert [m["content"] for m in second.outputs["history"]] == ["a", "b", "c", "a", "b", "c"]


def test_set_variable_folds_in_item_order_and_ignores_what_an_iteration_did_not_change() -> None:
    def row(seed: dict[str, Any], table: dict[str, Any]) -> dict[str, Any]:
        return {"output": {"result": {"variables": {"think": {"seed": seed, "set": table}}}}}

    loop = {
        "results": [
            row({"x": 1, "y": "a"}, {"x": 2, "y": "a"}),  # sets x
            row({"x": 1, "y": "b"}, {"x": 1, "y": "b"}),  # sets nothing (y differs only by its seed)
            row({"x": 1, "y": "c"}, {"x": 3, "y": "c", "z": True}),  # sets x and a new z
            {"output": None},  # an iteration that did not finish
        ]
    }
    out = fold_variables({"x": 1, "y": "folded"}, loop, "think")
    assert out == {"variables": {"x": 3, "y": "folded", "z": True}}
