"""Each run's own scratch directory: removed when the run completes, fails, is canceled or stops to
wait, made afresh on resume; nothing is left in the system temp directory (issue 25, item 2)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest

from owf_magics import OpenWorkflow

CONNECTOR = """
name: scratch
kind: sdk
actions:
  - {name: write, handler: {function: tests.scratch_handlers.write}}
  - {name: read, handler: {function: tests.scratch_handlers.read}}
  - {name: fail, handler: {function: tests.scratch_handlers.write_then_fail}}
  - {name: sleep, handler: {function: tests.scratch_handlers.write_then_sleep}}
"""
GATE = """
name: gate
kind: sdk
approval: {required: always, timeout: 3600, onTimeout: reject}
actions:
  - {name: write, handler: {function: tests.scratch_handlers.write}}
"""


@pytest.fixture
def tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system temp directory, for this test: empty, and checked after the run."""
    temp = tmp_path / "systemp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return temp


def registry(flow: str, state: str = ":memory:") -> OpenWorkflow:
    ow = OpenWorkflow(state=state)
    ow.load(CONNECTOR)
    ow.load(GATE)
    ow.load(flow)
    return ow


def test_steps_of_a_run_share_its_scratch_and_a_completed_run_leaves_nothing(tmp: Path) -> None:
    flow = """
name: share
steps:
  - {id: w, connector: scratch, action: write, input: {name: a.txt}}
  - {id: r, connector: scratch, action: read, input: {path: "{{ steps.w.output.path }}"}, needs: [w]}
"""
    res = registry(flow).workflow("share").execute()
    assert res.status == "completed"
    assert res.steps["r"].output == {"there": True, "same_dir": True}
    assert Path(res.steps["w"].output["dir"]).parent == tmp  # it was in the temp directory
    assert list(tmp.iterdir()) == []


def test_a_run_that_fails_after_writing_to_its_scratch_leaves_nothing(tmp: Path) -> None:
    flow = """
name: broken
steps:
  - {id: w, connector: scratch, action: write, input: {name: a.txt}}
  - {id: f, connector: scratch, action: fail, input: {name: b.txt}, needs: [w]}
"""
    res = registry(flow).workflow("broken").execute()
    assert res.status == "failed" and res.steps["f"].status == "failed"
    assert Path(res.steps["w"].output["path"]).parent.parent == tmp
    assert list(tmp.iterdir()) == []


def test_a_canceled_run_leaves_nothing(tmp: Path) -> None:
    flow = """
name: slow
steps:
  - {id: s, connector: scratch, action: sleep, input: {name: c.txt}}
"""
    wf = registry(flow).workflow("slow")

    async def cancel_midway() -> str:
        task = asyncio.ensure_future(wf.aexecute())
        for _ in range(500):  # until the handler has written its file
            await asyncio.sleep(0.01)
            if any(tmp.iterdir()):
                break
        assert any(tmp.iterdir())
        task.cancel()
        return (await task).status

    assert asyncio.run(cancel_midway()) == "canceled"
    assert list(tmp.iterdir()) == []


def test_a_timed_out_run_leaves_nothing(tmp: Path) -> None:
    flow = """
name: late
timeout: 1s
steps:
  - {id: s, connector: scratch, action: sleep, input: {name: d.txt}}
"""
    res = registry(flow).workflow("late").execute()
    assert res.status == "failed" and res.error is not None and res.error.code == "TIMEOUT"
    assert list(tmp.iterdir()) == []


def test_a_waiting_run_leaves_nothing_and_its_resume_gets_a_new_scratch(tmp: Path, tmp_path: Path) -> None:
    flow = """
name: approve
steps:
  - {id: before, connector: scratch, action: write, input: {name: e.txt}}
  - {id: gated, connector: gate, action: write, input: {name: f.txt}, needs: [before]}
"""
    ow = registry(flow, state=str(tmp_path / "runs.db"))
    first = ow.workflow("approve").execute()
    assert first.status == "waiting_approval"
    assert list(tmp.iterdir()) == []
    (request,) = first.pending
    resumed = ow.resume(first.run_id, approvals={request.id: True})
    assert resumed.status == "completed"
    made = Path(resumed.steps["gated"].output["dir"])
    assert made.parent == tmp and made != Path(first.steps["before"].output["dir"])
    assert list(tmp.iterdir()) == []


def test_a_run_that_never_asks_for_scratch_makes_no_directory(tmp: Path) -> None:
    ow = OpenWorkflow(state=":memory:")
    ow.load("name: plain\nsteps:\n  - {id: t, type: transform, template: hi}\n")
    assert ow.workflow("plain").execute().status == "completed"
    assert list(tmp.iterdir()) == []
