"""JSON-lines logs and Prometheus metrics of a real `owf serve` (issue 24): every log line is JSON;
a run's lines carry its run id, workflow, steps, latency and status; a request's line its request
id (echoed in ``X-Request-ID``), route and tenant; no token, secret or request body is ever
logged; ``GET /metrics`` (scope ``metrics:read``) counts the run under its workflow's name."""

from __future__ import annotations

import json

import pytest

from tests.service_server import ALL_SCOPES, start, token, write_flows

pytest.importorskip("fastapi")
prometheus = pytest.importorskip("prometheus_client.parser")

BODY = "body-marker-6d1c0e"
SECRET = "server-secret-8a7f6e5d"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in prometheus.text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_run_logs_are_json_with_the_run_id_and_no_secret_and_metrics_count_the_run(tmp_path):
    env = {"OWF_LOG_LEVEL": "debug", "OWF_TEST_SECRET": SECRET}
    srv = start(tmp_path, str(write_flows(tmp_path)), "--secret", "OWF_TEST_SECRET", env=env)
    bearer = token(scope=f"{ALL_SCOPES} metrics:read")
    try:
        with srv.client(bearer) as c:
            r = c.post(
                "/workflows/execute",
                json={"workflow": "chain", "inputs": {"x": BODY}},
                headers={"X-Request-ID": "req-42"},
            )
            assert r.status_code == 200 and r.json()["outputs"] == {"out": f"{BODY}12345"}
            assert r.headers["x-request-id"] == "req-42"
            run_id = r.json()["execution_id"]
            failed = c.post("/workflows/execute", json={"workflow": "chain", "inputs": {"x": {"not": "a string"}}})
            assert failed.status_code == 400
            metrics = c.get("/metrics")
            assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
        with srv.client(token(scope=ALL_SCOPES)) as c:
            denied = c.get("/metrics")
            assert denied.status_code == 403 and denied.json()["details"]["required"] == "metrics:read"
    finally:
        srv.stop()
    text = srv.stderr()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is JSON
    assert lines
    for needle in (BODY, SECRET, bearer):
        assert needle not in text

    run_lines = [x for x in lines if x.get("run_id") == run_id]
    steps = [x["step"] for x in run_lines if "step" in x]
    assert steps == ["s1", "s2", "s3", "s4", "s5"]
    assert all(
        x["status"] == "success" and x["latency_ms"] >= 0 and x["tenant"] == "acme" for x in run_lines if "step" in x
    )
    (end,) = [x for x in run_lines if "step" not in x]
    assert (end["workflow"], end["status"], end["level"]) == ("chain", "completed", "info") and end["latency_ms"] > 0

    (req,) = [x for x in lines if x.get("request_id") == "req-42"]
    assert (req["route"], req["status"], req["method"], req["tenant"], req["sub"]) == (
        "/workflows/execute",
        200,
        "POST",
        "acme",
        "alice",
    )
    assert any(x.get("route") == "/metrics" and x["status"] == 403 for x in lines)

    got = samples(metrics.text)
    assert got[("owf_runs_total", (("status", "completed"), ("workflow", "chain")))] == 1
    assert got[("owf_run_duration_seconds_count", (("status", "completed"), ("workflow", "chain")))] == 1
    assert got[("owf_steps_total", (("status", "success"), ("workflow", "chain")))] == 5
    key = ("owf_http_requests_total", (("method", "POST"), ("route", "/workflows/execute"), ("status", "200")))
    assert got[key] == 1
    assert (
        got[("owf_http_requests_total", (("method", "POST"), ("route", "/workflows/execute"), ("status", "400")))] == 1
    )
    assert got[("owf_run_queue_depth", ())] == 0


def test_a_bad_log_level_stops_the_start(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    done = subprocess.run(
        [sys.executable, "-m", "owf_magics.cli", "serve", "--insecure-dev", "--port", "0"],
        env={"OWF_LOG_LEVEL": "chatty", "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 2 and "OWF_LOG_LEVEL" in done.stderr


def test_the_rate_limiter_counts_what_waits_in_a_queue():
    import asyncio

    from owf_magics.agents.limits import ManualClock, RateLimiter

    async def scenario() -> list[int]:
        limiter = RateLimiter(ManualClock())
        limiter.set_limit("queue:wf/q1", messages_per_second=1)
        counts = [limiter.waiting("queue:wf/q1"), limiter.waiting("queue:other")]
        await limiter.acquire("queue:wf/q1", messages=1)  # takes the only room
        waiters = [asyncio.create_task(limiter.acquire("queue:wf/q1", messages=1)) for _ in range(3)]
        for _ in range(20):
            await asyncio.sleep(0)
        counts.append(limiter.waiting("queue:wf/q1"))  # one admitted and sleeping, two in line
        for _ in range(3):
            limiter.clock.advance(1.0)
            for _ in range(20):
                await asyncio.sleep(0)
        await asyncio.gather(*waiters)
        counts.append(limiter.waiting("queue:wf/q1"))
        return counts

    assert asyncio.run(scenario()) == [0, 0, 3, 0]
