"""OpenFlow executor hooks as Python callbacks (formats.openflow.hooks.FlowHooks)."""

from __future__ import annotations

from typing import Any

import pytest

from owf_magics import OpenWorkflow
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


@pytest.mark.parametrize("backend", ["native", "langchain"])
def test_hooks_see_every_node_in_order_and_the_completion(backend: str) -> None:
    seen: list[tuple[str, str]] = []
    hooks = FlowHooks(
        before_node=lambda n, e: seen.append(("before", n)),
        after_node=lambda n, e: seen.append(("after", n)),
        on_complete=lambda e: seen.append(("complete", e["type"])),
    )
    ow = OpenWorkflow(state=":memory:")
    ow.load(CHAIN)
    res = ow.workflow("chain").execute(callback=hooks, prefer_backend=backend)
    assert res.outputs == {"x": "0123"}
    assert seen == [(k, f"u{i}") for i in range(4) for k in ("before", "after")] + [("complete", "run.completed")]


@pytest.mark.parametrize("backend", ["native", "langchain"])
def test_after_node_stop_cancels_the_rest(backend: str) -> None:
    after: list[str] = []

    def stop_after_u1(node: str, event: dict[str, Any]) -> str:
        after.append(node)
        return "STOP" if node == "u1" else "CONTINUE"

    ends: list[str] = []
    hooks = FlowHooks(after_node=stop_after_u1, on_complete=lambda e: ends.append(e["type"]))
    ow = OpenWorkflow(state=":memory:")
    ow.load(CHAIN)
    res = ow.workflow("chain").execute(callback=hooks, prefer_backend=backend)
    assert res.status == "canceled" and hooks.stopped_at == "u1"
    assert after == ["u0", "u1"] and ends == ["run.canceled"]
    assert [res.steps[f"u{i}"].status for i in range(4)] == ["success", "success", "canceled", "canceled"]


def test_on_error_sees_a_failing_node() -> None:
    errors: list[tuple[str, str]] = []
    flow = dict(
        CHAIN,
        nodes=[{"id": "bad", "type": "UPDATE_VARIABLE", "config": {"type": "append", "variable_id": "x"}, "value": 1}],
    )
    ow = OpenWorkflow(state=":memory:")
    ow.load(flow)
    res = ow.workflow("chain").execute(callback=FlowHooks(on_error=lambda n, e: errors.append((n, e["error"]["code"]))))
    assert res.status == "failed" and [n for n, _ in errors] == ["bad"]
