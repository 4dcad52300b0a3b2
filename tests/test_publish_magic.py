"""``%workflow publish`` through a real IPython shell against a real `owf serve` subprocess on
127.0.0.1 (the fixture of tests/test_service_publish.py): what it publishes is on the server and
runs there; ``--version`` picks a loaded version; the service's refusals (CONFLICT, FORBIDDEN,
VALIDATION with its diagnostics), an unreachable server and bad arguments fail the cell."""

from __future__ import annotations

import socket

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from owf_magics.errors import OWFError
from tests.ipython_shell import magic_shell
from tests.service_server import ALL_SCOPES, start, token

pytest.importorskip("fastapi")

WRITE = f"{ALL_SCOPES} workflows:write"


def greeter(version: str, word: str, name: str = "greeter") -> str:
    return f"""
name: {name}
version: {version}
inputs: {{who: {{type: string, default: world}}}}
steps:
  - {{id: say, type: transform, expression: "{word} {{{{ inputs.who }}}}"}}
outputs: {{text: {{value: "{{{{ steps.say.output.result }}}}"}}}}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start(tmp_path_factory.mktemp("publish-magic"), name="magic")
    yield s
    s.stop()


@pytest.fixture
def shell(monkeypatch):
    monkeypatch.setenv("OWF_TOKEN", token(tenant="notebook", scope=WRITE))
    with magic_shell(state="none") as ip:
        yield ip


def run(ip, text):
    with capture_output() as cap:
        result = ip.run_cell(text)
    return result, cap


def define(ip, body):
    result, _ = run(ip, f"%%workflow --quiet\n{body}")
    assert result.success, result.error_in_exec


def versions(server, name):
    with server.client(token(tenant="notebook", scope=WRITE)) as c:
        return [v["version"] for v in c.get(f"/workflows/{name}/versions").json()]


def test_publish_puts_the_loaded_workflow_on_the_server(shell, server):
    define(shell, greeter("1.0.0", "hello"))
    result, cap = run(shell, f"%workflow publish greeter --url {server.url} -o answer")
    assert result.success, result.error_in_exec
    assert f"published greeter@1.0.0 to {server.url}" in cap.stdout
    assert shell.user_ns["answer"]["workflows"] == [{"name": "greeter", "version": "1.0.0"}]
    assert versions(server, "greeter") == ["1.0.0"]
    with server.client(token(tenant="notebook", scope=WRITE)) as c:
        done = c.post("/workflows/execute", json={"workflow": "greeter", "inputs": {"who": "nb"}}).json()
    assert done["outputs"] == {"text": "hello nb"}

    # the same version again: the service's CONFLICT fails the cell, rendered short
    result, cap = run(shell, f"%workflow publish greeter --url {server.url}")
    exc = result.error_in_exec
    assert isinstance(exc, OWFError) and exc.code == "CONFLICT" and exc.details["status"] == 409
    assert "CONFLICT" in cap.stdout and "Traceback (most recent call last)" not in cap.stdout
    # another tenant's token without workflows:write: FORBIDDEN
    shell.run_line_magic("env", f"OWF_TOKEN={token(tenant='notebook', scope=ALL_SCOPES)}")
    define(shell, greeter("1.1.0", "hi"))
    result, _ = run(shell, f"%workflow publish greeter --url {server.url}")
    assert isinstance(result.error_in_exec, OWFError) and result.error_in_exec.code == "FORBIDDEN"
    assert versions(server, "greeter") == ["1.0.0"]


def test_version_picks_a_loaded_version_and_server_is_the_clis_spelling(shell, server):
    define(shell, greeter("2.0.0", "old", name="pick") + "---" + greeter("2.1.0", "new", name="pick"))
    result, cap = run(shell, f"%workflow publish pick --version 2.0.0 --server {server.url}")
    assert result.success, result.error_in_exec
    assert "published pick@2.0.0" in cap.stdout
    assert versions(server, "pick") == ["2.0.0"]
    result, cap = run(shell, f"%workflow publish pick --url {server.url}")  # the highest loaded
    assert result.success and "published pick@2.1.0" in cap.stdout
    assert versions(server, "pick") == ["2.1.0", "2.0.0"]


def test_bad_arguments_fail_before_anything_is_sent(shell, server):
    define(shell, greeter("3.0.0", "x", name="checked"))
    cases = {
        f"%workflow publish chekced --url {server.url}": "Did you mean 'checked'?",
        f"%workflow publish checked --version one --url {server.url}": "not a semantic version",
        f"%workflow publish checked --version 9.9.9 --url {server.url}": "loaded: 3.0.0",
        "%workflow publish checked": "--url",
        f"%workflow publish --url {server.url}": "one workflow NAME",
        f"%workflow publish checked --url {server.url} -o 1x": "-o takes a Python variable name",
    }
    for line, text in cases.items():
        result, _ = run(shell, line)
        assert isinstance(result.error_in_exec, UsageError), line
        assert text in str(result.error_in_exec), line
    with server.client(token(tenant="notebook", scope=WRITE)) as c:
        assert c.get("/workflows/checked/versions").status_code == 404


def test_an_unreachable_server_and_a_refused_manifest_fail_the_cell(shell, server):
    define(shell, greeter("4.0.0", "x", name="far"))
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result, cap = run(shell, f"%workflow publish far --url http://127.0.0.1:{port}")
    exc = result.error_in_exec
    assert isinstance(exc, OWFError) and exc.code == "UNAVAILABLE"
    assert "UNAVAILABLE" in cap.stdout and "is it running?" in cap.stdout

    # loaded here, refused there: published manifests may not run Python functions
    define(
        shell,
        "connectors:\n  - name: ops\n    kind: sdk\n    actions:\n"
        "      - {name: log, handler: {function: tests.handlers.echo}}\n"
        "workflows:\n  - name: local\n    version: 1.0.0\n    steps: [{id: a, connector: ops, action: log}]\n",
    )
    result, cap = run(shell, f"%workflow publish local --url {server.url}")
    exc = result.error_in_exec
    assert isinstance(exc, OWFError) and exc.code == "VALIDATION" and exc.details["errors"]
    assert exc.details["errors"][0]["code"] in cap.stdout and "Traceback (most recent" not in cap.stdout
