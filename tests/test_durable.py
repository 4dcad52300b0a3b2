"""Durable runs end to end: checkpoints, waiting and approvals, resume (also in a new process and
after a killed one), replay, fork, the run list, callbacks, the run queue and OpenTelemetry."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from owf_magics import OpenWorkflow
from owf_magics.errors import OWFError
from tests import handlers
from tests.conftest import ROOT
from tests.flows import CALCULATOR
from tests.local_http import JSONHandler, serve

CONNECTORS = """
connectors:
  - name: ops
    kind: sdk
    actions:
      - {name: count, handler: {function: tests.handlers.count}}
      - {name: log, handler: {function: tests.handlers.log_call}}
  - name: bank
    kind: sdk
    approval: {required: always, timeout: 3600, onTimeout: reject}
    actions:
      - {name: pay, handler: {function: tests.handlers.count}}
"""

APPROVAL_FLOW = """
name: payout
inputs: {who: {type: string, default: ada}}
steps:
  - {id: prepare, connector: ops, action: count, input: {name: prepare}}
  - {id: pay, connector: bank, action: pay, input: {name: "pay-{{ inputs.who }}"}, needs: [prepare]}
  - {id: notify, connector: ops, action: count, input: {name: notify}, needs: [pay]}
  - {id: audit, connector: ops, action: count, input: {name: audit}}
outputs:
  paid: {value: "{{ steps.pay.output.name }}"}
"""


@pytest.fixture(autouse=True)
def _reset():
    handlers.CALLS.clear()


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "runs.db"


def registry(path) -> OpenWorkflow:
    ow = OpenWorkflow(state=str(path))
    ow.load(CONNECTORS)
    ow.load(APPROVAL_FLOW)
    return ow


def test_approval_waits_then_resumes_without_redoing_steps(store_path):
    ow = registry(store_path)
    r = ow.workflow("payout").execute()
    assert r.status == "waiting_approval"
    [request] = r.pending
    assert request.kind == "approval" and request.step_id == "pay"
    assert request.payload["connector"] == "bank" and request.payload["input"] == {"name": "pay-ada"}
    assert [r.steps[s].status for s in ("prepare", "pay", "notify", "audit")] == [
        "success",
        "waiting",
        "pending",  # never started: only the step that asked waits
        "success",
    ]
    assert handlers.CALLS == {"prepare": 1, "audit": 1}
    assert ow.runs().set_index("run_id").loc[r.run_id, "status"] == "waiting_approval"

    done = ow.resume(r.run_id, approvals={request.id: True})
    assert done.status == "completed" and done.outputs == {"paid": "pay-ada"}
    # nothing that had completed ran again; what waited ran once
    assert handlers.CALLS == {"prepare": 1, "audit": 1, "pay-ada": 1, "notify": 1}
    assert done.events[0]["type"] == "run.started"
    assert "run.resumed" in [e["type"] for e in done.events]
    assert ow.run(r.run_id).status == "completed"
    with pytest.raises(Exception, match="is completed"):
        ow.resume(r.run_id)


def test_rejected_approval_fails_the_step(store_path):
    ow = registry(store_path)
    r = ow.workflow("payout").execute()
    done = ow.resume(r.run_id, approvals={r.pending[0].id: False})
    assert done.status == "failed"
    assert done.steps["pay"].error.code == "CANCELED" and done.steps["pay"].error.details["reason"] == "rejected"
    assert done.steps["notify"].status == "skipped"
    assert "pay-ada" not in handlers.CALLS


def test_unknown_request_id_is_refused_and_loses_nothing(store_path):
    ow = registry(store_path)
    r = ow.workflow("payout").execute()
    with pytest.raises(Exception, match="no open request 'nope'"):
        ow.resume(r.run_id, approvals={"nope": True})
    assert ow.run(r.run_id).status == "waiting_approval"
    assert ow.resume(r.run_id, approvals={r.pending[0].id: True}).status == "completed"


def test_agent_tool_confirmation(store_path):
    ow = OpenWorkflow(state=str(store_path))
    ow.load(CALCULATOR)
    ow.load("""
type: agent
name: clerk
toolset: [calculator]
guardrails: {behavior: {requireConfirmation: [calculator_add]}}
model:
  provider: scripted
  responses:
    - tool_calls: [{name: calculator_add, args: {a: 2, b: 3}}]
    - content: "done"
