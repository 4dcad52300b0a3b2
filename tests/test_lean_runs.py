"""A finished run leaves no garbage cycles, and lazy bookkeeping and the direct path (steps that
never wait, run without coroutines) give the same results, trace and events as the full path."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from owf_magics import OpenWorkflow

CONNECTOR = """
connector: {name: t, kind: sdk}
actions:
  - {name: inline, handler: {function: tests.handlers.thread_name_inline}}
  - {name: echo, handler: {function: tests.handlers.echo}}
  - {name: slow, handler: {function: tests.handlers.thread_name_async}}
  - {name: boom, handler: {function: tests.handlers.boom}}
"""

FLOWS = {
    "chain": """
name: chain
inputs: {text: {type: string, default: a b c}}
steps:
  - {id: a0, connector: t, action: inline}
  - {id: a, connector: t, action: echo, input: {x: "{{ inputs.text }}"}, dependsOn: [a0]}
  - {id: b, type: transform, expression: "{{ steps.a.output.echo.x | upper }}", dependsOn: [a]}
  - {id: c, type: transform, expression: "{{ steps.b.output.result }}!", dependsOn: [b]}
  - {id: d, type: transform, expression: "never", condition: "{{ false }}", dependsOn: [c]}
outputs: {shout: {value: "{{ steps.c.output.result }}"}}
""",
    "fanout": """
name: fanout
steps:
  - {id: a, connector: t, action: slow}
  - {id: b, connector: t, action: slow}
  - {id: c, connector: t, action: echo, input: {n: 1}}
  - {id: d, type: transform, expression: "{{ steps.a.output }}", dependsOn: [a, b, c]}
""",
    "foreach": """
name: foreach
inputs: {xs: {type: array, default: [1, 2, 3]}}
steps:
  - id: loop
    type: forEach
    items: "{{ inputs.xs }}"
    steps:
      - {id: double, type: transform, expression: "{{ item * 2 }}"}
      - {id: label, type: transform, expression: "{{ index }}:{{ steps.double.output.result }}", dependsOn: [double]}
  - id: waits
    type: forEach
    items: "{{ inputs.xs }}"
    steps:
      - {id: nap, connector: t, action: slow}
outputs: {labels: {value: "{{ steps.loop.output.results }}"}}
""",
    "failure": """
name: failure
steps:
  - {id: a, type: transform, expression: "ok"}
  - {id: b, connector: t, action: boom, input: {message: bad}, dependsOn: [a]}
  - {id: c, type: transform, expression: "{{ steps.b.output }}", dependsOn: [b]}
  - {id: d, connector: t, action: slow}
""",
}


@pytest.fixture
def ow() -> Iterator[OpenWorkflow]:
    ow = OpenWorkflow(state=False)
    ow.load(CONNECTOR)
    for text in FLOWS.values():
        ow.load(text)
    yield ow


ENGINE_TYPES = {"RunContext", "RunResult", "StepResult", "Frame", "_Block", "Task", "coroutine", "Context"}


@pytest.mark.parametrize("name", list(FLOWS))
def test_a_finished_run_leaves_no_cycles_for_the_collector(ow: OpenWorkflow, name: str) -> None:
    wf = ow.workflow(name)
    first = wf.execute()  # compile templates, build the plan
    assert first.status == ("failed" if name == "failure" else "completed")
    gc.collect()
    # objects that existed before this run are not its garbage (whatever an earlier test left
    # for the collector may become garbage during this window)
    before = {id(o) for o in gc.get_objects()}
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        result = wf.execute()
        assert len(result.steps) >= 4
        result.trace_rows  # noqa: B018  (built on first read, then freed with the result)
        del result
        gc.collect()
        garbage = [o for o in gc.garbage if id(o) not in before]
        found = [type(o).__name__ for o in garbage if type(o).__name__ in ENGINE_TYPES]
        owned = [o for o in garbage if type(o).__module__.startswith("owf_magics")]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert found == []
    assert owned == []


def test_the_collector_test_sees_a_cycle_when_there_is_one(ow: OpenWorkflow) -> None:
    """The check above can fail: a result kept in a cycle is found."""
    wf = ow.workflow("chain")
    wf.execute()
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        result = wf.execute()
        loop: list[Any] = [result]
        loop.append(loop)
        del result, loop
        gc.collect()
        found = {type(o).__name__ for o in gc.garbage}
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert {"RunResult", "StepResult"} <= found


TIMES = {"timestamp", "started_at", "duration_ms"}


def _plain(value: Any) -> Any:
    """Without the wall-clock fields (when and how long), which differ from run to run."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k not in TIMES}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@pytest.mark.parametrize("name", list(FLOWS))
