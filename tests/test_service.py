"""`owf serve` against a real uvicorn server on 127.0.0.1 with httpx: every route, tokens and
scopes, tenants, approvals answered over HTTP, the event stream, limits and the error format."""

from __future__ import annotations

import json
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from owf_magics.runs.store import SQLiteRunStore
from tests.service_server import events, start, token, wait_for, write_flows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def server(tmp_path_factory, rsa_key):
    folder = tmp_path_factory.mktemp("service")
    pem = folder / "rsa.pem"
    pem.write_bytes(
        rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    srv = start(folder, str(write_flows(folder)), "--jwt-public-key", str(pem), "--max-body-bytes", "4096")
    srv.folder = folder
    yield srv
    assert srv.stop() in (0, -15), srv.stderr()  # uvicorn re-raises SIGTERM after its graceful shutdown
    assert "Traceback" not in srv.stderr()


@pytest.fixture(scope="module")
def acme(server):
    with server.client(token()) as c:
        yield c


@pytest.fixture(scope="module")
def globex(server):
    with server.client(token("bob", tenant="globex")) as c:
        yield c


def unified(response, status: int) -> dict:
    """The response is an error with `status`, in the unified format."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error" and isinstance(body["message"], str) and body["message"]
    assert "details" in body and isinstance(body["code"], str)
    return body


# -- tokens and scopes ------------------------------------------------------------------------------


def test_health_needs_no_token_and_cors_is_off_by_default(server):
    with server.client() as c:
        response = c.get("/health", headers={"Origin": "http://ui.test"})
    assert response.json()["status"] == "ok" and response.json()["workflows"] == 3
    assert "access-control-allow-origin" not in response.headers


ROUTES = [
    ("GET", "/workflows", None),
    ("GET", "/workflows/chain", None),
    ("POST", "/workflows/validate", {"manifest": "name: w"}),
    ("POST", "/workflows/execute", {"workflow": "chain"}),
    ("GET", "/runs", None),
    ("GET", "/runs/x", None),
    ("GET", "/runs/x/events", None),
    ("POST", "/runs/x/resume", {}),
    ("POST", "/runs/x/cancel", None),
    ("GET", "/queue", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_every_route_but_health_refuses_a_missing_token(server, method, path, body):
    with server.client() as c:
        answer = unified(c.request(method, path, json=body), 401)
    assert answer["code"] == "UNAUTHORIZED"


def test_bad_tokens_are_401_with_a_reason(server, rsa_key):
    other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cases = {
        "wrong key": token(key="another-secret-0123456789abcdef-0123456789"),
        "expired": token(expires_in=-120),  # beyond the 30 s leeway
        "not yet valid": token(nbf=int(time.time()) + 600),
        "issued in the future": token(iat=int(time.time()) + 600),
        "no exp": token(exp=None),
        "wrong RSA key": token(key=other_rsa, algorithm="RS256"),
        "garbage": "not.a.jwt",
        "unsigned": token(key=None, algorithm="none"),
    }
    for name, bearer in cases.items():
        with server.client(bearer) as c:
            response = c.get("/workflows")
        body = unified(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer"), name
        assert body["code"] == "UNAUTHORIZED", name
    with server.client() as c:  # not a bearer token at all
        unified(c.get("/workflows", headers={"Authorization": "Basic YTpi"}), 401)
    with server.client(token(key=rsa_key, algorithm="RS256")) as c:  # the configured public key
        assert c.get("/workflows").status_code == 200
    with server.client(token(expires_in=-5)) as c:  # expired within the leeway
        assert c.get("/workflows").status_code == 200


def test_a_missing_scope_is_403(server):
    with server.client(token(scope="runs:read")) as c:
        body = unified(c.get("/workflows"), 403)
        assert body["details"] == {"required": "workflows:read", "granted": ["runs:read"]}
        unified(c.post("/workflows/execute", json={"workflow": "chain"}), 403)
        unified(c.post("/runs/x/resume", json={}), 403)
        assert c.get("/runs").status_code == 200


# -- workflows ------------------------------------------------------------------------------------


def test_workflows_are_listed_and_described_with_plan_and_mermaid(acme):
    names = {w["name"]: w for w in acme.get("/workflows").json()}
    assert set(names) == {"chain", "payout", "long"}
    assert names["chain"]["steps"] == 5 and names["chain"]["inputs"] == {"x": {"type": "string", "default": "a"}}
    detail = acme.get("/workflows/chain").json()
    assert [row["step_id"] for row in detail["plan"]] == ["s1", "s2", "s3", "s4", "s5"]
    assert {row["backend"] for row in detail["plan"]} == {"native"}
    assert detail["mermaid"].startswith("flowchart TD\n") and "n0 --> n1" in detail["mermaid"]
    assert "s5<br/>transform · native" in detail["mermaid"]
    body = unified(acme.get("/workflows/nope"), 404)
    assert "chain" in body["details"]["loaded"]


def test_validate_reports_every_problem_with_line_and_step(acme):
    text = "name: w\nsteps:\n  - {id: a, type: transfrom, expression: x}\n  - {id: a, type: transform, expression: y}\n"
    body = acme.post("/workflows/validate", json={"manifest": text}).json()
    assert body["status"] == "invalid"
    by_code = {e["code"]: e for e in body["errors"]}
    assert by_code["INVALID_VALUE"]["line"] == 3 and by_code["INVALID_VALUE"]["step_id"] == "a"
    assert "DUPLICATE_STEP_ID" in by_code
    ok = acme.post(
        "/workflows/validate",
        json={"manifest": {"name": "w", "steps": [{"id": "a", "type": "transform", "expression": "x"}]}},
    )
    assert ok.json() == {"status": "valid", "errors": [], "warnings": []}


def test_inline_manifests_may_not_run_code_or_name_server_files(acme, server):
    code = "connector: {name: x, kind: sdk}\nactions: [{name: a, handler: {command: ls}}]\n---\nname: w\nsteps: [{id: s, connector: x, action: a}]\n"
    body = acme.post("/workflows/validate", json={"manifest": code}).json()
    assert body["status"] == "invalid" and [e["code"] for e in body["errors"]] == ["HANDLER_NOT_ALLOWED"]
    assert body["errors"][0]["line"] == 2 and body["errors"][0]["file"] == "<request>"
    refused = unified(acme.post("/workflows/execute", json={"manifest": code}), 422)
    assert refused["details"]["errors"][0]["code"] == "HANDLER_NOT_ALLOWED"
    # one line naming a manifest file on the server is text, never read from disk
    flows = str(server.folder / "flows.yaml")
    assert acme.post("/workflows/validate", json={"manifest": flows}).json()["status"] == "invalid"
    # and a body cannot carry secrets
    unified(acme.post("/workflows/execute", json={"workflow": "chain", "secrets": {"K": "v"}}), 422)


# -- running ----------------------------------------------------------------------------------------


def test_execute_a_loaded_workflow_returns_outputs_and_metrics(acme):
    body = acme.post("/workflows/execute", json={"workflow": "chain", "inputs": {"x": "z"}}).json()
    assert body["status"] == "completed" and body["outputs"] == {"out": "z12345"}
    assert body["metrics"]["nodes_executed"] == ["s1", "s2", "s3", "s4", "s5"]
    assert body["metrics"]["tokens_used"] == 0 and body["metrics"]["execution_time_ms"] > 0
    run = acme.get(f"/runs/{body['execution_id']}").json()
    assert run["status"] == "completed" and run["outputs"] == {"out": "z12345"}
    assert [row["step_id"] for row in run["trace"]] == ["s1", "s2", "s3", "s4", "s5"]
    assert run["steps"]["s5"]["output"] == {"result": "z12345"} and run["pending"] == []


def test_execute_without_waiting_answers_202_then_the_run_completes(acme):
    answer = acme.post("/workflows/execute?wait=false", json={"workflow": "chain"})
    assert answer.status_code == 202 and answer.json()["status"] in ("queued", "running")
    rid = answer.json()["execution_id"]
    run = wait_for(lambda: (r := acme.get(f"/runs/{rid}").json())["status"] == "completed" and r)
    assert run["outputs"] == {"out": "a12345"}


def test_execute_an_inline_manifest_and_bad_requests(acme, server):
    text = "name: hello\ninputs: {who: {type: string}}\nsteps: [{id: a, type: transform, expression: 'hi {{ inputs.who }}'}]\noutputs: {o: {value: '{{ steps.a.output.result }}'}}\n"
    body = acme.post("/workflows/execute", json={"manifest": text, "inputs": {"who": "ada"}}).json()
    assert body["status"] == "completed" and body["outputs"] == {"o": "hi ada"} and body["workflow"] == "hello"
    unified(acme.post("/workflows/execute", json={}), 422)  # neither a workflow nor a manifest
    unified(acme.post("/workflows/execute", json={"workflow": "nope"}), 404)
    bad_input = unified(acme.post("/workflows/execute", json={"workflow": "chain", "inputs": {"x": 5, "y": 1}}), 400)
    assert bad_input["code"] == "VALIDATION"
    unified(acme.post("/workflows/execute?wait=false", json={"workflow": "chain", "inputs": {"y": 1}}), 400)
    labelled = set(SQLiteRunStore(server.folder / "runs.db").find_labels("sub"))
    assert all(SQLiteRunStore(server.folder / "runs.db").get_run(rid) for rid in labelled)  # no orphans left
    unified(acme.post("/workflows/execute", json={"manifest": "name: w\nsteps: [{id: a, type: nope}]"}), 422)


def test_an_approval_answered_over_http_resumes_the_run(acme):
    waiting = acme.post("/workflows/execute", json={"workflow": "payout"}).json()
    assert waiting["status"] == "waiting_approval" and waiting["outputs"] == {"paid": None}
    (request,) = waiting["pending"]
    assert request["kind"] == "approval" and request["step_id"] == "pay"
    rid = waiting["execution_id"]
    run = acme.get(f"/runs/{rid}").json()
    assert run["status"] == "waiting_approval" and run["pending"][0]["id"] == request["id"]
    wrong = unified(acme.post(f"/runs/{rid}/resume", json={"approvals": {"req_nope": True}}), 400)
    assert request["id"] in wrong["details"]["open"]
    done = acme.post(f"/runs/{rid}/resume", json={"approvals": {request["id"]: True}}).json()
    assert done["status"] == "completed" and done["outputs"] == {"paid": 5} and done["execution_id"] == rid
    assert acme.get(f"/runs/{rid}").json()["pending"] == []
    unified(acme.post(f"/runs/{rid}/resume", json={"approvals": {request["id"]: True}}), 409)  # finished


def test_a_run_of_another_tenant_is_not_found(acme, globex, server):
    rid = acme.post("/workflows/execute", json={"workflow": "payout"}).json()["execution_id"]
    request = acme.get(f"/runs/{rid}").json()["pending"][0]["id"]
    for method, path, body in [
        ("GET", f"/runs/{rid}", None),
        ("GET", f"/runs/{rid}/events", None),
        ("POST", f"/runs/{rid}/resume", {"approvals": {request: True}}),
        ("POST", f"/runs/{rid}/cancel", None),
    ]:
        assert unified(globex.request(method, path, json=body), 404)["message"] == f"no run '{rid}'"
    assert rid not in {r["run_id"] for r in globex.get("/runs").json()}
    assert rid in {r["run_id"] for r in acme.get("/runs").json()}
    with server.client(token("carol", tenant=None)) as nobody:  # a token without a tenant
        unified(nobody.get(f"/runs/{rid}"), 404)
    assert acme.get(f"/runs/{rid}").json()["status"] == "waiting_approval"  # globex changed nothing


def test_runs_are_listed_newest_first_and_filtered(acme):
    first = acme.post("/workflows/execute", json={"workflow": "chain"}).json()["execution_id"]
    second = acme.post("/workflows/execute", json={"workflow": "chain"}).json()["execution_id"]
    listed = [r["run_id"] for r in acme.get("/runs", params={"workflow": "chain", "status": "completed"}).json()]
    assert listed.index(second) < listed.index(first)
    assert [r["run_id"] for r in acme.get("/runs", params={"limit": 1}).json()] == [second]
    unified(acme.get("/runs", params={"status": "sleeping"}), 422)
    unified(acme.get("/runs", params={"limit": 0}), 422)


def test_cancel_a_waiting_run_and_refuse_a_finished_one(acme):
    rid = acme.post("/workflows/execute", json={"workflow": "payout"}).json()["execution_id"]
    assert acme.post(f"/runs/{rid}/cancel").json() == {"status": "canceled", "run_id": rid}
    run = acme.get(f"/runs/{rid}").json()
    assert run["status"] == "canceled" and run["pending"] == [] and run["error"]["code"] == "CANCELED"
    unified(acme.post(f"/runs/{rid}/cancel"), 409)
    unified(acme.post(f"/runs/{rid}/resume", json={}), 409)


def test_cancel_a_running_run(acme, server):
    log, hold = server.folder / "cancel.log", server.folder / "cancel.hold"
    hold.touch()
    rid = acme.post(
        "/workflows/execute?wait=false", json={"workflow": "long", "inputs": {"log": str(log), "hold": str(hold)}}
    ).json()["execution_id"]
    wait_for(lambda: log.exists() and "c" in log.read_text().split())
    assert acme.get("/queue").json()["running"] == [rid]
    assert acme.post(f"/runs/{rid}/cancel").json() == {"status": "canceled", "run_id": rid}
    hold.unlink()
    run = acme.get(f"/runs/{rid}").json()
    assert run["status"] == "canceled" and run["error"]["code"] == "CANCELED"
    assert set(run["steps"]) == {"a", "b"}  # c was stopped in flight; d and e never started
    time.sleep(0.3)
    assert log.read_text().split() == ["a", "b", "c"]


# -- events -----------------------------------------------------------------------------------------


def test_events_stream_while_the_run_executes_and_resume_with_last_event_id(acme, server):
    log, hold = server.folder / "sse.log", server.folder / "sse.hold"
    hold.touch()
    rid = acme.post(
        "/workflows/execute?wait=false", json={"workflow": "long", "inputs": {"log": str(log), "hold": str(hold)}}
    ).json()["execution_id"]
    first: list[dict] = []
    with acme.stream("GET", f"/runs/{rid}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in events(response):
            first.append(event)
            if event["event"] == "step.execution.completed" and event["data"]["step_id"] == "b":
                break  # the run is still going: c is held
    assert SQLiteRunStore(server.folder / "runs.db").get_run(rid).status == "running"
    hold.unlink()
    wait_for(lambda: acme.get(f"/runs/{rid}").json()["status"] == "completed")
    rest: list[dict] = []
    headers = {"Last-Event-ID": str(first[-1]["id"])}
    with acme.stream("GET", f"/runs/{rid}/events", headers=headers) as response:
        rest = list(events(response))  # the stream ends after the run's last event
    ids = [e["id"] for e in first + rest]
    assert ids == list(range(1, len(ids) + 1))  # nothing lost, nothing repeated
    assert first[0]["event"] == "run.started" and rest[-1]["event"] == "run.completed"
    done = [e["data"]["step_id"] for e in first + rest if e["event"] == "step.execution.completed"]
    assert done == ["a", "b", "c", "d", "e"]
    stored = [e.seq for e in SQLiteRunStore(server.folder / "runs.db").get_events(rid)]
    assert ids == stored
    with acme.stream("GET", f"/runs/{rid}/events", params={"after": ids[-2]}) as response:
        assert [e["id"] for e in events(response)] == [ids[-1]]
    unified(acme.get(f"/runs/{rid}/events", headers={"Last-Event-ID": "abc"}), 422)


# -- limits and the error format --------------------------------------------------------------------


def test_limits_unknown_routes_and_bad_bodies_answer_in_the_unified_format(acme):
    big = unified(acme.post("/workflows/validate", json={"manifest": "x" * 5000}), 413)
    assert big["details"] == {"max_body_bytes": 4096}

    def chunks():
        for _ in range(10):
            yield b" " * 1000

    unified(acme.post("/workflows/validate", content=chunks(), headers={"Content-Type": "application/json"}), 413)
    unified(acme.get("/nowhere"), 404)
    unified(acme.delete("/workflows"), 405)
    unified(acme.post("/workflows/validate", content=b"{not json", headers={"Content-Type": "application/json"}), 422)
    unified(acme.post("/workflows/validate", json={"manifest": "x", "extra": 1}), 422)


def test_queue_status_shows_only_the_callers_runs(acme, globex):
    body = acme.get("/queue").json()
    assert body["max_concurrent"] == 8 and body["stopping"] is False
    assert body["running"] == [] and body["completed"] >= 1
    assert set(globex.get("/queue").json()) == set(body)


def test_openapi_and_docs_are_served(server):
    with server.client() as c:
        spec = c.get("/openapi.json").json()
        assert c.get("/docs").status_code == 200
    assert {"/health", "/workflows/execute", "/runs/{run_id}/events", "/runs/{run_id}/resume", "/queue"} <= set(
        spec["paths"]
    )
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert json.dumps(spec)  # plain JSON


WAITS = """
name: waits
steps:
  - {id: hold, type: wait, until: {event: order.paid}}
  - {id: after, type: transform, expression: "{{ steps.hold.eventReceived.amount * 2 }}", needs: [hold]}
outputs: {doubled: {value: "{{ steps.after.result }}"}}
"""


def test_an_event_delivered_over_http_continues_a_waiting_run_followed_by_its_stream(acme):
    import threading

    waiting = acme.post("/workflows/execute", json={"manifest": WAITS}).json()
    assert waiting["status"] == "waiting_approval" and waiting["pending"][0]["payload"] == {"event": "order.paid"}
    rid = waiting["execution_id"]
    seen: list[dict] = []

    def follow() -> None:  # a waiting run's stream stays open until the run finishes
        with acme.stream("GET", f"/runs/{rid}/events") as response:
            seen.extend(events(response))

    reader = threading.Thread(target=follow)
    reader.start()
    wait_for(lambda: any(e["event"] == "run.waiting" for e in seen))
    assert reader.is_alive()
    answer = acme.post(f"/runs/{rid}/resume?wait=false", json={"event": {"order.paid": {"amount": 21}}})
    assert answer.status_code == 202 and answer.json() == {"status": "running", "execution_id": rid}
    reader.join(timeout=20)
    assert not reader.is_alive() and seen[-1]["event"] == "run.completed"
    assert [e["id"] for e in seen] == list(range(1, len(seen) + 1))
    run = acme.get(f"/runs/{rid}").json()
    assert run["status"] == "completed" and run["outputs"] == {"doubled": 42}