---
name: sums
steps: [{id: ask, type: agent, agent: clerk, input: "2 + 3"}]
""")
    r = ow.workflow("sums").execute()
    assert r.status == "waiting_approval"
    [request] = r.pending
    assert request.payload == {"agent": "clerk", "tool": "calculator_add", "args": {"a": 2, "b": 3}}
    done = ow.resume(r.run_id, approvals={request.id: True})
    assert done.status == "completed" and done.steps["ask"].output == "done"


def test_wait_for_event_resumes_by_name(store_path):
    ow = OpenWorkflow(state=str(store_path))
    ow.load("""
name: waits
steps:
  - {id: hold, type: wait, until: {event: order.paid}}
  - {id: after, type: transform, expression: "{{ steps.hold.eventReceived.amount * 2 }}", needs: [hold]}
outputs: {doubled: {value: "{{ steps.after.result }}"}}
""")
    r = ow.workflow("waits").execute()
    assert r.status == "waiting_approval" and r.pending[0].payload == {"event": "order.paid"}
    done = ow.resume(r.run_id, event={"order.paid": {"amount": 21}})
    assert done.status == "completed" and done.outputs == {"doubled": 42}


RESUME_SCRIPT = """
import json, sys
sys.path.insert(0, {root!r})
from owf_magics import OpenWorkflow
from tests.test_durable import CONNECTORS, APPROVAL_FLOW
ow = OpenWorkflow(state={db!r})
ow.load(CONNECTORS)
ow.load(APPROVAL_FLOW)
from tests import handlers
r = ow.resume({run_id!r}, approvals={{{request!r}: True}})
print(json.dumps({{"status": r.status, "outputs": r.outputs, "calls": handlers.CALLS}}))
"""


def test_resume_in_a_new_process(store_path):
    ow = registry(store_path)
    r = ow.workflow("payout").execute()
    ow.close()
    script = RESUME_SCRIPT.format(root=str(ROOT), db=str(store_path), run_id=r.run_id, request=r.pending[0].id)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
    )
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert answer["status"] == "completed" and answer["outputs"] == {"paid": "pay-ada"}
    assert answer["calls"] == {"pay-ada": 1, "notify": 1}  # the new process ran only what was left


KILL_FLOW = """
name: long
steps:
  - {id: a, connector: ops, action: log, input: {name: a, path: "{{ inputs.log }}"}}
  - {id: b, connector: ops, action: log, input: {name: b, path: "{{ inputs.log }}"}, needs: [a]}
  - {id: c, connector: ops, action: log, input: {name: c, path: "{{ inputs.log }}", hold: "{{ inputs.hold }}"}, needs: [b]}
  - {id: d, connector: ops, action: log, input: {name: d, path: "{{ inputs.log }}"}, needs: [c]}
  - {id: e, connector: ops, action: log, input: {name: e, path: "{{ inputs.log }}"}, needs: [d]}
inputs: {log: {type: string}, hold: {type: string, default: ""}}
outputs: {last: {value: "{{ steps.e.output.done }}"}, first: {value: "{{ steps.a.output.done }}"}}
"""

KILL_SCRIPT = """
import json, sys
sys.path.insert(0, {root!r})
from owf_magics import OpenWorkflow
from owf_magics.runs.store import SQLiteRunStore
from tests.test_durable import CONNECTORS, KILL_FLOW
ow = OpenWorkflow(state=SQLiteRunStore({db!r}, lease_seconds=LEASE))
ow.load(CONNECTORS)
ow.load(KILL_FLOW)
if {mode!r} == "run":
    ow.workflow("long").execute(inputs={{"log": {log!r}, "hold": {hold!r}}}, run_id="killed-run")
else:
    r = ow.resume("killed-run")  # no force: the dead process's lease expired
    print(json.dumps({{"status": r.status, "outputs": r.outputs}}))
