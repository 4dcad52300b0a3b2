"""The native executor: every step kind, concurrency, determinism, errors, secrets."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from owf_magics import ManifestError, OWFError
from tests import handlers
from tests.flows import HANDOFF
from tests.local_http import JSONHandler, serve

CONNECTOR = """
connector: {name: t, namespace: test, kind: sdk}
actions:
  - name: count
    input: {type: object, properties: {name: {type: string}}, required: [name]}
    handler: {function: tests.handlers.count}
  - name: flaky
    handler: {function: tests.handlers.flaky}
  - name: boom
    handler: {function: tests.handlers.boom}
  - name: wait_for_gate
    handler: {function: tests.handlers.wait_for_gate}
  - name: open_gate
    handler: {function: tests.handlers.open_gate}
  - name: echo
    handler: {function: tests.handlers.echo}
"""


@pytest.fixture(autouse=True)
def _reset():
    handlers.CALLS.clear()
    handlers.GATE.clear()


@pytest.fixture
def flow(ow):
    ow.load(CONNECTOR)

    def run(text: str, **kw):
        [wf] = [i for i in ow.load(text) if i.kind == "workflow"]
        return ow.workflow(wf.name).execute(**kw)

    return run


def test_actions_templates_and_outputs_keep_types(flow):
    r = flow(
        """
name: basic
inputs: {who: {type: string, default: ada}, n: {type: number}}
steps:
  - {id: a, connector: t, action: count, input: {name: "{{ inputs.who }}"}}
  - {id: b, type: transform, expression: "{{ steps.a.output.calls + inputs.n }}"}
  - {id: c, type: transform, expression: "calls={{ steps.a.output.calls }} for {{ inputs.who | upper }}"}
outputs:
  total: {value: "{{ steps.b.result }}"}
  text: {value: "{{ steps.c.output.result }}"}
  obj: {value: "{{ steps.a.output }}"}
""",
        inputs={"n": 41},
    )
    assert r.status == "completed"
    assert r.outputs == {"total": 42, "text": "calls=1 for ADA", "obj": {"name": "ada", "calls": 1}}
    assert r.steps["a"].status == "success" and r.steps["a"].attempts == 1


def test_independent_steps_run_concurrently(flow):
    # each handler blocks until the other has run: only concurrent execution can finish
    r = flow("""
name: conc
steps:
  - {id: waits, connector: t, action: wait_for_gate}
  - {id: opens, connector: t, action: open_gate}
""")
    assert r.status == "completed", r.error


def test_trace_order_is_deterministic(flow):
    text = """
name: det
steps:
  - id: loop
    type: forEach
    items: [3, 1, 2]
    steps: [{id: body, connector: t, action: echo, input: {v: "{{ item }}"}}]
  - {id: x, connector: t, action: echo, input: {v: 1}}
  - {id: y, connector: t, action: echo, input: {v: "{{ steps.x.output }}"}}
"""
    cols = ["step_id", "status", "iteration", "attempt"]
    first = flow(text).trace[cols].values.tolist()
    second = flow(text).trace[cols].values.tolist()
    assert first == second
    assert [row[0] for row in first] == ["loop", "body", "body", "body", "x", "y"]
    assert [row[2] for row in first[1:4]] == ["0", "1", "2"]


def test_if_switch_and_skips(flow):
    r = flow(
        """
name: branches
inputs: {level: {type: string}}
steps:
  - id: check
    type: if
    condition: "{{ inputs.level == 'high' && true }}"
    then: [{id: hot, type: transform, expression: "Y"}]
    else: [{id: cold, type: transform, expression: "N"}]
  - id: route
    type: switch
    value: "{{ inputs.level }}"
    cases:
      high: [{id: h, type: transform, expression: "H"}]
    default: [{id: d, type: transform, expression: "D"}]
  - {id: gated, type: transform, expression: "G", condition: "{{ inputs.level != 'high' }}"}
""",
        inputs={"level": "high"},
    )
    assert r.steps["check"].output == {"branch": "then", "conditionResult": True}
    assert r.steps["cold"].status == "skipped" and r.steps["hot"].status == "success"
    assert r.steps["route"].output == {"case": "high", "matchedValue": "high"}
    assert r.steps["d"].status == "skipped"
    assert r.steps["gated"].status == "skipped"
    assert r.status == "completed"


def test_for_each_results_and_continue_on_error(flow):
    r = flow("""
