"""A batch's rate limits hold across Dask workers: one limiter (a Dask actor) for the whole batch,
and a batch whose limiter's worker dies goes on with each worker's own limiter."""

from __future__ import annotations

import itertools
import os
import signal

import pytest

from owf_magics import OpenWorkflow
from owf_magics.agents.limits import LimitSpec, Rate
from owf_magics.api.batch_limits import BatchLimiter
from owf_magics.errors import OWFError

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")

AGENT = """
type: agent
name: paced
policies: {rateLimit: {requestsPerMinute: 120, burst: 1}}
model:
  provider: scripted
  responses:
    - content: "ok"
      usage: {prompt_tokens: 3, completion_tokens: 1}
"""

CONNECTOR = """
connector: {name: batchy, kind: sdk}
actions:
  - {name: nap, handler: {function: tests.batch_handlers.nap}}
"""

FLOW = """
name: paced_flow
inputs: {n: {type: integer}}
outputs:
  answer: {value: "{{ steps.ask.output }}"}
  pid: {value: "{{ steps.where.output.pid }}"}
steps:
  - {id: where, connector: batchy, action: nap, input: {n: "{{ inputs.n }}"}}
  - {id: ask, type: agent, agent: paced, input: "question {{ inputs.n }}", needs: [where]}
"""


def registry(state: str) -> OpenWorkflow:
    ow = OpenWorkflow(state=state)
    for text in (CONNECTOR, AGENT, FLOW):
        ow.load(text)
    return ow


def agent_turns(batch) -> list[float]:
    """When each agent step got past the limiter: its end (a scripted turn takes no time), in s."""
    import pandas as pd

    trace = batch.trace
    rows = trace[trace["step_id"] == "ask"]
    ends = pd.to_datetime(rows["started_at"]) + pd.to_timedelta(rows["duration_ms"].astype(float), unit="ms")
    return sorted(t.timestamp() for t in ends)


def test_a_rate_limit_holds_for_the_whole_batch_across_workers(dask_client, tmp_path):
    ow = registry(str(tmp_path / "runs.db"))
    batch = ow.map("paced_flow", [{"n": n} for n in range(8)], client=dask_client, chunk_size=1)
    assert batch.statuses == {"completed": 8}
    assert len({r.outputs["pid"] for r in batch.results}) == 2  # both workers ran agent steps
    starts = agent_turns(batch)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # 120 requests a minute with a burst of 1: one agent turn every 0.5 s for the whole batch (a
    # limiter per worker would let two turns start together, one on each worker)
    assert min(gaps) > 0.4, gaps
    assert starts[-1] - starts[0] >= 7 * 0.5 - 0.1
    assert batch.limiter == {"reservations": 8, "keys": ["agent:local/paced"]}
    ow.close()


def test_without_limits_no_acquisition_reaches_the_actor(dask_client, tmp_path):
    ow = registry(str(tmp_path / "runs.db"))
    ow.load(
        AGENT.replace("name: paced", "name: free").replace(
            "policies: {rateLimit: {requestsPerMinute: 120, burst: 1}}\n", ""
        )
    )
    ow.load(FLOW.replace("name: paced_flow", "name: free_flow").replace("agent: paced", "agent: free"))
    batch = ow.map("free_flow", [{"n": n} for n in range(6)], client=dask_client, chunk_size=1)
    assert batch.statuses == {"completed": 6}
    assert batch.limiter == {"reservations": 0, "keys": []}
    ow.close()


def test_a_batch_whose_limiter_worker_dies_still_completes_every_input(dask_client, tmp_path):
    ow = registry(str(tmp_path / "runs.db"))
    killed: list[int] = []

    def holders(dask_worker) -> tuple[int, bool]:
        return os.getpid(), bool(dask_worker.state.actors)

    def kill_the_limiter(done: int, total: int) -> None:
        if done >= 2 and not killed:
            for pid, has_actor in dask_client.run(holders).values():
                if has_actor:
                    os.kill(pid, signal.SIGKILL)  # the worker hosting the batch's limiter dies
                    killed.append(pid)

    inputs = [{"n": n} for n in range(8)]
    batch = ow.map("paced_flow", inputs, client=dask_client, chunk_size=1, progress=kill_the_limiter)
    assert killed, "the limiter's worker was never found"
    assert batch.statuses == {"completed": 8}
    assert sorted(r.outputs["answer"] for r in batch.results) == ["ok"] * 8
    assert batch.limiter is None  # lost with its worker: each worker went on with its own
    ow.close()


def test_reservations_follow_the_rate_and_refuse_what_can_never_fit():
    limiter = BatchLimiter()
    spec = LimitSpec(requests=(Rate(120, 60.0, 2),), tokens=(Rate(100, 60.0),))
    delays = [limiter.reserve("agent:x", spec, 1, 0, 0) for _ in range(4)]
    assert delays[0] == 0 and delays[1] == 0  # a burst of 2
    assert delays[2] == pytest.approx(0.5, abs=0.05) and delays[3] == pytest.approx(1.0, abs=0.05)
    assert limiter.try_reserve("agent:x", spec, 1, 0, 0) is False  # would have to wait: nothing booked
    assert limiter.reserve("agent:y", spec, 1, 0, 0) == 0  # keys are independent
    with pytest.raises(OWFError) as info:
        limiter.reserve("agent:x", spec, 1, 1000, 0)  # 1,000 tokens never fit a bucket of 100
    assert info.value.code == "VALIDATION"
    assert limiter.stats() == {"reservations": 5, "keys": ["agent:x", "agent:y"]}
