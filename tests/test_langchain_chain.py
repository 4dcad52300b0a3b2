"""Consecutive steps handed to the langchain backend run as one LangGraph invocation, and give the
same results, trace rows, events and checkpoints as one invocation per step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langgraph")

from owf_magics import OpenWorkflow

CONNECTOR = """
connector: {name: t, kind: sdk}
actions:
  - {name: echo, handler: {function: tests.handlers.echo}}
  - {name: boom, handler: {function: tests.handlers.boom}}
  - {name: noop, handler: {function: tests.handlers.noop_inline}}
"""
FLOW = """
name: flow
inputs: {word: {type: string, default: hi}}
steps:
  - {id: a, connector: t, action: echo, input: {w: "{{ inputs.word }}"}}
  - {id: b, connector: t, action: noop, dependsOn: [a]}
  - {id: c, type: transform, expression: "{{ steps.a.output.echo.w | upper }}", dependsOn: [b]}
  - {id: left, connector: t, action: echo, input: {x: "{{ steps.c.output.result }}"}}
  - {id: right, connector: t, action: echo, input: {y: 1}, dependsOn: [c]}
  - {id: bad, connector: t, action: boom, input: {message: no}, dependsOn: [right], continueOnError: true}
  - {id: after, type: transform, expression: "{{ steps.bad.status }}", dependsOn: [bad, left]}
  - {id: never, connector: t, action: boom, dependsOn: [after], condition: "{{ false }}"}
outputs:
  left: {value: "{{ steps.left.output }}"}
  after: {value: "{{ steps.after.output.result }}"}
"""
FAILING = """
name: failing
steps:
  - {id: a, connector: t, action: noop}
  - {id: b, connector: t, action: boom, input: {message: stop}, dependsOn: [a]}
  - {id: c, connector: t, action: noop, dependsOn: [b]}
"""


@pytest.fixture(params=["file store", "no store"])
def ow(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[OpenWorkflow]:
    reg = OpenWorkflow(state=str(tmp_path / "runs.db") if request.param == "file store" else False)
    reg.load(CONNECTOR)
    reg.load(FLOW)
    reg.load(FAILING)
    yield reg
    reg.close()


def _unchained(ow: OpenWorkflow) -> Any:
    backend = ow.backend("langchain")
    backend.arun_chain = None  # the engine then hands each step over on its own
    return backend


def _timeless(value: Any) -> Any:
    """`value` without times and run or event ids (which differ between two runs)."""
    if isinstance(value, dict):
        return {
            k: _timeless(v)
            for k, v in value.items()
            if k not in {"started_at", "duration_ms", "timestamp", "event_id", "run_id"}
        }
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


def _no_traceback(error: Any) -> Any:
    if error is None:
        return None
    return (error.code, error.message, {k: v for k, v in error.details.items() if k != "traceback"})


def _shape(result: Any) -> tuple[Any, ...]:
    """What must not change: outputs, step results, trace rows and events without times and ids."""
    # a traceback's text is not compared: a failing one-node graph adds LangGraph's note with the
    # id of its task ("During task with name 'step' and id ..."), different in every run
    steps = {k: (v.status, v.output, _no_traceback(v.error), v.attempts, v.backend) for k, v in result.steps.items()}
    return result.status, result.outputs, steps, _timeless(result.trace_rows), _timeless(result.events)


def _graphs(run: Any) -> list[str]:
    import langgraph.pregel

    seen: list[str] = []
    real = langgraph.pregel.Pregel.ainvoke

    async def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(self.name)
        return await real(self, *args, **kwargs)

    langgraph.pregel.Pregel.ainvoke = spy  # type: ignore[method-assign]
    try:
        run()
    finally:
        langgraph.pregel.Pregel.ainvoke = real  # type: ignore[method-assign]
    return seen


def test_a_chain_gives_what_one_invocation_per_step_gives(ow: OpenWorkflow) -> None:
    wf = ow.workflow("flow")
    events: list[dict[str, Any]] = []
    results: list[Any] = []
    chained_graphs = _graphs(lambda: results.append(wf.execute(prefer_backend="langchain", callback=events.append)))
    chained = results[-1]
    _unchained(ow)
    plain_events: list[dict[str, Any]] = []
    plain_graphs = _graphs(lambda: results.append(wf.execute(prefer_backend="langchain", callback=plain_events.append)))
    plain = results[-1]
    assert chained.status == "completed"
    assert chained.outputs == {"left": {"echo": {"x": "HI"}}, "after": "failed"}
    assert chained.steps["never"].status == "skipped"
    assert _shape(chained) == _shape(plain)
    # the callback saw the same events (in an order concurrent steps may interleave differently)
    assert sorted(map(repr, _timeless(events))) == sorted(map(repr, _timeless(plain_events)))
    # a, b, c in one invocation; right, bad in another (left starts in its own task): no step graph
    assert "owf-step" not in chained_graphs and 1 < chained_graphs.count("owf-chain") < 7
    assert plain_graphs.count("owf-step") == 7 and "owf-chain" not in plain_graphs


def test_checkpoints_of_a_chain_resume_like_any_run(ow: OpenWorkflow) -> None:
    wf = ow.workflow("flow")
    first = wf.execute(prefer_backend="langchain")
    store = ow.store
    if store is None:
        pytest.skip("a run without a store keeps no checkpoints")
    rows = {k: r.status for k, r in store.get_steps(first.run_id).items()}
    assert rows["a"] == rows["b"] == rows["c"] == rows["left"] == "success"
    assert rows["bad"] == "failed" and rows["never"] == "skipped"


def test_a_failure_in_a_chain_stops_it(ow: OpenWorkflow) -> None:
    res = ow.workflow("failing").execute(prefer_backend="langchain")
    assert res.status == "failed"
    assert [res.steps[s].status for s in "abc"] == ["success", "failed", "skipped"]
    assert res.error is not None and "stop" in res.error.message
    trace = res.steps["b"].error.details.get("traceback", "")  # type: ignore[union-attr]
    assert trace.rstrip().endswith("RuntimeError: stop")  # the handler's own, as native reports it
    _unchained(ow)
    plain = ow.workflow("failing").execute(prefer_backend="langchain")
    assert _shape(res) == _shape(plain)