""".replace("LEASE", "2.0")


def test_killed_process_resumes_redoing_only_the_step_in_flight(tmp_path, store_path):
    log, hold = tmp_path / "calls.log", tmp_path / "hold"
    hold.touch()  # step c blocks while this file exists

    def script(mode: str) -> list[str]:
        code = KILL_SCRIPT.format(root=str(ROOT), db=str(store_path), log=str(log), hold=str(hold), mode=mode)
        return [sys.executable, "-c", code]

    child = subprocess.Popen(script("run"), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while "c" not in (log.read_text().split() if log.exists() else []):  # c is in flight
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            assert time.monotonic() < deadline, "the run never reached step c"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
        for stream in (child.stdout, child.stderr):
            if stream:
                stream.close()
    observer = OpenWorkflow(state=str(store_path))
    assert observer.run("killed-run").status == "running"
    with pytest.raises(OWFError, match="lease held until") as refused:  # the lease outlives its process a while
        observer.resume("killed-run", force=True)
    assert refused.value.details["pid"] == child.pid
    while observer.store.get_run("killed-run").lease_alive:  # 2 s after the last renewal
        time.sleep(0.1)
    observer.close()
    hold.unlink()

    out = subprocess.run(script("resume"), capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert log.read_text().split() == ["a", "b", "c", "c", "d", "e"]  # only c ran twice
    # the same outputs as an uninterrupted run
    fresh = OpenWorkflow(state=":memory:")
    fresh.load(CONNECTORS)
    fresh.load(KILL_FLOW)
    whole = fresh.workflow("long").execute(inputs={"log": str(log), "hold": str(hold)})
    assert answer["status"] == "completed" and answer["outputs"] == whole.outputs


def test_replay_serves_recorded_outputs_and_fails_loudly_when_inputs_differ(store_path):
    ow = registry(store_path)
    ow.load(
        """
name: plain
inputs: {who: {type: string, default: ada}}
steps:
  - {id: one, connector: ops, action: count, input: {name: "one-{{ inputs.who }}"}}
  - {id: two, connector: ops, action: count, input: {name: "two"}, needs: [one]}
outputs: {calls: {value: "{{ steps.one.output.calls + steps.two.output.calls }}"}}
"""
    )
    first = ow.workflow("plain").execute()
    assert first.outputs == {"calls": 2} and handlers.CALLS == {"one-ada": 1, "two": 1}
    again = ow.replay(first.run_id)
    assert again.run_id != first.run_id and again.status == "completed"
    assert again.outputs == first.outputs
    assert handlers.CALLS == {"one-ada": 1, "two": 1}  # no handler ran
    stored = ow.runs().set_index("run_id")
    assert stored.loc[again.run_id, "status"] == "completed"

    # the manifest changes what step one sends: the replay no longer matches the record
    ow.load(
        """
name: plain
inputs: {who: {type: string, default: ada}}
steps:
  - {id: one, connector: ops, action: count, input: {name: "uno-{{ inputs.who }}"}}
  - {id: two, connector: ops, action: count, input: {name: "two"}, needs: [one]}
"""
    )
    broken = ow.replay(first.run_id)
    assert broken.status == "failed"
    assert broken.steps["one"].error.code == "VALIDATION"
    assert "replay diverged at step 'one'" in broken.steps["one"].error.message
    assert "one-ada" in broken.steps["one"].error.message and "uno-ada" in broken.steps["one"].error.message
    assert handlers.CALLS == {"one-ada": 1, "two": 1}


def test_fork_keeps_results_before_the_step(store_path):
    ow = registry(store_path)
    ow.load(
        """
name: three
steps:
  - {id: one, connector: ops, action: count, input: {name: one}}
  - {id: two, connector: ops, action: count, input: {name: two}, needs: [one]}
  - {id: three, connector: ops, action: count, input: {name: three}, needs: [two]}