def test_lazy_bookkeeping_gives_what_a_callback_sees(ow: OpenWorkflow, name: str) -> None:
    wf = ow.workflow(name)
    seen: list[dict[str, Any]] = []
    eager = wf.execute(run_id="run_eager", callback=seen.append)  # a callback: built as they happen
    lazy = wf.execute(run_id="run_eager")  # no callback, no store: built when read
    assert lazy.status == eager.status
    assert lazy.outputs == eager.outputs
    assert {k: (s.status, s.output, s.error, s.attempts) for k, s in lazy.steps.items()} == {
        k: (s.status, s.output, s.error, s.attempts) for k, s in eager.steps.items()
    }
    assert _plain(lazy.trace_rows) == _plain(eager.trace_rows)
    assert _plain(lazy.events) == _plain(eager.events)
    assert sorted(e["event_id"] for e in lazy.events) == sorted(e["event_id"] for e in seen)
    assert list(lazy.trace.columns)[:6] == ["run_id", "step_id", "type", "backend", "backend_source", "status"]
    types = {e["type"] for e in lazy.events}
    assert {"run.started", "step.started", "step.execution.completed"} <= types


def test_lazy_events_keep_their_time_and_redact_secrets(ow: OpenWorkflow) -> None:
    ow.load('name: secret\nsteps: [{id: a, type: transform, expression: "{{ inputs.word }}"}]\ninputs: {word: {}}')
    result = ow.workflow("secret").execute(inputs={"word": "hunter2!"}, secrets={"pw": "hunter2!"})
    done = [e for e in result.events if e["type"] == "step.execution.completed"]
    assert done[0]["result"]["output"] == {"result": "***"}
    assert result.trace_rows[0]["started_at"].endswith("Z") and "T" in result.trace_rows[0]["started_at"]
    assert done[0]["timestamp"] == result.trace_rows[0]["started_at"]


FOREACH = """
name: each
inputs: {{xs: {{type: array}}}}
steps:
  - id: loop
    type: forEach
    items: "{{{{ inputs.xs }}}}"
    steps:
      - {{id: half, type: transform, expression: "{{{{ 10 // item }}}}"{retry}}}
      - {{id: tag, type: transform, expression: "{{{{ steps.half.output.result }}}}-{{{{ isLast }}}}", dependsOn: [half]}}
    continueOnError: true
"""


def test_a_direct_forEach_body_gives_what_the_task_per_item_body_gives() -> None:
    """A transform with a retry policy runs on the full path: same results, trace and events."""
    one, two = OpenWorkflow(state=False), OpenWorkflow(state=False)
    one.load(FOREACH.format(retry=""))
    two.load(FOREACH.format(retry=", retry: {maxAttempts: 1}"))
    xs = [1, 2, 0, 5]  # 10 // 0 fails: that item's tag is skipped, the others go on
    direct = one.workflow("each").execute(inputs={"xs": xs}, run_id="same")
    full = two.workflow("each").execute(inputs={"xs": xs}, run_id="same")
    assert direct.steps["loop"].output["errorCount"] == 1
    assert [r.get("output") for r in direct.steps["loop"].output["results"]] == [
        {"result": "10-false"},
        {"result": "5-false"},
        None,
        {"result": "2-true"},
    ]
    assert direct.steps["loop"].output == full.steps["loop"].output
    assert _plain(direct.trace_rows) == _plain(full.trace_rows)
    assert _plain(direct.events) == _plain(full.events)
    assert [r["iteration"] for r in direct.trace_rows if r["step_id"] == "tag"] == ["0", "1", "2", "3"]


def test_a_lazy_result_pickles_with_its_trace_and_events(ow: OpenWorkflow) -> None:
    import pickle

    result = ow.workflow("chain").execute()
    copy = pickle.loads(pickle.dumps(result))
    assert copy.status == "completed" and copy.outputs == result.outputs
    assert [r["step_id"] for r in copy.trace_rows] == ["a0", "a", "b", "c", "d"]
    assert copy.events == result.events