name: loops
steps:
  - id: each
    type: forEach
    items: ["a", "", "c"]
    maxConcurrency: 2
    continueOnError: true
    steps:
      - {id: item_step, connector: t, action: count, input: {name: "{{ item }}"}, condition: "{{ item != '' }}"}
      - id: fail_on_empty
        connector: t
        action: boom
        condition: "{{ isLast && index == 2 }}"
""")
    out = r.steps["each"].output
    assert out["totalCount"] == 3 and out["errorCount"] == 1 and out["successCount"] == 2
    assert out["results"][2]["status"] == "error"
    assert r.status == "completed"


def test_inline_for_each_collects_outputs(flow):
    r = flow("""
name: inline
inputs: {names: {type: array, default: [x, y, z]}}
steps:
  - id: each
    connector: t
    action: echo
    for_each: "{{ inputs.names }}"
    parallel: true
    input: {n: "{{ item }}", i: "{{ index }}"}
""")
    assert r.steps["each"].output == [
        {"echo": {"n": "x", "i": 0}},
        {"echo": {"n": "y", "i": 1}},
        {"echo": {"n": "z", "i": 2}},
    ]


def test_parallel_join_and_branch_outputs(flow):
    r = flow("""
name: par
steps:
  - id: fan
    type: parallel
    join: all
    branches:
      left: [{id: l, type: transform, expression: "L"}]
      right: [{id: r, connector: t, action: echo, input: {v: 2}}]
  - {id: after, type: transform, expression: "{{ steps.fan.branches.right.output.echo.v }}{{ steps.fan.l.output.result }}"}
""")
    assert r.steps["fan"].output["completedCount"] == 2
    assert r.steps["after"].output == {"result": "2L"}


def test_retry_then_success_and_retry_exhausted(flow):
    r = flow("""
name: retry
steps:
  - id: f
    connector: t
    action: flaky
    input: {key: k1, fail_times: 2}
    retry: {maxAttempts: 3, backoff: fixed, initialDelay: 0}
""")
    assert r.status == "completed" and r.steps["f"].attempts == 3
    assert r.trace["attempt"].tolist() == [1, 2, 3]
    assert r.trace["status"].tolist() == ["failed", "failed", "success"]
    r = flow("""
name: retry2
steps:
  - {id: f, connector: t, action: flaky, input: {key: k2, fail_times: 5}, retry: {maxAttempts: 2, initialDelay: 0}}
  - {id: after, type: transform, expression: "{{ steps.f.output }}"}
""")
    assert r.status == "failed" and r.error.code == "BACKEND_ERROR" and "ConnectionError" in r.error.message
    assert r.steps["after"].status == "skipped"


def test_try_catch_finally_and_error_scope(flow):
    r = flow("""
name: tryit
steps:
  - id: guard
    type: try
    retry: {maxAttempts: 2, initialDelay: 0}
    steps: [{id: risky, connector: t, action: boom, input: {message: kaput}}]
    catch: [{id: handle, type: transform, expression: "caught {{ error.code }} after {{ error.attemptCount }}: {{ error.message }}"}]
    finally: [{id: cleanup, type: transform, expression: "done"}]
  - {id: seen, type: transform, expression: "{{ steps.guard.result.status }}/{{ steps.guard.result.attempts }}"}
""")
    assert r.status == "completed"
    assert r.steps["handle"].output == {"result": "caught BACKEND_ERROR after 2: RuntimeError: kaput"}
    assert r.steps["guard"].output is None and r.steps["seen"].output == {"result": "error/2"}
    assert r.steps["cleanup"].status == "success"


def test_continue_on_error_and_timeout(flow):
    r = flow("""
name: soft
steps:
  - {id: bad, connector: t, action: boom, continue_on_error: true}
  - {id: check, type: transform, expression: "{{ steps.bad.status }}", needs: [bad]}
  - {id: slow, type: wait, duration: 2s, timeout: 0.05}
  - {id: after_wait, type: transform, expression: "never"}
""")
    assert r.steps["bad"].status == "failed" and r.steps["check"].output == {"result": "failed"}
    assert r.steps["slow"].error.code == "TIMEOUT"
    assert r.steps["after_wait"].status == "skipped"  # a wait is a barrier
    assert r.status == "failed" and r.error.code == "TIMEOUT"


def test_action_input_schema_is_enforced(flow):
    r = flow("name: v\nsteps: [{id: a, connector: t, action: count, input: {name: 5}}]")
    assert r.steps["a"].error.code == "VALIDATION" and "name" in r.steps["a"].error.message


def test_missing_required_input_is_validation(flow):
    with pytest.raises(OWFError) as err:
        flow(
            "name: req\ninputs: {x: {type: string, required: true}}\nsteps: [{id: a, type: transform, expression: '{{ inputs.x }}'}]"
        )
    assert err.value.code == "VALIDATION"


def test_subworkflow_runs_as_a_step(ow):
    ow.load(CONNECTOR)
    ow.load("""
