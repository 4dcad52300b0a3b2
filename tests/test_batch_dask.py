"""ow.map on a real Dask LocalCluster (2 worker processes): 500 inputs equal to the in-process
batch, a worker killed mid-batch, and a batch whose workers write to PostgreSQL."""

from __future__ import annotations

import os
import re
import signal
from collections import Counter

import pytest

from owf_magics import OpenWorkflow
from tests.test_batch import CONNECTOR, FLOW

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")


def registry(state: str) -> OpenWorkflow:
    ow = OpenWorkflow(state=state)
    ow.load(CONNECTOR)
    ow.load(FLOW)
    return ow


def test_500_inputs_on_the_cluster_equal_the_in_process_batch(dask_client, tmp_path):
    ow = registry(str(tmp_path / "runs.db"))
    inputs = [{"n": n} for n in range(500)]
    progress = []
    on_dask = ow.map("scored", inputs, client=dask_client, progress=lambda d, t: progress.append((d, t)))
    here = ow.map("scored", inputs)
    assert on_dask.statuses == {"completed": 500} and "on Dask" in repr(on_dask)
    assert [r.outputs for r in on_dask.results] == [r.outputs for r in here.results]
    assert [r.outputs["square"] for r in on_dask.results] == [n * n for n in range(500)]
    assert list(on_dask.trace["step_id"]) == list(here.trace["step_id"])  # same trace order
    assert {r.steps["fetch"].output["pid"] for r in on_dask.results} != {os.getpid()}  # ran on workers
    assert progress[-1] == (500, 500) and len(progress) > 1
    assert on_dask.dashboard == dask_client.dashboard_link and on_dask.dashboard in repr(on_dask)
    ow.close()


def test_a_killed_worker_has_its_runs_redone_and_every_input_completes_once(dask_client, tmp_path):
    db = str(tmp_path / "runs.db")
    ow = registry(db)
    pids = dask_client.run(os.getpid)
    victim = sorted(pids.values())[0]
    killed = []

    def kill_once(done: int, total: int) -> None:
        if done >= 10 and not killed:
            os.kill(victim, signal.SIGKILL)  # the worker process dies mid-batch: no cleanup
            killed.append(done)

    inputs = [{"n": n, "wait": 0.05} for n in range(160)]
    batch = ow.map("scored", inputs, client=dask_client, chunk_size=5, concurrency=5, progress=kill_once)
    assert killed, "the worker was never killed"
    assert batch.statuses == {"completed": 160}
    assert [r.outputs["square"] for r in batch.results] == [n * n for n in range(160)]
    completed = [r.run_id for r in ow.store.list_runs(status="completed")]
    per_input = Counter(re.sub(r"\.\d+$", "", rid) for rid in completed if rid.startswith(batch.batch_id))
    assert len(per_input) == 160 and set(per_input.values()) == {1}  # exactly one completed run each
    ow.close()


def test_a_batch_on_the_cluster_writes_to_postgresql(dask_client, postgres_url):
    ow = registry(postgres_url)
    batch = ow.map("scored", [{"n": n} for n in range(60)], client=dask_client)
    assert batch.statuses == {"completed": 60}
    reader = OpenWorkflow(state=postgres_url)  # another process's view of the shared store
    runs = reader.runs()
    assert set(runs["run_id"]) == {r.run_id for r in batch.results}
    assert set(runs["status"]) == {"completed"}
    assert reader.run(batch.results[59].run_id).outputs["square"] == 59 * 59
    reader.close()
    ow.close()


def test_cluster_local_starts_and_closes_a_cluster_for_the_call(tmp_path):
    ow = registry(str(tmp_path / "runs.db"))
    batch = ow.map("scored", [{"n": n} for n in range(8)], cluster="local")
    assert [r.outputs["square"] for r in batch.results] == [n * n for n in range(8)]
    assert "on Dask" in repr(batch)
    ow.close()


def test_file_inputs_on_the_cluster_use_the_registrys_files_root(dask_client, tmp_path):
    """The workers' registries get the same files_root (their working directory may differ)."""
    root = tmp_path / "data"
    root.mkdir()
    (root / "a.txt").write_text("x")
    flow = (
        "name: filed\ninputs: {doc: {type: file}}\nsteps:\n  - {id: t, type: transform, template: '{{ inputs.doc }}'}\n"
    )
    flow += "outputs: {path: {value: '{{ inputs.doc }}'}}\n"
    ow = OpenWorkflow(state=False, files_root=root)
    ow.load(flow)
    batch = ow.map("filed", [{"doc": "a.txt"}, {"doc": "../outside.txt"}], client=dask_client)
    assert [r.status for r in batch.results] == ["completed", "failed"]
    assert batch.results[0].outputs == {"path": str(root / "a.txt")}
