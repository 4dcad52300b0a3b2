"""MCP connectors over streamable HTTP on 127.0.0.1: every OpenFlow auth type checked by the
server (a wrong value refused), tools listed on first use when the server is down at load, and the
secret canary: auth values given as secrets appear in no output, trace, event, log or stored row."""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from owf_magics import OpenWorkflow

ROOT = Path(__file__).resolve().parent.parent
SERVER = str(ROOT / "tests" / "mcp_server.py")
CANARY = "canary-7f3a9c-sekret"
VALUES = {
    "api_key": CANARY,
    "bearer": CANARY,
    "basic": f"ada:{CANARY}",
    "custom_headers": {"X-Team": "owf", "X-Token": CANARY},
    "query_params": {"key": CANARY, "v": "2"},
}
AUTH = {
    "none": "{type: none}",
    "api_key": "{type: api_key, api_key: '{{ secrets.TOKEN }}', header_name: X-Owf-Key}",
    "bearer": "{type: bearer, token: '{{ secrets.TOKEN }}'}",
    "basic": "{type: basic, username: ada, password: '{{ secrets.TOKEN }}'}",
    "custom_headers": "{type: custom_headers, headers: {X-Team: owf, X-Token: '{{ secrets.TOKEN }}'}}",
    "query_params": "{type: query_params, params: {key: '{{ secrets.TOKEN }}', v: '2'}}",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int, mode: str = "http") -> subprocess.Popen[bytes]:
    env = {**os.environ, "AUTH_VALUES": json.dumps(VALUES), "AUTH_HEADER": "X-Owf-Key"}
    proc = subprocess.Popen(
        [sys.executable, SERVER, mode, str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the MCP test server did not start")


@pytest.fixture(scope="module")
def server():
    port = free_port()
    proc = start_server(port)
    yield port
    proc.terminate()
    proc.wait(10)


def manifest(port: int, auth: str, name: str = "remote") -> str:
    return f"""
type: connector
kind: mcp-server
name: {name}
mcp: {{transport: streamable-http, endpoint: "http://127.0.0.1:{port}/{auth}/mcp", retry_attempts: 1}}
auth: {AUTH[auth]}
---
name: call-{name}
steps:
  - {{id: a, connector: {name}, action: add, input: {{a: 40, b: 2}}}}
  - {{id: e, connector: {name}, action: echo, input: {{text: hi}}}}
outputs: {{total: {{value: "{{{{ steps.a.output.total }}}}"}}}}
"""


@pytest.mark.parametrize("auth", list(AUTH))
def test_each_auth_type_is_checked_by_the_server(server, auth):
    ow = OpenWorkflow(state=False)
    try:
        ow.load(manifest(server, auth))  # no secrets at load: listed on first use unless auth is none
        assert (auth == "none") == ow.connector("remote").model.tools_listed
        r = ow.workflow("call-remote").execute(secrets={"TOKEN": CANARY})
        assert r.status == "completed", r.error
        assert r.outputs["total"] == 42 and r.steps["e"].output == "hi"
        assert ow.connector("remote").model.tools_listed  # listed on first use
        if auth != "none":
            wrong = ow.workflow("call-remote").execute(secrets={"TOKEN": "wrong-" + CANARY[:4]})
            assert wrong.status == "failed"
            err = wrong.steps["a"].error
            assert err.code == "BACKEND_ERROR"
            assert "remote" in err.message and "401" in err.message
            assert err.details["attempts"] == 1  # retry_attempts: 1, but a refusal is not retried
    finally:
        ow.close()


def test_basic_auth_header_is_the_standard_encoding(server):
    # the server compares against base64("ada:" + password) computed its own way
    assert base64.b64encode(VALUES["basic"].encode()).decode().startswith("YWRh")


def test_unreachable_at_load_lists_on_first_use(tmp_path):
    port = free_port()
    ow = OpenWorkflow(state=False)
    try:
        ow.load(manifest(port, "none", "late"))
        warn = [w for w in ow.warnings if w.code == "UNAVAILABLE"]
        assert warn and "late" in warn[0].message and warn[0].line is not None
        proc = start_server(port)
        try:
            r = ow.workflow("call-late").execute()
            assert r.status == "completed", r.error
            assert r.outputs["total"] == 42
            bad = OpenWorkflow(state=False)
            bad.load(manifest(free_port(), "none", "late"))
            bad.load("name: typo\nsteps: [{id: a, connector: late, action: ad}]")  # not known yet: accepted
            bad.close()
            ow.load("name: typo2\nsteps: [{id: a, connector: late, action: ad}]")  # known now: refused
        except Exception as exc:
            assert getattr(exc, "diagnostics", None), exc
            assert exc.diagnostics[0].code == "UNKNOWN_REFERENCE"  # type: ignore[attr-defined]
            assert "add" in (exc.diagnostics[0].hint or "")  # type: ignore[attr-defined]
        else:
            pytest.fail("the unknown tool was accepted once the tools were known")
        finally:
            proc.terminate()
            proc.wait(10)
    finally:
        ow.close()


def test_lazy_tool_name_typo_gets_did_you_mean(server):
    ow = OpenWorkflow(state=False)
    try:
        ow.load(manifest(server, "bearer", "lazy"))
        ow.load("name: t\nsteps: [{id: a, connector: lazy, action: ad, input: {a: 1, b: 2}}]")
        r = ow.workflow("t").execute(secrets={"TOKEN": CANARY})
        err = r.steps["a"].error
        assert err.code == "VALIDATION" and "did you mean 'add'" in err.message
    finally:
        ow.close()


def test_secret_canary(server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    state = tmp_path / "runs.db"
    ow = OpenWorkflow(state=str(state))
    seen: list[str] = []

    def collect(event: dict) -> None:
        seen.append(repr(event))

    try:
        for auth in ("bearer", "query_params", "basic", "custom_headers", "api_key"):
            ow.load(manifest(server, auth, f"s_{auth}"))
            r = ow.workflow(f"call-s_{auth}").execute(secrets={"TOKEN": CANARY}, callback=collect)
            assert r.status == "completed", r.error
            seen.extend([repr(r.outputs), repr(r.steps), r.trace.to_csv(), repr(r.events), repr(r.usage)])
            wrong = ow.workflow(f"call-s_{auth}").execute(secrets={"TOKEN": CANARY + "x"})
            assert wrong.status == "failed"
            seen.extend([repr(wrong.error), repr(wrong.steps), repr(wrong.events)])
        seen.append(repr(ow.connector("s_bearer")))
    finally:
        ow.close()
    text = "\n".join(seen) + caplog.text
    assert "s_bearer" in text
    assert CANARY not in text
    assert base64.b64encode(f"ada:{CANARY}".encode()).decode() not in text
    rows = sqlite3.connect(state).iterdump()
    assert CANARY not in "\n".join(rows)


def test_sse_transport_and_websocket_unavailable():
    port = free_port()
    proc = start_server(port, "sse")
    ow = OpenWorkflow(state=False)
    try:
        ow.load(
            f"""
type: connector
kind: mcp-server
name: old
mcp: {{transport: sse, endpoint: "http://127.0.0.1:{port}/sse"}}
---
type: connector
kind: mcp-server
name: ws
mcp: {{transport: websocket, endpoint: "ws://127.0.0.1:{port}/ws"}}
---
name: both
steps:
  - {{id: a, connector: old, action: add, input: {{a: 1, b: 1}}}}
  - {{id: w, connector: ws, action: anything, input: {{}}}}
"""
        )
        assert ow.connector("old").model.tools_listed
        r = ow.workflow("both").execute()
        assert r.steps["a"].output == {"total": 2}
        assert r.steps["w"].error.code == "UNAVAILABLE"
        assert "websocket" in r.steps["w"].error.message
    finally:
        ow.close()
        proc.terminate()
        proc.wait(10)


def test_auth_from_a_declared_environment_variable(server):
    manifest_text = manifest(server, "bearer", "envy").replace(
        "auth: {type: bearer, token: '{{ secrets.TOKEN }}'}", "auth: {type: bearer, token: '{{ env.MCP_TOKEN }}'}"
    )
    ow = OpenWorkflow(state=False, environment={"MCP_TOKEN": CANARY}, env=["MCP_TOKEN"])
    undeclared = OpenWorkflow(state=False, environment={"MCP_TOKEN": CANARY})
    try:
        ow.load(manifest_text)
        assert ow.connector("envy").model.tools_listed  # the token was there at load
        r = ow.workflow("call-envy").execute()
        assert r.status == "completed", r.error
        undeclared.load(manifest_text.replace("retry_attempts: 1", "retry_attempts: 0"))
        assert not undeclared.connector("envy").model.tools_listed  # not declared: not read
    finally:
        ow.close()
        undeclared.close()