workflows:
  - name: child
    inputs: {v: {type: number}}
    steps: [{id: double, type: transform, expression: "{{ inputs.v * 2 }}"}]
    outputs: {doubled: {value: "{{ steps.double.result }}"}}
  - name: parent
    steps:
      - {id: call, workflow: child, input: {v: 21}}
      - {id: use, type: transform, expression: "{{ steps.call.outputs.doubled }}"}
    outputs: {answer: {value: "{{ steps.use.result }}"}}
""")
    r = ow.workflow("parent").execute()
    assert r.outputs == {"answer": 42}
    assert "call/double" in r.trace["step_id"].tolist()


def test_scripted_agent_calls_tools_with_exact_usage(ow):
    ow.load("""
connector:
  name: calculator
  kind: sdk
actions:
  - name: add
    input: {type: object, properties: {a: {type: number}, b: {type: number}}, required: [a, b]}
    handler: {function: owf_magics.demo_tools.calculator_add}
""")
    ow.load("""
agents:
  - name: mathbot
    toolset: [calculator]
    model:
      provider: scripted
      responses:
        - tool_calls: [{name: calculator_add, args: {a: 1, b: 2}}]
          usage: {prompt_tokens: 12, completion_tokens: 7}
        - content: "The sum is 3"
          usage: {prompt_tokens: 20, completion_tokens: 5}
workflows:
  - name: ask
    steps: [{id: q, type: agent, agent: mathbot, input: "What is 1 + 2?"}]
    outputs: {answer: {value: "{{ steps.q.output }}"}}
""")
    r = ow.workflow("ask").execute()
    assert r.outputs == {"answer": "The sum is 3"}
    assert r.usage["total_tokens"].sum() == 44 and not r.usage["estimated"].any()
    assert (r.usage["cost_usd"] == 0.0).all()  # the offline providers are free, not unknown
    row = r.trace.iloc[0]
    assert (row.prompt_tokens, row.completion_tokens, row.total_tokens) == (32, 12, 44)
    [event] = [e for e in r.events if e["type"] == "step.execution.completed"]
    assert event["execution"]["token_usage"] == {"prompt_tokens": 32, "completion_tokens": 12, "total_tokens": 44}
    assert event["execution"]["backend"] == "native" and event["execution"]["adapter_version"]


def test_echo_agent_estimates_usage(ow):
    ow.load("""
agents: [{name: parrot, model: {provider: echo}}]
workflows:
  - name: e
    steps: [{id: say, type: agent, agent: parrot, input: {text: hello}}]
""")
    r = ow.workflow("e").execute()
    assert r.steps["say"].output == {"text": "hello"}
    assert r.usage["estimated"].all() and r.usage["total_tokens"].iloc[0] > 0


def test_secrets_are_redacted_and_blocked_outside_credentials(flow):
    r = flow(
        """
name: sec
steps:
  - {id: ok, connector: t, action: echo, input: {headers: {Authorization: "Bearer {{ secrets.TOKEN }}"}}}
outputs: {o: {value: "{{ steps.ok.output }}"}}
""",
        secrets={"TOKEN": "sk-live-123456"},
    )
    assert r.outputs == {"o": {"echo": {"headers": {"Authorization": "Bearer ***"}}}}
    everything = json.dumps([r.outputs, r.trace_rows, r.events, repr(r)], default=str)
    assert "sk-live-123456" not in everything
    # a secret in a plain field is refused at load, with its line (issue 21)
    with pytest.raises(ManifestError) as info:
        flow(
            """
name: sec2
steps:
  - {id: leak, connector: t, action: echo, input: {text: "key is {{ secrets.TOKEN }}"}}
"""
        )
    [d] = info.value.diagnostics
    assert (d.code, d.line, d.step_id) == ("SECRET_USE", 4, "leak")


def test_http_handler_against_local_server(ow):
    seen = []

    class Handler(JSONHandler):
        def do_POST(self):
            body = self.read_json()
            seen.append((body, self.headers.get("X-Token")))
            if body["n"] < 0:
                self.send_json({"status": "error", "message": "negative", "code": "NEG"})
            else:
                self.send_json({"status": "success", "data": {"doubled": body["n"] * 2}})

    with serve(Handler) as base:
        ow.load(f"""
