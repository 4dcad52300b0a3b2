"""A batch chunk's results on the wire (owf_magics.api.batch_wire): pickled as `PackedRuns`, they
come back as RunResults whose every public attribute equals the worker's, trace rows and events
included (built when first read); what the packer does not know travels as it is."""

from __future__ import annotations

import gc
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from owf_magics import OpenWorkflow
from owf_magics.api.batch_wire import PackedRuns, fewer_collections, unpacked
from owf_magics.runtime.results import RunResult, StepResult

CONNECTOR = """
connector: {name: batchy, kind: sdk}
actions:
  - {name: nap, handler: {function: tests.batch_handlers.nap}}
  - {name: refuse, handler: {function: tests.batch_handlers.refuse}}
"""

FLOW = """
name: mixed
inputs: {n: {type: integer}}
outputs:
  square: {value: "{{ steps.fetch.output.square }}"}
  label: {value: "{{ steps.label.output.result }}"}
steps:
  - {id: fetch, connector: batchy, action: nap, input: {n: "{{ inputs.n }}"}}
  - {id: check, connector: batchy, action: refuse, input: {n: "{{ inputs.n }}"}, needs: [fetch]}
  - {id: label, type: transform, expression: "item-{{ inputs.n }}", needs: [check]}
  - {id: each, type: forEach, items: "{{ [1, 2] }}", steps: [{id: inner, type: transform, expression: "{{ item }}"}]}
"""

PUBLIC = (
    "run_id",
    "workflow",
    "status",
    "outputs",
    "steps",
    "events",
    "trace_rows",
    "usage_rows",
    "error",
    "pending",
    "duration_ms",
    "last_agent",
    "finished",
    "total_tokens",
    "cost_usd",
    "metrics",
    "error_body",
)


class Special(StepResult):
    """A step result of some other kind (pickled by reference)."""

    __slots__ = ()


@pytest.fixture
def registry():
    ow = OpenWorkflow(state=False)
    ow.load(CONNECTOR)
    ow.load(FLOW)
    yield ow
    ow.close()


def fresh(ow: OpenWorkflow, **options: object) -> list[RunResult]:
    """Five results whose rows are not built yet: inputs 0 and 7 fail (a step raises), "x" is
    refused (a wrong type)."""
    batch = ow.map("mixed", [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 7}, {"n": "x"}], progress=False, **options)
    assert batch.statuses == {"completed": 2, "failed": 3}
    return batch.results


@pytest.fixture
def results(registry):
    return fresh(registry)


def public(r: RunResult) -> dict[str, object]:
    return {name: getattr(r, name) for name in PUBLIC} | {"summary": r.summary_text(), "str": repr(r)}


SCRIPT = """
import pickle, sys
from owf_magics import OpenWorkflow
from owf_magics.api.batch_wire import PackedRuns
ow = OpenWorkflow(state=False)
ow.load(sys.argv[1])
ow.load(sys.argv[2])
batch = ow.map("mixed", [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 7}, {"n": "x"}], progress=False)
kinds = [type(r.deferred).__name__ for r in batch.results]
packed = pickle.dumps(PackedRuns(batch.results))
plain = pickle.dumps(batch.results)  # how results travelled before: each pickled, rows built
sys.stdout.buffer.write(pickle.dumps((kinds, packed, plain)))
"""


def test_a_runs_log_travels_and_builds_the_same_rows_and_events(tmp_path):
    """Outside the test suite's secret canary (which gives every run a secret, so rows travel), a
    run's rows are not built on the worker: its compact log travels and the client builds them."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, CONNECTOR, FLOW], cwd=root, capture_output=True, check=True, timeout=60
    )
    kinds, packed, plain = pickle.loads(done.stdout)
    assert kinds == ["Bookkeeping"] * 4 + ["NoneType"]  # four runs send their log, the refused one nothing
    back, want = pickle.loads(packed), pickle.loads(plain)
    assert [r.deferred is not None for r in back] == [True] * 5  # nothing built yet
    assert [public(r) for r in back] == [public(r) for r in want]
    assert back[3].error is not None and back[3].steps["check"].error is not None  # errors rebuilt
    assert [e["type"] for e in back[1].events][:2] == ["run.started", "step.started"]
    assert back[4].events == [] and back[4].error.code == "VALIDATION"  # refused: no events
    assert len(packed) < len(plain)


def test_packed_results_come_back_equal_in_every_public_attribute(results):
    back = pickle.loads(pickle.dumps(PackedRuns(results)))
    plain = pickle.loads(pickle.dumps(results))
    assert isinstance(back, list) and all(type(r) is RunResult for r in back)
    assert [public(r) for r in back] == [public(r) for r in plain]
    assert back[1].trace_rows[0]["step_id"] == "fetch"


def test_rows_built_already_travel_as_rows(results):
    """A result whose rows were read before it is packed (or pickled before) sends them as they are."""
    want = [public(r) for r in results]  # reads every attribute: the rows are built
    frame = results[1].trace  # and cached as a DataFrame, which does not travel
    back = pickle.loads(pickle.dumps(PackedRuns(results)))
    assert [public(r) for r in back] == want
    assert "_frames" not in vars(back[1]) and back[1].trace.equals(frame)


def test_a_run_with_secrets_sends_its_redacted_rows_never_its_log(registry):
    ran = fresh(registry, secrets={"TOKEN": "s3cr3t-value"})
    back = pickle.loads(pickle.dumps(PackedRuns(ran)))
    assert [public(r) for r in back] == [public(r) for r in ran]
    assert b"s3cr3t-value" not in pickle.dumps(PackedRuns(fresh(registry, secrets={"TOKEN": "s3cr3t-value"})))


def test_trace_rows_and_events_are_built_only_when_read(registry):
    ran = fresh(registry)
    back = pickle.loads(pickle.dumps(PackedRuns(ran)))
    assert all(r.deferred is not None for r in back)  # nothing built yet
    rows = back[2].trace_rows
    assert back[2].deferred is None and rows == ran[2].trace_rows
    assert back[1].deferred is not None  # the others still wait


def test_a_repacked_result_travels_again(registry):
    """A result rebuilt from the wire pickles again (a retry's batch, a result sent on)."""
    ran = fresh(registry)
    once = pickle.loads(pickle.dumps(PackedRuns(ran)))
    twice = pickle.loads(pickle.dumps(PackedRuns(once)))
    again = pickle.loads(pickle.dumps(once))
    assert [public(r) for r in twice] == [public(r) for r in again] == [public(r) for r in ran]


def test_what_the_packer_does_not_know_travels_as_it_is(results):
    first = results[1]
    first.steps["fetch"] = Special("fetch", "success", {"n": 1}, None, 1, "native", 1.0)
    first.session = {"id": "s1"}  # an attribute of its own (an agent run's session)
    back = pickle.loads(pickle.dumps(PackedRuns(results)))
    assert type(back[1].steps["fetch"]) is Special and back[1].session == {"id": "s1"}
    assert public(back[1]) == public(first)


def test_a_chunk_never_pickled_is_the_list_itself(results):
    assert unpacked(PackedRuns(results)) is results
    assert unpacked(tuple(results)) == results


def test_fewer_collections_raises_the_threshold_and_restores_it():
    before = gc.get_threshold()
    with fewer_collections():
        with fewer_collections():  # nested (two chunks on one worker's threads): one restore
            assert gc.get_threshold()[0] == max(before[0], fewer_collections.THRESHOLD)
        assert gc.get_threshold()[0] == max(before[0], fewer_collections.THRESHOLD)
    assert gc.get_threshold() == before
