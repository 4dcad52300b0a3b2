"""Several `owf serve` processes on one run store, a graceful shutdown that leaves a run resumable,
and the settings the service refuses to start with."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from owf_magics.runs.store import SQLiteRunStore
from owf_magics.service.auth import TokenChecker
from owf_magics.service.config import ServiceConfig, load_keys
from owf_magics.service.errors import ApiError
from tests.conftest import ROOT
from tests.service_server import SECRET, events, start, token, wait_for, write_flows

pytestmark = pytest.mark.slow


@pytest.fixture
def flows(tmp_path):
    return str(write_flows(tmp_path))


def test_two_workers_on_one_store_share_runs(tmp_path, flows):
    one, two = start(tmp_path, flows, name="one"), start(tmp_path, flows, name="two")
    try:
        with one.client(token()) as a, two.client(token()) as b:
            waiting = a.post("/workflows/execute", json={"workflow": "payout"}).json()
            rid, request = waiting["execution_id"], waiting["pending"][0]["id"]
            assert b.get(f"/runs/{rid}").json()["status"] == "waiting_approval"  # seen by the other worker
            assert rid in {r["run_id"] for r in b.get("/runs").json()}
            done = b.post(f"/runs/{rid}/resume", json={"approvals": {request: True}}).json()  # resumed there
            assert done["status"] == "completed" and done["outputs"] == {"paid": 5}
            assert a.get(f"/runs/{rid}").json()["status"] == "completed"
            with a.stream("GET", f"/runs/{rid}/events") as response:
                kinds = [e["event"] for e in events(response)]
            assert kinds[0] == "run.started" and "run.resumed" in kinds and kinds[-1] == "run.completed"

            # a run executing on one worker, canceled through the other
            log, hold = tmp_path / "x.log", tmp_path / "x.hold"
            hold.touch()
            body = {"workflow": "long", "inputs": {"log": str(log), "hold": str(hold)}}
            rid = a.post("/workflows/execute?wait=false", json=body).json()["execution_id"]
            wait_for(lambda: log.exists() and "c" in log.read_text().split())
            assert b.post(f"/runs/{rid}/cancel").json() == {"status": "cancel_requested", "run_id": rid}
            wait_for(lambda: b.get(f"/runs/{rid}").json()["status"] == "canceled")
            hold.unlink()
            # and a run from an inline manifest, resumed by the worker that did not load it
            inline = (
                "connector: {name: gate, kind: sdk, approval: {required: always}}\n"
                "actions: [{name: go, handler: {http: {url: 'http://127.0.0.1:9/never'}}}]\n---\n"
                "name: gated\nsteps: [{id: g, connector: gate, action: go}]\n"
            )
            waiting = a.post("/workflows/execute", json={"manifest": inline}).json()
            assert waiting["status"] == "waiting_approval"
            rejected = b.post(
                f"/runs/{waiting['execution_id']}/resume", json={"approvals": {waiting["pending"][0]["id"]: False}}
            ).json()
            assert rejected["status"] == "failed" and rejected["workflow"] == "gated"
    finally:
        one.stop()
        two.stop()


def test_a_shutdown_leaves_a_running_run_resumable_on_another_worker(tmp_path, flows):
    log, hold = tmp_path / "calls.log", tmp_path / "hold"
    hold.touch()
    first = start(tmp_path, flows, "--shutdown-grace", "1", name="first")
    with first.client(token()) as c:
        body = {"workflow": "long", "inputs": {"log": str(log), "hold": str(hold)}}
        rid = c.post("/workflows/execute?wait=false", json=body).json()["execution_id"]
    wait_for(lambda: log.exists() and "c" in log.read_text().split())
    first.proc.send_signal(signal.SIGTERM)
    store = SQLiteRunStore(tmp_path / "runs.db")
    wait_for(lambda: store.get_run(rid).status == "waiting_approval", timeout=30)
    assert [e.type for e in store.get_events(rid)][-1] == "run.interrupted"
    hold.unlink()  # the step still in flight can end now, and with it the process
    assert first.stop() in (0, -15)
    assert "Traceback" not in first.stderr()

    second = start(tmp_path, flows, name="second")
    try:
        with second.client(token()) as c:
            done = c.post(f"/runs/{rid}/resume", json={}).json()
        assert done["status"] == "completed" and done["outputs"] == {"last": "e"}
        assert log.read_text().split() == ["a", "b", "c", "c", "d", "e"]  # only the step in flight ran again
    finally:
        second.stop()


def test_insecure_dev_allow_handlers_cors_and_env(tmp_path, flows):
    region = tmp_path / "region.yaml"
    region.write_text(
        "name: region\nsteps: [{id: r, type: transform, expression: '{{ env.OWF_REGION }}'}]\n"
        "outputs: {r: {value: '{{ steps.r.output.result }}'}}\n"
    )
    dev = start(
        tmp_path,
        flows,
        str(region),
        "--insecure-dev",
        "--allow-handlers",
        "--cors-origin",
        "http://ui.test",
        "--env",
        "OWF_REGION",
        env={"OWF_JWT_SECRET": "", "OWF_REGION": "eu-west"},
    )
    try:
        with dev.client() as c:
            allowed = c.get("/health", headers={"Origin": "http://ui.test"})
            assert allowed.headers["access-control-allow-origin"] == "http://ui.test"
            assert "access-control-allow-origin" not in c.get("/health", headers={"Origin": "http://evil.test"}).headers
            assert c.post("/workflows/execute", json={"workflow": "chain"}).json()["outputs"] == {"out": "a12345"}
            code = (
                "connector: {name: x, kind: sdk}\nactions: [{name: e, handler: {function: tests.handlers.echo}}]\n"
                "---\nname: w\nsteps: [{id: s, connector: x, action: e, input: {v: 1}}]\n"
                "outputs: {o: {value: '{{ steps.s.output.echo.v }}'}}\n"
            )
            assert c.post("/workflows/execute", json={"manifest": code}).json()["outputs"] == {"o": 1}
            assert c.post("/workflows/execute", json={"workflow": "region"}).json()["outputs"] == {"r": "eu-west"}
            inline = "name: sneaky\nsteps: [{id: r, type: transform, expression: '{{ env.OWF_REGION }}'}]\n"
            refused = c.post("/workflows/execute", json={"manifest": inline})  # request manifests read no env
            assert refused.status_code == 422 and refused.json()["details"]["errors"][0]["code"] == "UNKNOWN_REFERENCE"
            declared = "runtime: {environment: [{name: OWF_REGION}]}\n" + inline  # declaring it does not help
            ran = c.post("/workflows/execute", json={"manifest": declared}).json()
            assert ran["status"] == "failed" and "eu-west" not in json.dumps(ran)
            assert len(c.get("/runs").json()) == 4
    finally:
        dev.stop()


def owf_serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    environ = {k: v for k, v in os.environ.items() if k != "OWF_JWT_SECRET"} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "owf_magics.cli", "serve", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environ,
        timeout=60,
        check=False,
    )


def test_the_service_refuses_to_start_without_a_safe_key(tmp_path, flows):
    no_key = owf_serve(flows)
    assert no_key.returncode == 2 and "no key" in no_key.stderr and "OWF_JWT_SECRET" in no_key.stderr
    short = owf_serve(flows, env={"OWF_JWT_SECRET": "short"})
    assert short.returncode == 2 and "at least 32" in short.stderr
    public = owf_serve(flows, "--insecure-dev", "--host", "0.0.0.0")
    assert public.returncode == 2 and "loopback" in public.stderr
    missing = owf_serve(flows, "--secret", "OWF_NOT_SET_ANYWHERE", env={"OWF_JWT_SECRET": SECRET})
    assert missing.returncode == 2 and "OWF_NOT_SET_ANYWHERE" in missing.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: w\nsteps: [{id: a, type: transfrom}]\n")
    broken = owf_serve(str(bad), "--port", "0", env={"OWF_JWT_SECRET": SECRET})
    assert broken.returncode == 1 and "bad.yaml:2" in broken.stderr and "INVALID_VALUE" in broken.stderr


def test_es256_tokens_and_the_audience_and_issuer(tmp_path):
    private = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "ec.pem"
    pem.write_bytes(
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    keys = load_keys({}, public_key=str(pem))
    assert set(keys) == {"ES256"}
    checker = TokenChecker(ServiceConfig(keys=keys, audience="owf", issuer="https://id.example"))
    now = int(time.time())
    claims = {
        "sub": "s",
        "tenant": "t",
        "scope": "runs:read",
        "exp": now + 60,
        "aud": "owf",
        "iss": "https://id.example",
    }
    who = checker.principal(jwt.encode(claims, private, algorithm="ES256"))
    assert (who.sub, who.tenant, who.scopes) == ("s", "t", frozenset({"runs:read"}))
    for wrong in ({"aud": "other"}, {"iss": "https://evil.example"}, {"aud": None}):
        bad = {k: v for k, v in (claims | wrong).items() if v is not None}
        with pytest.raises(ApiError) as err:
            checker.principal(jwt.encode(bad, private, algorithm="ES256"))
        assert err.value.status == 401
    # an HS256 token is refused by a server that only has the public key (no algorithm confusion)
    with pytest.raises(ApiError) as err:
        checker.principal(jwt.encode(claims, SECRET, algorithm="HS256"))
    assert err.value.status == 401 and err.value.details == {"accepted": ["ES256"]}


def test_a_remembered_token_still_expires():
    checker = TokenChecker(ServiceConfig(keys={"HS256": SECRET.encode()}, leeway=0))
    bearer = jwt.encode({"sub": "s", "scope": "runs:read", "exp": time.time() + 1}, SECRET, algorithm="HS256")
    assert checker.principal(bearer).sub == "s"
    assert checker.principal(bearer).sub == "s"  # the second time from memory
    time.sleep(1.2)
    with pytest.raises(ApiError) as err:
        checker.principal(bearer)
    assert err.value.status == 401 and err.value.message == "the token has expired"