connector: {{name: svc, kind: http}}
actions:
  - name: double
    handler:
      http:
        url: "{base}/double"
        method: POST
        headers: {{X-Token: "${{secrets.TOKEN}}"}}
        urlValidation: {{allowedDomains: ["127.0.0.1"]}}
""")
        ow.load(
            "name: h\ninputs: {n: {type: number}}\nsteps: [{id: d, connector: svc, action: double, input: {n: '{{ inputs.n }}'}}]"
        )
        r = ow.workflow("h").execute(inputs={"n": 21}, secrets={"TOKEN": "tok-abc"})
        assert r.steps["d"].output == {"doubled": 42}
        assert seen[0] == ({"n": 21}, "tok-abc")
        r = ow.workflow("h").execute(inputs={"n": -1})
        assert r.steps["d"].error.code == "BACKEND_ERROR" and "negative" in r.steps["d"].error.message


def test_url_validation_blocks_before_any_request(ow):
    ow.load("""
connector: {name: meta, kind: http}
actions:
  - name: get
    handler: {http: {url: "http://169.254.169.254/latest", method: GET, urlValidation: {blockedDomains: ["169.254.169.254"]}}}
""")
    ow.load("name: m\nsteps: [{id: g, connector: meta, action: get}]")
    r = ow.workflow("m").execute()
    assert r.steps["g"].error.code == "VALIDATION" and "blocked" in r.steps["g"].error.message


def test_command_handler(ow, tmp_path):
    script = tmp_path / "double.py"
    script.write_text(
        "import json,sys\nd=json.load(sys.stdin)\nif d['n']<0: sys.exit('negative!')\nprint(json.dumps({'doubled': d['n']*2}))\n"
    )
    ow.load(f"""
connector: {{name: cmd, kind: custom}}
actions:
  - name: double
    handler: {{command: "{sys.executable}", args: ["{script}"]}}
""")
    ow.load(
        "name: c\ninputs: {n: {type: number}}\nsteps: [{id: d, connector: cmd, action: double, input: {n: '{{ inputs.n }}'}}]"
    )
    assert ow.workflow("c").execute(inputs={"n": 4}).steps["d"].output == {"doubled": 8}
    bad = ow.workflow("c").execute(inputs={"n": -1}).steps["d"].error
    assert bad.code == "BACKEND_ERROR" and "negative!" in bad.message


def test_jq_and_jsonpath_transforms(flow):
    r = flow("""
name: tx
steps:
  - {id: src, connector: t, action: echo, input: {items: [{sku: a, q: 1}, {sku: b, q: 2}]}}
  - {id: jq1, type: transform, language: jq, expression: "[.echo.items[] | .sku]"}
  - {id: jp, type: transform, language: jsonpath, expression: "$.echo.items[*].q", input: "{{ steps.src.output }}"}
""")
    assert r.steps["jq1"].output == {"result": ["a", "b"]}
    assert r.steps["jp"].output == {"result": [1, 2]}


def test_handoff_selects_agent(ow):
    ow.load(HANDOFF)
    r = ow.workflow("route").execute(inputs={"category": "billing"})
    assert r.steps["go"].output["handoffTo"] == "agent:local/general@1.0.0"
    assert r.steps["go"].output["agentResponse"] == {"reason": "routing", "c": "billing"}


def test_execute_works_inside_a_running_event_loop(flow):
    async def inside():
        return flow("name: inloop\nsteps: [{id: a, type: transform, expression: ok}]")

    r = asyncio.run(inside())
    assert r.status == "completed"


def test_aexecute(ow):
    ow.load("name: asy\nsteps: [{id: a, type: transform, expression: '{{ 6 * 7 }}'}]")
    r = asyncio.run(ow.workflow("asy").aexecute())
    assert r.steps["a"].output == {"result": 42}


def test_events_have_the_spec_shape(flow):
    seen = []
    r = flow("name: ev\nsteps: [{id: a, type: transform, expression: x}]", callback=seen.append)
    assert [e["type"] for e in seen] == ["run.started", "step.started", "step.execution.completed", "run.completed"]
    assert [e["type"] for e in r.events] == [e["type"] for e in seen]
    step_event = r.events[2]
    assert {"event_id", "type", "timestamp", "execution", "result"} <= set(step_event)
    assert {"backend", "adapter_version", "duration_ms"} <= set(step_event["execution"])
    assert step_event["result"] == {"status": "success", "output": {"result": "x"}}


def test_canceling_a_run_records_canceled_steps(flow, ow):
    ow.load("""
