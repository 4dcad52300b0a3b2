"""OpenFlow executor hooks as Python callbacks (formats.openflow.hooks.FlowHooks): each hook gets
the context the SDK's hooks get (node, flowId, executionTime, output / error / outputs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from owf_magics import OpenWorkflow
from owf_magics.errors import OWFError
from owf_magics.formats.openflow.hooks import FlowHooks

CHAIN = {
    "name": "chain",
    "version": "1.0.0",
    "variables": [{"id": "x", "default": ""}],
    "output": ["x"],
    "nodes": [
        {"id": f"u{i}", "type": "UPDATE_VARIABLE", "config": {"type": "join", "variable_id": "x"}, "value": str(i)}
        for i in range(4)
    ],
}
FLOWS = Path(__file__).parent / "openflow"


@pytest.mark.parametrize("backend", ["native", "langchain"])
def test_hooks_see_every_node_in_order_and_the_completion(backend: str) -> None:
    seen: list[tuple[str, Any]] = []
    hooks = FlowHooks(
        before_node=lambda c: seen.append(("before", c["node"]["id"])),
        after_node=lambda c: seen.append(("after", c["node"]["id"])),
        on_complete=lambda c: seen.append(("complete", c["outputs"])),
    )
    ow = OpenWorkflow(state=":memory:")
    ow.load(CHAIN)
    res = ow.workflow("chain").execute(callback=hooks, prefer_backend=backend)
    assert res.outputs == {"x": "0123"}
    assert seen == [(k, f"u{i}") for i in range(4) for k in ("before", "after")] + [("complete", {"x": "0123"})]


def test_hooks_receive_the_node_its_output_and_the_flow_id() -> None:
    after: list[dict[str, Any]] = []
    before: list[dict[str, Any]] = []
    done: list[dict[str, Any]] = []
    hooks = FlowHooks(before_node=before.append, after_node=after.append, on_complete=done.append, flow=CHAIN)
    ow = OpenWorkflow(state=":memory:")
    ow.load(CHAIN)
    res = ow.workflow("chain").execute(callback=hooks)
    assert before[0]["node"] == CHAIN["nodes"][0] and before[0]["flowId"] == res.run_id
    assert after[1]["node"]["value"] == "1"  # the flow's own node definition
    assert after[1]["output"]["new_value"] == "01" and after[1]["output"] == res.steps["u1"].output
    assert all(isinstance(c["executionTime"], float) and c["executionTime"] >= 0 for c in after)
    (complete,) = done
    assert complete["flowId"] == res.run_id and complete["outputs"] == {"x": "0123"}
    assert complete["nodeOutputs"]["u3"]["new_value"] == "0123" and set(complete["nodeOutputs"]) == {
        "u0",
        "u1",
        "u2",
        "u3",
    }


@pytest.mark.parametrize("backend", ["native", "langchain"])
def test_an_llm_nodes_output_is_its_parsed_output(backend: str) -> None:
    after: dict[str, dict[str, Any]] = {}
    path = FLOWS / "llm_two_node.json"
    hooks = FlowHooks(after_node=lambda c: after.setdefault(c["node"]["id"], c), flow=path)
    ow = OpenWorkflow(state=":memory:")
    ow.load(path)
    res = ow.workflow("llm_two_node").execute(inputs={"topic": "cats"}, callback=hooks, prefer_backend=backend)
    assert res.status == "completed"
    assert list(after) == ["summarize", "explain", "keep"]  # one call per node, helpers folded in
    assert after["summarize"]["output"] == {"summary": "short", "words": 1}
    assert (
        after["summarize"]["node"]["type"] == "LLM" and after["summarize"]["node"]["config"]["provider"] == "scripted"
    )
    assert after["explain"]["output"] == {"text": "Explain: short"}


@pytest.mark.parametrize("backend", ["native", "langchain"])
def test_after_node_stop_cancels_the_rest(backend: str) -> None:
    after: list[str] = []

    def stop_after_u1(context: dict[str, Any]) -> str:
        after.append(context["node"]["id"])
        return "STOP" if context["node"]["id"] == "u1" else "CONTINUE"

    ends: list[str] = []
    hooks = FlowHooks(after_node=stop_after_u1, on_complete=lambda c: ends.append(c["event"]["type"]))
    ow = OpenWorkflow(state=":memory:")
    ow.load(CHAIN)
    res = ow.workflow("chain").execute(callback=hooks, prefer_backend=backend)
    assert res.status == "canceled" and hooks.stopped_at == "u1"
    assert after == ["u0", "u1"] and ends == ["run.canceled"]
    assert [res.steps[f"u{i}"].status for i in range(4)] == ["success", "success", "canceled", "canceled"]


def test_on_error_gets_the_error_and_a_failing_hook_does_not_stop_the_flow() -> None:
    errors: list[tuple[str, OWFError]] = []
    flow = dict(
        CHAIN,
        nodes=[{"id": "bad", "type": "UPDATE_VARIABLE", "config": {"type": "append", "variable_id": "x"}, "value": 1}],
    )

    def broken(context: dict[str, Any]) -> None:
        raise RuntimeError("hook bug")

    ow = OpenWorkflow(state=":memory:")
    ow.load(flow)
    hooks = FlowHooks(before_node=broken, on_error=lambda c: errors.append((c["node"]["id"], c["error"])))
    res = ow.workflow("chain").execute(callback=hooks)
    assert res.status == "failed" and [n for n, _ in errors] == ["bad"]
    error = errors[0][1]
    assert isinstance(error, OWFError) and error.code == res.steps["bad"].error.code  # type: ignore[union-attr]


@pytest.mark.parametrize("backend", ["native", "langchain"])
def test_a_condition_starts_before_its_branch_nodes_and_ends_after_them(backend: str) -> None:
    seen: list[tuple[str, str]] = []
    hooks = FlowHooks(
        before_node=lambda c: seen.append(("before", c["node"]["id"])),
        after_node=lambda c: seen.append(("after", c["node"]["id"])),
    )
    ow = OpenWorkflow(state=":memory:")
    ow.load(FLOWS / "conditional.json")
    res = ow.workflow("conditional_logic").execute(inputs={"score": 90}, callback=hooks, prefer_backend=backend)
    assert res.status == "completed"
    grader = [e for e in seen if e[1] in ("grader", "set_a")]
    assert grader == [("before", "grader"), ("before", "set_a"), ("after", "set_a"), ("after", "grader")]
    assert len([e for e in seen if e[0] == "before"]) == len([e for e in seen if e[0] == "after"])


def test_a_failing_helper_step_is_its_nodes_error(tmp_path: Path) -> None:
    errors: list[str] = []
    flow = {
        "name": "pic",
        "version": "1.0.0",
        "variables": [{"id": "out", "default": ""}],
        "output": ["out"],
        "nodes": [
            {
                "id": "see",
                "type": "LLM",
                "config": {"provider": "echo", "model": "e"},
                "messages": [{"type": "image", "role": "user", "image_path": "missing.png"}],
                "output": {"text": {"type": "string"}},
            }
        ],
    }
    ow = OpenWorkflow(state=":memory:", files_root=tmp_path)
    ow.load(flow)
    res = ow.workflow("pic").execute(callback=FlowHooks(on_error=lambda c: errors.append(c["node"]["id"])))
    assert res.status == "failed" and errors == ["see"]
