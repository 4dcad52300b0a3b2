"""ow.map in this process: results in input order, frame/trace/usage, failed inputs that never fail
the batch, retry_failed, progress, and the same outputs run after run."""

from __future__ import annotations

import pytest

from owf_magics import OpenWorkflow
from owf_magics.errors import OWFError

CONNECTOR = """
connector: {name: batchy, kind: sdk}
actions:
  - {name: nap, handler: {function: tests.batch_handlers.nap}}
  - {name: refuse, handler: {function: tests.batch_handlers.refuse}}
"""

FLOW = """
name: scored
inputs: {n: {type: integer}, wait: {type: number, default: 0}}
outputs:
  square: {value: "{{ steps.fetch.output.square }}"}
  label: {value: "{{ steps.label.output.result }}"}
steps:
  - {id: fetch, connector: batchy, action: nap, input: {n: "{{ inputs.n }}", seconds: "{{ inputs.wait }}"}}
  - {id: label, type: transform, expression: "item-{{ inputs.n }}", needs: [fetch]}
"""

PICKY = """
name: picky
inputs: {n: {type: integer}}
outputs: {n: {value: "{{ steps.check.output.n }}"}}
steps:
  - {id: check, connector: batchy, action: refuse, input: {n: "{{ inputs.n }}"}}
"""


@pytest.fixture
def ow(tmp_path):
    ow = OpenWorkflow(state=str(tmp_path / "runs.db"))
    ow.load(CONNECTOR)
    ow.load(FLOW)
    ow.load(PICKY)
    yield ow
    ow.close()


def test_results_come_back_in_input_order_with_a_frame(ow):
    seen = []
    batch = ow.map(
        "scored", [{"n": n, "wait": 0.01 * (n % 3)} for n in range(40)], progress=lambda d, t: seen.append((d, t))
    )
    assert [r.outputs["square"] for r in batch.results] == [n * n for n in range(40)]
    assert batch.statuses == {"completed": 40} and batch.failed == []
    frame = batch.frame
    assert list(frame["index"]) == list(range(40))
    assert list(frame["square"]) == [n * n for n in range(40)]
    assert list(frame["label"]) == [f"item-{n}" for n in range(40)]
    assert {"run_id", "status", "duration_ms", "tokens", "cost_usd", "error_code"} <= set(frame.columns)
    trace = batch.trace
    assert set(trace["run_id"]) == {r.run_id for r in batch.results}
    assert list(trace[trace["index"] == 3]["step_id"]) == [row["step_id"] for row in batch.results[3].trace_rows]
    assert "run_id" in batch.usage.columns or batch.usage.empty
    assert seen[-1] == (40, 40) and len(seen) == 40  # progress after every run
    assert "40 runs (40 completed)" in repr(batch) and "in-process" in repr(batch)
    stored = ow.runs()
    assert set(stored["run_id"]) >= {r.run_id for r in batch.results}  # every run is in the store


def test_a_failed_input_never_fails_the_batch_and_retry_runs_only_those(ow):
    inputs = [{"n": n} for n in range(1, 16)] + [{"n": "not a number"}]
    batch = ow.map("picky", inputs)
    failed = [i for i, row in enumerate(inputs) if row["n"] == "not a number" or row["n"] % 7 == 0]
    assert batch.failed == failed
    assert batch.results[-1].error.code == "VALIDATION"  # an input the workflow refuses
    assert batch.results[6].status == "failed" and batch.results[6].error is not None
    assert list(batch.frame["error_code"].isna()) == [i not in failed for i in range(len(inputs))]
    assert "retry_failed()" in repr(batch)
    kept = {i: batch.results[i].run_id for i in range(len(inputs)) if i not in failed}
    again = batch.retry_failed()
    assert again.failed == failed  # still failing: they fail for good reasons
    assert {i: again.results[i].run_id for i in kept} == kept  # the completed ones were not re-run
    assert all(again.results[i].run_id != batch.results[i].run_id for i in failed)


def test_the_same_inputs_give_the_same_outputs_and_trace_order(ow):
    inputs = [{"n": n, "wait": 0.005 * (7 - n % 7)} for n in range(30)]
    first, second = ow.map("scored", inputs, concurrency=4), ow.map("scored", inputs, concurrency=30)
    assert [r.outputs for r in first.results] == [r.outputs for r in second.results]
    assert list(first.trace["step_id"]) == list(second.trace["step_id"])


def test_a_bad_cluster_is_a_structured_error(ow):
    with pytest.raises(OWFError) as err:
        ow.map("scored", [{"n": 1}], cluster="somewhere")
    assert err.value.code == "VALIDATION"
