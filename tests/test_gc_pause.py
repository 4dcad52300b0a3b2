"""Hot-path shortcuts keep their promises: the collector paused only while direct steps run back
to back (and restored whatever happens), and a handler redefined between runs is the one called."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from owf_magics import OpenWorkflow, inline

SEEN: list[tuple[str, bool]] = []


@inline
def gc_state(tag: str) -> dict[str, Any]:
    SEEN.append((tag, gc.isenabled()))
    return {"tag": tag}


async def gc_state_async(tag: str) -> dict[str, Any]:
    SEEN.append((tag, gc.isenabled()))
    return {"tag": tag}


@inline
def fail(tag: str) -> None:
    raise RuntimeError(f"boom {tag}")


@inline
def version() -> int:
    return 1


CONNECTOR = """
connector: {name: g, kind: sdk}
actions:
  - {name: state, handler: {function: tests.test_gc_pause.gc_state}}
  - {name: astate, handler: {function: tests.test_gc_pause.gc_state_async}}
  - {name: fail, handler: {function: tests.test_gc_pause.fail}}
  - {name: version, handler: {function: tests.test_gc_pause.version}}
"""
FLOW = """
name: mixed
steps:
  - {id: a, connector: g, action: state, input: {tag: a}}
  - {id: b, connector: g, action: state, input: {tag: b}, dependsOn: [a]}
  - {id: c, connector: g, action: astate, input: {tag: c}, dependsOn: [b]}
  - {id: d, connector: g, action: state, input: {tag: d}, dependsOn: [c]}
"""
FAILING = """
name: failing
steps:
  - {id: a, connector: g, action: state, input: {tag: a}}
  - {id: b, connector: g, action: fail, input: {tag: b}, dependsOn: [a]}
"""


@pytest.fixture
def ow() -> Iterator[OpenWorkflow]:
    reg = OpenWorkflow(state=False)
    reg.load(CONNECTOR)
    SEEN.clear()
    yield reg
    reg.close()
    gc.enable()


def test_collector_paused_only_between_direct_steps(ow: OpenWorkflow) -> None:
    ow.load(FLOW)
    assert gc.isenabled()
    res = ow.workflow("mixed").execute()
    assert res.status == "completed"
    # inline steps run with the collector paused; an awaited handler runs with it on
    assert SEEN == [("a", False), ("b", False), ("c", True), ("d", False)]
    assert gc.isenabled()


def test_collector_restored_after_a_failure(ow: OpenWorkflow) -> None:
    ow.load(FAILING)
    res = ow.workflow("failing").execute()
    assert res.status == "failed"
    assert res.steps["b"].error is not None and "boom b" in res.steps["b"].error.message
    assert gc.isenabled()


def test_collector_left_off_when_the_program_turned_it_off(ow: OpenWorkflow) -> None:
    ow.load(FLOW)
    gc.disable()
    res = ow.workflow("mixed").execute()
    assert res.status == "completed"
    assert all(not enabled for _, enabled in SEEN)
    assert not gc.isenabled()


def test_a_redefined_handler_is_called_in_the_next_run(ow: OpenWorkflow) -> None:
    ow.load(
        "name: v\nsteps:\n  - {id: a, connector: g, action: version}\noutputs: {v: {value: '{{ steps.a.output }}'}}\n"
    )
    wf = ow.workflow("v")
    assert wf.execute().outputs["v"] == 1
    module = sys.modules[__name__]
    original = module.version

    @inline
    def version() -> int:
        return 2

    module.version = version  # type: ignore[attr-defined]  # what re-running a notebook cell does
    try:
        assert wf.execute().outputs["v"] == 2
    finally:
        module.version = original  # type: ignore[attr-defined]
    assert wf.execute().outputs["v"] == 1