outputs: {calls: {value: "{{ [steps.one.output.calls, steps.two.output.calls, steps.three.output.calls] }}"}}
"""
    )
    first = ow.workflow("three").execute()
    assert first.outputs == {"calls": [1, 1, 1]}
    forked = ow.fork(first.run_id, from_step="two")
    assert forked.status == "completed" and forked.run_id != first.run_id
    assert forked.outputs == {"calls": [1, 2, 2]}  # one kept its result; two and three ran again
    assert handlers.CALLS == {"one": 1, "two": 2, "three": 2}
    with pytest.raises(Exception, match="has no step 'nine'"):
        ow.fork(first.run_id, from_step="nine")


def test_runs_frame_and_prune(store_path):
    ow = registry(store_path)
    ow.load("name: quick\nsteps: [{id: x, type: transform, expression: '{{ 1 }}'}]")
    ids = [ow.workflow("quick").execute().run_id for _ in range(3)]
    frame = ow.runs()
    assert set(ids) <= set(frame["run_id"]) and (frame.set_index("run_id").loc[ids, "status"] == "completed").all()
    assert {"run_id", "workflow", "status", "started_at", "finished_at"} <= set(frame.columns)
    assert ow.prune(older_than=0) >= 3
    assert not set(ids) & set(ow.runs()["run_id"])


def test_state_false_keeps_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ow = OpenWorkflow(state=False)
    ow.load("name: quick\nsteps: [{id: x, type: transform, expression: '{{ 1 }}'}]")
    assert ow.workflow("quick").execute().status == "completed"
    assert not (tmp_path / ".owf").exists()
    with pytest.raises(Exception, match="keeps no runs"):
        ow.runs()


def test_default_store_is_under_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ow = OpenWorkflow()
    ow.load("name: quick\nsteps: [{id: x, type: transform, expression: '{{ 1 }}'}]")
    r = ow.workflow("quick").execute()
    ow.close()
    assert (tmp_path / ".owf" / "runs.db").exists()
    assert OpenWorkflow().run(r.run_id).status == "completed"


def test_stdout_and_http_callbacks(ow, capsys):
    ow.load("name: quick\nsteps: [{id: x, type: transform, expression: '{{ 1 }}'}]")
    ow.workflow("quick").execute(callback="stdout")
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert " started: quick@1.0.0" in lines[0] and "step x started" in lines[1]
    assert "step x: success" in lines[2] and " completed in " in lines[3]

    received = []

    class Hook(JSONHandler):
        def do_POST(self):
            received.append(self.read_json())
            self.send_json({"ok": True})

    with serve(Hook) as base:
        r = ow.workflow("quick").execute(callback=f"{base}/hook", secrets={"K": "s3cr3t-value"})
    types = [e["type"] for e in received]
    assert types == [e["type"] for e in r.events]  # every event, in order, all delivered by the end
    assert all(set(e) == {"type", "timestamp", "payload", "metadata"} for e in received)
    assert "s3cr3t-value" not in json.dumps(received)


def test_submitted_runs_queue_fifo_at_the_limit():
    ow = OpenWorkflow(state=":memory:", max_concurrent_runs=3)
    ow.load("""
name: nap
inputs: {i: {type: integer}}
steps: [{id: x, type: wait, duration: 0.01}]
outputs: {i: {value: "{{ inputs.i }}"}}
""")
    handles = [ow.submit("nap", {"i": i}) for i in range(200)]
    results = [h.result(timeout=120) for h in handles]
    assert [r.outputs["i"] for r in results] == list(range(200))
    assert all(r.status == "completed" for r in results)
    starts = [h.started_at for h in handles]
    assert starts == sorted(starts)  # started in submission order
    assert [r.run_id for r in results] == [h.run_id for h in handles]
    assert sorted(h.run_id for h in handles) == [h.run_id for h in handles]  # ids sort as submitted
    # run.started, step.started, step.execution.completed, run.completed: in each result and in the store
    assert all(
        [e["type"] for e in r.events] == ["run.started", "step.started", "step.execution.completed", "run.completed"]
        for r in results
    )
    assert all(len(ow.store.get_events(h.run_id)) == 4 for h in handles)
    status = ow.queue_status()
    assert status.completed == 200 and not status.running and not status.queued
    ow.close()


def test_opentelemetry_spans_when_a_provider_is_configured(ow):
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    ow.load(
        textwrap.dedent("""
        name: traced
        steps:
          - {id: a, type: transform, expression: "{{ 1 }}"}
          - {id: b, type: transform, expression: "{{ 2 }}", needs: [a]}
    """)
    )
    from owf_magics.runs import telemetry

    original = trace.get_tracer_provider
    try:
        trace.get_tracer_provider = lambda: provider  # type: ignore[assignment]
        assert telemetry.tracing_configured()
        r = ow.workflow("traced").execute()
    finally:
        trace.get_tracer_provider = original  # type: ignore[assignment]
    spans = exporter.get_finished_spans()
    names = sorted(s.name for s in spans)
    assert len(spans) == 3, names
    steps = [s for s in spans if s.attributes.get("step.id")]
    assert {s.attributes["step.id"] for s in steps} == {"a", "b"}
    assert all(s.attributes["backend.name"] == "native" for s in steps)
    run_span = next(s for s in spans if not s.attributes.get("step.id"))
    assert all(s.parent.span_id == run_span.context.span_id for s in steps)
    assert r.status == "completed"


BUDGET_AGENT = (
    CALCULATOR
    + """
