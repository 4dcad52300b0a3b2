"""Event callbacks against real HTTP servers on 127.0.0.1 (one that records, one that fails, one
that hangs), stdout printers and Python callables."""

from __future__ import annotations

import io
import json
import logging
import threading

import pytest

from owf_magics.errors import OWFError
from owf_magics.runs.callbacks import (
    CallableSink,
    EventSink,
    HttpSink,
    StdoutSink,
    format_event,
    make_sink,
    run_completed,
    run_event,
    run_failed,
    run_started,
    to_envelope,
)
from owf_magics.runtime.results import StepError
from tests.local_http import JSONHandler, serve

STEP_EVENT = {
    "type": "step.execution.completed",
    "timestamp": "2026-01-01T12:00:00.123Z",
    "event_id": "evt_r_00001",
    "run_id": "r",
    "step_id": "fetch",
    "step_type": "action",
    "iteration": "",
    "attempt": 2,
    "execution": {
        "backend": "native",
        "adapter_version": "0.1.0",
        "duration_ms": 12.5,
        "token_usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    },
    "result": {"status": "success", "output": {"items": [1, 2]}},
}


def _recorder():
    got: list[dict] = []

    class Handler(JSONHandler):
        def do_POST(self):
            got.append(self.read_json())
            self.send_json({"ok": True})

    return got, Handler


def test_envelope_of_step_and_run_events():
    env = to_envelope(STEP_EVENT)
    assert set(env) == {"type", "timestamp", "payload", "metadata"}
    assert env["type"] == "step.execution.completed"
    assert env["timestamp"] == "2026-01-01T12:00:00.123Z"
    assert env["payload"]["step_id"] == "fetch" and env["payload"]["result"]["output"] == {"items": [1, 2]}
    assert "event_id" not in env["payload"] and env["metadata"]["event_id"] == "evt_r_00001"
    started = run_started("r", "digest", version="1.0.0", inputs={"q": 1})
    assert to_envelope(started) == started
    assert started["payload"] == {"run_id": "r", "workflow": "digest", "inputs": {"q": 1}}
    assert started["metadata"]["workflow_version"] == "1.0.0"
    assert run_event("r", "waiting_approval", {"pending": ["req1"]})["payload"]["event"] == "waiting_approval"
    done = run_completed("r", outputs={"a": 1}, duration_ms=3.0)
    assert done["type"] == "run.completed" and done["payload"]["outputs"] == {"a": 1}
    failed = run_failed("r", StepError("TIMEOUT", "slow"), duration_ms=1.0)
    assert failed["type"] == "run.failed"
    assert failed["payload"]["error"] == {"code": "TIMEOUT", "message": "slow", "details": {}}
    assert run_failed("r", OWFError("x", code="CANCELED"))["payload"]["error"]["code"] == "CANCELED"
    assert run_failed("r", ValueError("bad"))["payload"]["error"]["code"] == "INTERNAL_ERROR"


def test_http_sink_posts_every_event_in_order_with_secrets_scrubbed():
    got, handler = _recorder()
    with serve(handler) as url:
        sink = make_sink(url, secrets={"KEY": "sk-secret-999"})
        assert isinstance(sink, HttpSink) and isinstance(sink, EventSink)
        sink(run_started("r", "w", inputs={"q": "use sk-secret-999"}))
        for i in range(20):
            sink({**STEP_EVENT, "step_id": f"s{i}", "result": {"status": "success", "output": f"sk-secret-999 {i}"}})
        sink(run_completed("r"))
        sink.close(timeout=30)
    assert sink.sent == 22 and sink.failed == 0 and sink.dropped == 0
    assert [e["type"] for e in got] == ["run.started"] + ["step.execution.completed"] * 20 + ["run.completed"]
    assert [e["payload"]["step_id"] for e in got[1:-1]] == [f"s{i}" for i in range(20)]
    for env in got:
        assert set(env) == {"type", "timestamp", "payload", "metadata"}
    assert "sk-secret-999" not in json.dumps(got)
    assert got[1]["payload"]["result"]["output"] == "*** 0"


def test_http_sink_retries_a_failing_endpoint_a_bounded_number_of_times(caplog):
    hits: list[str] = []

    class Failing(JSONHandler):
        def do_POST(self):
            hits.append(self.read_json()["type"])
            self.send_json({"error": "down"}, status=500)

    with serve(Failing) as url, caplog.at_level(logging.WARNING, logger="owf_magics.runs.callbacks"):
        sink = make_sink(url, retries=2, backoff=0.01)
        assert isinstance(sink, HttpSink)
        sink(run_started("r", "w"))  # never raises
        sink(run_completed("r"))
        sink.close(timeout=30)
    assert hits == ["run.started"] * 3 + ["run.completed"] * 3  # 1 attempt + 2 retries, each
    assert (sink.sent, sink.failed, sink.attempts) == (0, 2, 6)
    assert "event lost" in caplog.text and "HTTP 500" in caplog.text


def test_http_sink_does_not_retry_a_refused_event():
    hits: list[int] = []

    class Refusing(JSONHandler):
        def do_POST(self):
            hits.append(1)
            self.read_json()
            self.send_json({"error": "bad"}, status=400)

    with serve(Refusing) as url:
        sink = make_sink(url, retries=3, backoff=0.01)
        assert isinstance(sink, HttpSink)
        sink(run_started("r", "w"))
        sink.close(timeout=30)
    assert len(hits) == 1 and sink.failed == 1


def test_http_sink_survives_an_unreachable_endpoint():
    with serve(JSONHandler) as url:
        pass  # the server is gone: connection refused
    sink = make_sink(url, retries=1, backoff=0.01)
    assert isinstance(sink, HttpSink)
    sink(run_started("r", "w"))
    sink.close(timeout=30)
    assert (sink.sent, sink.failed, sink.attempts) == (0, 1, 2)


def test_a_hanging_endpoint_never_delays_the_producer():
    entered = threading.Event()
    release = threading.Event()
    answered: list[int] = []

    class Hanging(JSONHandler):
        def do_POST(self):
            self.read_json()
            entered.set()
            release.wait(60)
            answered.append(1)
            self.send_json({"ok": True})

    with serve(Hanging) as url:
        sink = make_sink(url, retries=0, timeout=60)
        assert isinstance(sink, HttpSink)
        for i in range(50):
            sink({**STEP_EVENT, "step_id": f"s{i}"})  # each call returns at once
        # the producer is done with all 50 events while the server holds the first request
        assert entered.wait(30)
        assert not answered and sink.sent == 0
        sink.close(timeout=0.2)  # bounded: gives up on the hanging endpoint
        assert not answered
        assert sink._thread.is_alive()  # the worker is still stuck, the caller is not
        release.set()
        sink._thread.join(30)
    assert not sink._thread.is_alive()
    assert sink.sent == 1 and sink.dropped == 49  # the rest were abandoned, not sent later


def test_full_queue_drops_instead_of_blocking():
    entered = threading.Event()
    release = threading.Event()

    class Hanging(JSONHandler):
        def do_POST(self):
            self.read_json()
            entered.set()
            release.wait(60)
            self.send_json({"ok": True})

    with serve(Hanging) as url:
        sink = make_sink(url, retries=0, timeout=60, max_queue=2)
        assert isinstance(sink, HttpSink)
        sink(run_started("r", "w"))
        assert entered.wait(30)  # the worker holds event 1; the queue takes 2 more
        for _ in range(5):
            sink(run_event("r", "tick"))
        assert sink.dropped == 3
        release.set()
        sink.close(timeout=30)
    assert sink.sent == 3
    sink(run_completed("r"))  # after close: dropped, not raised
    assert sink.dropped == 4


def test_stdout_sinks_print_readable_lines(capsys):
    sink = make_sink("stdout", secrets={"K": "sk-secret-999"})
    assert isinstance(sink, StdoutSink)
    sink(run_started("r1", "digest", version="2.0.0", inputs={"k": "sk-secret-999"}))
    sink({**STEP_EVENT, "result": {"status": "success", "output": {"token": "sk-secret-999"}}})
    sink(run_failed("r1", {"code": "TIMEOUT", "message": "too slow", "details": {}}, duration_ms=5.0))
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("] run r1 started: digest@2.0.0")  # run events are stamped now
    assert out[1] == "[12:00:00.123] step fetch: success in 12.5 ms (native), 7 tokens, attempt 2"
    assert out[2].endswith("run r1 failed in 5.0 ms - TIMEOUT: too slow")
    assert len(out) == 3  # not verbose: no outputs
    verbose = make_sink("stdout_verbose", secrets={"K": "sk-secret-999"})
    assert verbose is not None
    verbose({**STEP_EVENT, "result": {"status": "success", "output": {"token": "sk-secret-999"}}})
    verbose(run_completed("r1", outputs={"answer": 42}, duration_ms=1.5))
    text = capsys.readouterr().out
    assert 'output: {"token":"***"}' in text
    assert "run r1 completed in 1.5 ms" in text and 'outputs: {"answer":42}' in text
    assert "sk-secret-999" not in text


def test_stdout_sink_to_a_given_stream_and_other_events():
    buf = io.StringIO()
    sink = StdoutSink(stream=buf, verbose=True)
    sink(run_event("r", "waiting_approval", {"pending": ["req1"]}))
    sink({"type": "custom.thing", "timestamp": "2026-01-01T00:00:00.000Z", "payload": {"a": 1}})
    lines = buf.getvalue().splitlines()
    assert lines[0].endswith("run r: waiting_approval")
    assert lines[1] == '    {"pending":["req1"]}'
    assert lines[2] == '[00:00:00.000] custom.thing {"a":1}'
    failed_step = {**STEP_EVENT, "result": {"status": "error", "error": {"code": "BACKEND_ERROR", "message": "x"}}}
    assert format_event(to_envelope(failed_step)).endswith(
        "error in 12.5 ms (native), 7 tokens, attempt 2 - BACKEND_ERROR: x"
    )


def test_callable_sink_swallows_and_logs_exceptions(caplog):
    seen: list[dict] = []

    def ok(env):
        seen.append(env)

    def bad(env):
        raise RuntimeError("receiver broke")

    sink = make_sink(ok, scrub=lambda env: {**env, "metadata": {**env["metadata"], "scrubbed": True}})
    assert isinstance(sink, CallableSink)
    sink(STEP_EVENT)
    assert seen[0]["type"] == "step.execution.completed" and seen[0]["metadata"]["scrubbed"] is True
    broken = make_sink(bad)
    assert broken is not None
    with caplog.at_level(logging.ERROR, logger="owf_magics.runs.callbacks"):
        broken(STEP_EVENT)  # does not raise
    assert "receiver broke" in caplog.text
    broken.close()


def test_make_sink_choices():
    assert make_sink(None) is None
    s = StdoutSink()
    assert make_sink(s) is s
    with pytest.raises(OWFError) as err:
        make_sink("ftp://example")
    assert err.value.code == "VALIDATION"
    with pytest.raises(OWFError):
        make_sink(42)  # type: ignore[arg-type]


def test_the_executor_callback_delivers_every_event_to_a_server(ow):
    got, handler = _recorder()
    ow.load(
        """
name: cb
inputs: {x: {type: string}}
steps:
  - {id: a, type: transform, expression: "{{ inputs.x }}-a"}
  - {id: b, type: transform, expression: "{{ steps.a.output }}-b"}
outputs: {o: {value: "{{ steps.b.output }}"}}
"""
    )
    with serve(handler) as url:
        sink = make_sink(url)
        assert sink is not None
        result = ow.workflow("cb").execute(inputs={"x": "hi"}, callback=sink)
        sink.close(timeout=30)
    assert result.status == "completed"
    assert [e["type"] for e in got] == [e["type"] for e in result.events]
    assert [e["metadata"]["event_id"] for e in got] == [e["event_id"] for e in result.events]
    assert got[-1]["type"] == "run.completed"