name: cancel_me
steps:
  - {id: first, connector: t, action: open_gate}
  - {id: long, type: wait, duration: 60s, needs: [first]}
  - {id: never, type: transform, expression: x, needs: [long]}
""")

    async def main():
        task = asyncio.ensure_future(ow.workflow("cancel_me").aexecute())
        while not handlers.GATE.is_set():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        task.cancel()
        return await task

    r = asyncio.run(main())
    assert r.status == "canceled" and r.error.code == "CANCELED"
    assert r.steps["first"].status == "success"
    assert r.steps["long"].status == "canceled" and r.steps["never"].status == "canceled"
    assert r.events[-1]["type"] == "run.canceled"


def test_sync_handlers_run_in_the_pool_inline_and_async_ones_on_the_loop(ow):
    ow.load(
        """
connector: {name: where, kind: sdk}
actions:
  - {name: pool, handler: {function: tests.handlers.thread_name}}
  - {name: inline, handler: {function: tests.handlers.thread_name_inline}}
  - {name: coro, handler: {function: tests.handlers.thread_name_async}}
  - {name: obj, handler: {function: tests.handlers.async_callable}}
---
name: where
steps:
  - {id: p, connector: where, action: pool}
  - {id: i, connector: where, action: inline}
  - {id: c, connector: where, action: coro}
  - {id: o, connector: where, action: obj, input: {x: 21}}
"""
    )
    r = ow.workflow("where").execute()
    assert r.status == "completed", r.steps
    loop_thread = r.steps["i"].output["thread"]
    assert r.steps["c"].output["thread"] == loop_thread
    assert r.steps["p"].output["thread"] != loop_thread
    assert r.steps["p"].output["thread"].startswith("owf-handler")
    assert r.steps["o"].output == {"double": 42}


def test_ctrl_c_cancels_the_run_and_records_it(ow):
    ow.load(
        """
connector: {name: ctl, kind: sdk}
actions: [{name: interrupt, handler: {function: tests.handlers.interrupt_main}}]
---
name: interrupted
steps:
  - {id: busy, connector: ctl, action: interrupt}
  - {id: later, type: transform, expression: "{{ 1 }}", dependsOn: [busy]}
"""
    )
    r = ow.workflow("interrupted").execute()
    assert r.status == "canceled"
    assert r.steps["busy"].status == "canceled"
    assert r.steps["busy"].error.code == "CANCELED"
    assert r.steps["later"].status == "canceled"
    assert r.events[-1]["type"] == "run.canceled"


def test_lifecycle_events_started_retrying_failed_skipped(flow):
    r = flow(
        """
name: life
steps:
  - id: shaky
    connector: t
    action: flaky
    input: {key: life, fail_times: 5}
    retry: {maxAttempts: 2, backoff: fixed, initialDelay: 0.01}
  - {id: after, type: transform, expression: x, needs: [shaky]}
"""
    )
    kinds = [(e["type"], e.get("step_id"), e.get("attempt")) for e in r.events]
    assert kinds == [
        ("run.started", None, None),
        ("step.started", "shaky", 1),
        ("step.execution.completed", "shaky", 1),
        ("step.retrying", "shaky", 1),
        ("step.started", "shaky", 2),
        ("step.execution.completed", "shaky", 2),
        ("step.failed", "shaky", 2),
        ("step.skipped", "after", 0),
        ("run.failed", None, None),
    ]
    retrying = r.events[3]
    assert retrying["next_attempt"] == 2 and retrying["delay_ms"] == 10
    assert retrying["error"]["code"] == "BACKEND_ERROR"
    assert r.events[7]["reason"] == "an earlier step failed"
    assert len({e["event_id"] for e in r.events}) == len(r.events)


def test_workflow_timeout_is_the_run_deadline(flow, ow):
    ow.load("""
connector: {name: dl, kind: sdk, actions: [{name: seen, handler: {function: tests.handlers.deadline_seen}}]}
""")
    r = flow(
        """
name: deadline
timeout: 0.3s
steps:
  - {id: ctx, connector: dl, action: seen}
  - {id: slow, type: wait, duration: 30s, needs: [ctx]}
  - {id: never, type: transform, expression: x, needs: [slow]}
"""
    )
    assert r.status == "failed"
    assert r.error.code == "TIMEOUT" and r.error.details["timeout_ms"] == 300
    assert r.error.details["elapsed_ms"] >= 300
    assert r.steps["ctx"].output == {"has_deadline": True}
    assert r.steps["slow"].status == "canceled" and r.steps["slow"].error.code == "CANCELED"
    assert r.steps["never"].status == "canceled"
    assert r.events[-1]["type"] == "run.failed"