---
type: agent
name: spender
toolset: [calculator]
model:
  provider: scripted
  responses:
    - tool_calls: [{name: calculator_add, args: {a: 2, b: 3}}]
      usage: {prompt_tokens: 20, completion_tokens: 10}
    - content: "5"
      usage: {prompt_tokens: 25, completion_tokens: 5}
"""
)


def test_a_run_budget_stops_before_the_turn_that_would_cross_it(ow):
    ow.load(BUDGET_AGENT)
    ow.load("""
name: budgeted
policies: {cost: {maxTokensPerRequest: 32}}
steps:
  - {id: ask, type: agent, agent: spender, input: "2 + 3"}
  - {id: after, type: transform, expression: done, needs: [ask]}
""")
    r = ow.workflow("budgeted").execute()
    assert r.status == "failed"
    error = r.steps["ask"].error
    assert error.code == "CANCELED" and error.details["reason"] == "budget"
    assert error.details.get("step_id") == "ask"
    assert r.steps["after"].status == "skipped"
    # the trace shows where: the agent step, with the first turn's 30 tokens spent and no second turn
    row = r.trace.set_index("step_id").loc["ask"]
    assert row["error_code"] == "CANCELED" and row["total_tokens"] == 30
    assert r.usage["total_tokens"].tolist() == [30]


def test_a_step_budget_and_an_unlimited_run(ow):
    ow.load(BUDGET_AGENT)
    ow.load("""
name: fits
steps:
  - {id: ask, type: agent, agent: spender, input: "2 + 3", guardrails: {maxTokens: 1000}}
""")
    r = ow.workflow("fits").execute()
    assert r.status == "completed" and r.steps["ask"].output == "5"
    assert r.usage["total_tokens"].sum() == 60


def test_agent_rate_limit_waits_for_the_clock(ow):
    import asyncio

    from owf_magics.agents.limits import ManualClock, RateLimiter

    clock = ManualClock()
    ow._limiter = RateLimiter(clock=clock)  # a clock the test moves by hand: no sleeping
    ow.load(BUDGET_AGENT.replace("name: spender", "name: spender\npolicies: {rateLimit: {requestsPerMinute: 1}}"))
    ow.load("name: limited\nsteps: [{id: ask, type: agent, agent: spender, input: '2 + 3'}]")

    async def main():
        task = asyncio.ensure_future(ow.workflow("limited").aexecute())
        for _ in range(500):  # the first turn goes at once; the second waits for the minute to pass
            await asyncio.sleep(0.005)
            if clock.sleepers:
                break
        assert clock.sleepers == 1 and not task.done()
        clock.advance(60)
        return await asyncio.wait_for(task, 10)

    r = asyncio.run(main())
    assert r.status == "completed" and r.steps["ask"].output == "5"


def test_inline_loop_iterations_resume_one_by_one(store_path):
    ow = OpenWorkflow(state=str(store_path))
    ow.load("""
connectors:
  - {name: ops, kind: sdk, actions: [{name: count, handler: {function: tests.handlers.count}}]}
  - name: gate
    kind: sdk
    approval: {required: always}
    actions: [{name: pass, handler: {function: tests.handlers.count}}]
---
name: loop
steps:
  - id: each
    connector: ops
    action: count
    input: {name: "item-{{ item }}"}
    for_each: "{{ [1, 2, 3] }}"
  - {id: gate, connector: gate, action: pass, input: {name: gate}, needs: [each]}
