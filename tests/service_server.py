"""`owf serve` as the service tests meet it: a real uvicorn server in a subprocess on 127.0.0.1,
tokens signed the way a client's identity provider would, and a reader of server-sent events."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt

from tests.conftest import ROOT

SECRET = "service-test-secret-0123456789abcdef-0123456789"
ALL_SCOPES = "workflows:read workflows:run runs:read runs:approve"

# what the servers serve: a five-step chain, a payment that needs an approval, a run whose third
# step blocks while a file exists (a run in flight for as long as a test wants), and a slow chain
FLOWS = """
connectors:
  - name: ops
    kind: sdk
    actions:
      - {name: log, handler: {function: tests.handlers.log_call}}
  - name: bank
    kind: sdk
    approval: {required: always}
    actions:
      - {name: pay, handler: {function: tests.handlers.echo}}
workflows:
  - name: chain
    description: five steps, one after another
    inputs: {x: {type: string, default: a}}
    steps:
      - {id: s1, type: transform, expression: "{{ inputs.x }}1"}
      - {id: s2, type: transform, expression: "{{ steps.s1.output.result }}2"}
      - {id: s3, type: transform, expression: "{{ steps.s2.output.result }}3"}
      - {id: s4, type: transform, expression: "{{ steps.s3.output.result }}4"}
      - {id: s5, type: transform, expression: "{{ steps.s4.output.result }}5"}
    outputs: {out: {value: "{{ steps.s5.output.result }}"}}
  - name: payout
    steps: [{id: pay, connector: bank, action: pay, input: {amount: 5}}]
    outputs: {paid: {value: "{{ steps.pay.output.echo.amount }}"}}
  - name: long
    inputs: {log: {type: string}, hold: {type: string, default: ""}}
    steps:
      - {id: a, connector: ops, action: log, input: {name: a, path: "{{ inputs.log }}"}}
      - {id: b, connector: ops, action: log, input: {name: b, path: "{{ inputs.log }}"}, needs: [a]}
      - {id: c, connector: ops, action: log, input: {name: c, path: "{{ inputs.log }}", hold: "{{ inputs.hold }}"}, needs: [b]}
      - {id: d, connector: ops, action: log, input: {name: d, path: "{{ inputs.log }}"}, needs: [c]}
      - {id: e, connector: ops, action: log, input: {name: e, path: "{{ inputs.log }}"}, needs: [d]}
    outputs: {last: {value: "{{ steps.e.output.done }}"}}
"""


def token(
    sub: str = "alice",
    tenant: str | None = "acme",
    scope: str = ALL_SCOPES,
    *,
    key: Any = SECRET,
    algorithm: str = "HS256",
    expires_in: float = 600,
    **claims: Any,
) -> str:
    """A signed JWT with `exp` (now + `expires_in`), `iat`, `sub`, `scope` and `tenant`."""
    now = int(time.time())
    body: dict[str, Any] = {"sub": sub, "scope": scope, "iat": now, "exp": now + int(expires_in), **claims}
    if tenant is not None:
        body["tenant"] = tenant
    return jwt.encode(body, key, algorithm=algorithm)


@dataclass
class Server:
    """One `owf serve` process."""

    url: str
    proc: subprocess.Popen[str]
    log: Path

    def client(self, bearer: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.stdout:
                self.proc.stdout.close()

    def stderr(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


def write_flows(folder: Path) -> Path:
    path = folder / "flows.yaml"
    path.write_text(FLOWS)
    return path


def start(
    folder: Path,
    *args: str,
    state: Path | None = None,
    env: dict[str, str] | None = None,
    name: str = "server",
    timeout: float = 30,
) -> Server:
    """Start `owf serve ARGS --port 0` and wait for the line that names its port."""
    environ = {**os.environ, "OWF_JWT_SECRET": SECRET, "PYTHONPATH": str(ROOT), **(env or {})}
    log = folder / f"{name}.log"
    command = [sys.executable, "-m", "owf_magics.cli", "serve", *args, "--port", "0"]
    command += ["--state", str(state or folder / "runs.db")]
    if "--log-level" not in args and "OWF_LOG_LEVEL" not in (env or {}):
        command += ["--log-level", "warning"]
    with log.open("w") as err:
        proc = subprocess.Popen(command, cwd=ROOT, env=environ, stdout=subprocess.PIPE, stderr=err, text=True)
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if "listening on" in line:
                return Server(line.split("listening on ", 1)[1].strip(), proc, log)
        if proc.poll() is not None:
            break
    proc.kill()
    proc.wait()
    raise AssertionError(f"owf serve did not start: {log.read_text()}")


def events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The server-sent events of a streamed response: ``{"id", "event", "data"}`` each."""
    fields: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in fields:
                yield {"id": int(fields["id"]), "event": fields.get("event"), "data": json.loads(fields["data"])}
            fields = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(":")
            fields[key] = value.removeprefix(" ")


def wait_for(check: Any, timeout: float = 20, interval: float = 0.05) -> Any:
    """Poll `check()` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {check}")
