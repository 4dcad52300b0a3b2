"""Approval-gated MCP tools wait durably: the run is `waiting_approval` with a request naming the
server, the tool and the arguments; resumed in another process, the tool is called exactly once
(the server counts its calls in a file); a rejection fails only that call, and an agent is told."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from owf_magics import OpenWorkflow

ROOT = Path(__file__).resolve().parent.parent
SERVER = str(ROOT / "tests" / "mcp_server.py")


def manifest(count_file: Path) -> str:
    return f"""
type: connector
kind: mcp-server
name: ledger
mcp:
  transport: stdio
  command: python
  args: ["{SERVER}", stdio]
  env: {{COUNT_FILE: "{count_file}"}}
  require_approval: {{always: [count], never: [echo]}}
---
name: book
inputs: {{note: {{type: string}}}}
steps:
  - {{id: e, connector: ledger, action: echo, input: {{text: before}}}}
  - {{id: p, connector: ledger, action: pid, needs: [e]}}
  - {{id: c, connector: ledger, action: count, input: {{note: "{{{{ inputs.note }}}}"}}, needs: [e]}}
outputs: {{lines: {{value: "{{{{ steps.c.output.result }}}}"}}}}
---
agents:
  - name: clerk
    model:
      provider: scripted
      responses:
        - tool_calls: [{{name: ledger_count, args: {{note: from-agent}}}}]
        - content: "I could not book it"
    toolset: [ledger]
workflows:
  - name: ask
    steps: [{{id: ask, agent: clerk, input: book it}}]
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def in_process(code: str, cwd: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_approval_survives_a_process_restart_and_calls_the_tool_once(tmp_path):
    count = tmp_path / "count.txt"
    flows = tmp_path / "ledger.yaml"
    flows.write_text(manifest(count))
    state = tmp_path / "runs.db"
    first = in_process(
        f"""
import json
import pytest

from owf_magics import OpenWorkflow
ow = OpenWorkflow(state={str(state)!r})
ow.load({str(flows)!r})
r = ow.workflow("book").execute(inputs={{"note": "pay ada"}})
print(json.dumps({{"status": r.status, "run_id": r.run_id, "pid": r.steps["p"].output["result"],
                  "pending": [{{"id": p.id, "kind": p.kind, "payload": p.payload}} for p in r.pending]}}))
""",
        tmp_path,
    )
    assert first["status"] == "waiting_approval"
    [request] = first["pending"]
    assert request["kind"] == "approval"
    assert request["payload"]["server"] == "ledger" and request["payload"]["tool"] == "count"
    assert request["payload"]["arguments"] == {"note": "pay ada"}
    assert lines(count) == 0  # nothing called before the answer
    assert not alive(first["pid"])  # the process ended without ow.close(): its server ended too

    second = in_process(
        f"""
import json
import pytest

from owf_magics import OpenWorkflow
ow = OpenWorkflow(state={str(state)!r})
ow.load({str(flows)!r})
r = ow.resume({first["run_id"]!r}, approvals={{{request["id"]!r}: True}})
again = ow.run({first["run_id"]!r})
print(json.dumps({{"status": r.status, "outputs": r.outputs, "again": again.status}}))
""",
        tmp_path,
    )
    assert second["status"] == "completed"
    assert second["outputs"] == {"lines": 1}
    assert lines(count) == 1  # called exactly once


def test_rejection_fails_only_that_call_and_an_agent_is_told(tmp_path):
    count = tmp_path / "count.txt"
    ow = OpenWorkflow(state=str(tmp_path / "runs.db"))
    try:
        ow.load(manifest(count))
        r = ow.workflow("book").execute(inputs={"note": "no"})
        assert r.status == "waiting_approval"
        assert r.steps["e"].output == "before"  # the never-approved tool ran
        done = ow.resume(r.run_id, approvals={r.pending[0].id: False})
        assert done.status == "failed"
        assert done.steps["c"].error.code == "CANCELED"
        assert done.steps["c"].error.details["reason"] == "rejected"

        r = ow.workflow("ask").execute()
        assert r.status == "waiting_approval"
        assert r.pending[0].payload["arguments"] == {"note": "from-agent"}
        done = ow.resume(r.run_id, approvals={r.pending[0].id: False})
        assert done.status == "completed"  # the agent went on, told the call was rejected
        assert done.steps["ask"].output == "I could not book it"
        assert lines(count) == 0
    finally:
        ow.close()


@pytest.mark.parametrize("backend", ["native", "langchain"])
def test_agent_call_approved_runs_once(tmp_path, backend):
    count = tmp_path / "count.txt"
    ow = OpenWorkflow(state=str(tmp_path / "runs.db"))
    try:
        ow.load(manifest(count))
        r = ow.workflow("ask").execute(prefer_backend=backend)
        assert r.status == "waiting_approval"
        assert r.pending[0].payload["tool"] == "count"
        assert lines(count) == 0
        done = ow.resume(r.run_id, approvals={r.pending[0].id: True})
        assert done.status == "completed"
        assert lines(count) == 1
    finally:
        ow.close()