""")
    r = ow.workflow("loop").execute()
    assert r.status == "waiting_approval" and handlers.CALLS == {"item-1": 1, "item-2": 1, "item-3": 1}
    done = ow.resume(r.run_id, approvals={r.pending[0].id: True})
    assert done.status == "completed"
    assert handlers.CALLS == {"item-1": 1, "item-2": 1, "item-3": 1, "gate": 1}  # no iteration ran again
    assert [o["name"] for o in done.steps["each"].output] == ["item-1", "item-2", "item-3"]


# -- regressions found in review ---------------------------------------------------------------


def test_resume_keeps_the_records_it_serves_and_event_ids_stay_unique(store_path):
    ow = registry(store_path)
    r = ow.workflow("payout").execute()
    done = ow.resume(r.run_id, approvals={r.pending[0].id: True})
    assert ow.store.get_steps(r.run_id)["prepare"].input == {"name": "prepare"}  # not overwritten by the resume
    assert ow.replay(r.run_id).status == "completed"  # so a replay of the resumed run matches
    ids = [e["event_id"] for e in done.events]
    assert len(ids) == len(set(ids))


def test_a_running_run_resumes_only_with_force(store_path):
    ow = registry(store_path)
    r = ow.workflow("payout").execute()
    ow.store.set_status(r.run_id, "running")  # as if another process were running it
    with pytest.raises(Exception, match="force=True"):
        ow.resume(r.run_id, approvals={r.pending[0].id: True})
    assert handlers.CALLS.get("pay-ada") is None
    assert ow.resume(r.run_id, approvals={r.pending[0].id: True}, force=True).status == "completed"


def test_an_approval_covers_only_the_input_it_was_given_for(store_path):
    ow = OpenWorkflow(state=str(store_path))
    ow.load(CONNECTORS)
    ow.load("""
type: agent
name: payer
toolset: [bank]
model:
  provider: scripted
  responses:
    - tool_calls: [{name: bank_pay, args: {name: "10 to alice"}}]
    - tool_calls: [{name: bank_pay, args: {name: "9999 to mallory"}}]
    - content: done
---
name: pays
steps: [{id: ask, type: agent, agent: payer, input: pay}]
""")
    r = ow.workflow("pays").execute()
    first = ow.resume(r.run_id, approvals={r.pending[0].id: True})
    assert first.status == "waiting_approval"  # the second payment asks again
    assert first.pending[-1].payload["input"] == {"name": "9999 to mallory"}
    assert handlers.CALLS == {"10 to alice": 1}


def test_a_fork_asks_its_approvals_again(store_path):
    ow = registry(store_path)
    r = ow.workflow("payout").execute()
    ow.resume(r.run_id, approvals={r.pending[0].id: True})
    forked = ow.fork(r.run_id, from_step="pay")
    assert forked.status == "waiting_approval" and handlers.CALLS["pay-ada"] == 1


def test_try_waits_with_its_body_before_catch_and_finally(store_path):
    ow = OpenWorkflow(state=str(store_path))
    ow.load(CONNECTORS)
    ow.load("""
name: guarded
steps:
  - id: guard
    type: try
    steps: [{id: pay, connector: bank, action: pay, input: {name: pay}}]
    catch: [{id: undo, connector: ops, action: count, input: {name: undo}}]
    finally: [{id: release, connector: ops, action: count, input: {name: release}}]
""")
    r = ow.workflow("guarded").execute()
    assert r.status == "waiting_approval" and handlers.CALLS == {}  # finally waits for the body
    done = ow.resume(r.run_id, approvals={r.pending[0].id: True})
    assert done.status == "completed" and handlers.CALLS == {"pay": 1, "release": 1}


def test_fork_reruns_steps_after_a_loop_and_inside_sub_workflows(store_path):
    ow = registry(store_path)
    ow.load("""
name: inner
steps: [{id: work, connector: ops, action: count, input: {name: inner}}]
---
name: outer
steps:
  - {id: each, type: forEach, items: "{{ [1, 2] }}", steps: [{id: body, connector: ops, action: count, input: {name: body}}]}
  - {id: after, connector: ops, action: count, input: {name: after}, needs: [each]}
  - {id: call, type: workflow, workflow: inner, needs: [after]}
""")
    first = ow.workflow("outer").execute()
    assert first.status == "completed"
    ow.fork(first.run_id, from_step="body")
    assert handlers.CALLS == {"body": 4, "after": 2, "inner": 2}  # the loop's dependents ran again
    handlers.CALLS.clear()
    ow.fork(first.run_id, from_step="call")
    assert handlers.CALLS == {"inner": 1}  # only the sub-workflow's steps ran again


def test_one_event_reaches_every_step_waiting_for_it(store_path):
    ow = OpenWorkflow(state=str(store_path))
    ow.load("""
name: many
steps:
  - {id: each, type: forEach, items: "{{ [1, 2] }}", steps: [{id: hold, type: wait, until: {event: go}}]}
""")
    r = ow.workflow("many").execute()
    assert len(r.pending) == 2
    assert ow.resume(r.run_id, event={"go": 1}).status == "completed"


def test_a_failed_resume_leaves_the_run_waiting(store_path):
    ow = registry(store_path)
    r = ow.workflow("payout").execute()
    stranger = OpenWorkflow(state=str(store_path))  # the manifests are not loaded here
    with pytest.raises(Exception, match="not loaded"):
        stranger.resume(r.run_id, approvals={r.pending[0].id: True})
    assert ow.run(r.run_id).status == "waiting_approval"
    assert [p.id for p in ow.run(r.run_id).pending] == [r.pending[0].id]  # the answer was not used up


def test_a_stored_run_has_its_trace_and_usage(store_path):
    ow = OpenWorkflow(state=str(store_path))
    ow.load(ROOT / "examples" / "research-digest.yaml")
    live = ow.workflow().execute(inputs={"topic": "LangGraph"})
    other = OpenWorkflow(state=str(store_path))  # another registry on the same file and manifests
    other.load(ROOT / "examples" / "research-digest.yaml")
    stored = other.run(live.run_id)
    cols = ["step_id", "type", "backend", "status", "attempt", "iteration", "total_tokens", "error_code"]
    assert stored.trace[cols].to_dict("records") == live.trace[cols].to_dict("records")
    assert stored.usage["total_tokens"].sum() == live.usage["total_tokens"].sum() == 56
    assert stored.outputs == live.outputs and stored.status == "completed"


def test_parallel_any_joins_without_a_waiting_branch(store_path):
    ow = registry(store_path)
    ow.load("""
name: race
steps:
  - id: race
    type: parallel
    join: any
    branches:
      human: [{id: ask, connector: bank, action: pay, input: {name: human}}]
      robot: [{id: auto, connector: ops, action: count, input: {name: robot}}]
""")
    r = ow.workflow("race").execute()
    assert r.status == "completed" and not r.pending
    assert r.steps["race"].output["branches"]["human"] == {"status": "canceled"}
    assert r.steps["ask"].status == "canceled" and r.steps["ask"].error.details["reason"] == "joined"
    assert not ow.store.get_pending(r.run_id)  # the question is withdrawn
    assert handlers.CALLS == {"robot": 1}


def test_trigger_is_readable_in_templates_and_kept_for_resume(store_path):
    ow = registry(store_path)
    ow.load("""
name: hook
steps:
  - {id: hold, type: wait, until: {event: go}}
  - {id: use, type: transform, expression: "{{ trigger.payload.order * 2 }}", needs: [hold]}
outputs: {doubled: {value: "{{ steps.use.result }}"}}
""")
    r = ow.workflow("hook").execute(trigger={"type": "webhook", "payload": {"order": 21}})
    assert r.status == "waiting_approval"
    assert ow.resume(r.run_id, event={"go": True}).outputs == {"doubled": 42}
    plain = OpenWorkflow(state=False)
    plain.load("name: t\nsteps: [{id: a, type: transform, expression: '{{ trigger | length }}'}]")
    assert plain.workflow("t").execute().steps["a"].output == {"result": 0}  # {} when nothing triggered it


def test_a_bad_answer_loses_none_of_the_good_ones(store_path):
    ow = registry(store_path)
    r = ow.workflow("payout").execute()
    good = r.pending[0].id
    with pytest.raises(Exception, match="no open request 'req_typo'"):
        ow.resume(r.run_id, approvals={good: True, "req_typo": True})
    with pytest.raises(Exception, match="waits for no event"):
        ow.resume(r.run_id, approvals={good: True}, event={"x": 1})
    assert ow.resume(r.run_id, approvals={good: True}).status == "completed"


def test_inputs_the_workflow_does_not_declare_are_refused(ow):
    ow.load("name: one\ninputs: {topic: {type: string, default: x}}\nsteps: [{id: a, type: transform, expression: x}]")
    with pytest.raises(Exception, match="did you mean 'topic'"):
        ow.workflow("one").execute(inputs={"topc": "LangGraph"})
