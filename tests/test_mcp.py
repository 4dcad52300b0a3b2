"""MCP connectors over stdio, against a real server built with the SDK's server API
(tests/mcp_server.py): tools listed and filtered, called from action steps and agents' tool loops,
errors, timeouts, a server killed mid-run, 50 parallel calls, spellings, the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from owf_magics import ManifestError, OpenWorkflow

ROOT = Path(__file__).resolve().parent.parent
SERVER = str(ROOT / "tests" / "mcp_server.py")

CALC = f"""
type: connector
kind: mcp-server
name: calc
namespace: test
version: 1.0.0
mcp:
  transport: stdio
  command: python
  args: ["{SERVER}", stdio]
  exclude: [die]
  timeout: 1500
"""


@pytest.fixture(scope="module")
def ow():
    ow = OpenWorkflow(state=False)
    ow.load(CALC)
    yield ow
    ow.close()


def run(ow: OpenWorkflow, steps: str, **kw):
    name = f"w{abs(hash(steps))}"
    ow.load(f"name: {name}\nsteps:\n{steps}")
    return ow.workflow(name).execute(**kw)


def test_tools_are_listed_at_load_as_actions_filtered(ow):
    conn = ow.connector("calc").model
    names = [a.name for a in conn.actions]
    assert "add" in names and "echo" in names
    assert "die" not in names  # exclude
    add = conn.action("add")
    assert add.description == "Add two integers."
    assert add.input["required"] == ["a", "b"]
    assert add.input["properties"]["a"]["type"] == "integer"
    assert ow.warnings == []


def test_expose_keeps_only_the_listed_tools():
    ow = OpenWorkflow(state=False)
    try:
        ow.load(CALC.replace("exclude: [die]", "expose: [add, pid]"))
        assert sorted(a.name for a in ow.connector("calc").model.actions) == ["add", "pid"]
    finally:
        ow.close()


def test_action_steps_structured_text_and_json_outputs(ow):
    r = run(
        ow,
        """
  - {id: a, connector: calc, action: add, input: {a: 2, b: 3}}
  - {id: t, connector: calc, action: echo, input: {text: "sum {{ steps.a.output.total }}"}}
  - {id: j, connector: "connector:test/calc@1.0.0.as_json", input: {key: abc}}
""",
    )
    assert r.status == "completed", r.error
    assert r.steps["a"].output == {"total": 5}  # structured content
    assert r.steps["t"].output == "sum 5"  # text content
    assert r.steps["j"].output == {"key": "abc", "length": 3}  # text that is JSON, decoded


def test_unknown_tool_is_unknown_reference_with_did_you_mean(ow):
    with pytest.raises(ManifestError) as err:
        ow.load("name: bad\nsteps:\n  - {id: a, connector: calc, action: ad, input: {}}")
    diag = err.value.diagnostics[0]
    assert diag.code == "UNKNOWN_REFERENCE"
    assert "'ad'" in diag.message and "add" in (diag.hint or "")
    assert diag.line == 3


def test_excluded_tool_is_unknown(ow):
    with pytest.raises(ManifestError) as err:
        ow.load("name: bad2\nsteps:\n  - {id: a, connector: calc, action: die}")
    assert err.value.diagnostics[0].code == "UNKNOWN_REFERENCE"


def test_input_checked_against_the_tool_schema(ow):
    with pytest.raises(ManifestError) as err:  # at load: what no template can change
        ow.load("name: bad3\nsteps:\n  - {id: a, connector: calc, action: add, input: {a: one}}")
    found = {(d.code, d.path.split(".")[-1]) for d in err.value.diagnostics}
    assert found == {("MISSING_REQUIRED_FIELD", "input"), ("INVALID_TYPE", "a")}
    assert all(d.line == 3 and d.step_id == "a" for d in err.value.diagnostics)
    # at run time: the rendered input
    r = run(ow, "  - {id: a, connector: calc, action: add, input: {a: \"{{ 'one' }}\", b: 2}}")
    assert r.status == "failed"
    assert r.steps["a"].error.code == "VALIDATION"
    assert r.steps["a"].error.details["field"] == "a"


def test_tool_error_fails_the_step_with_the_servers_message(ow):
    r = run(ow, "  - {id: a, connector: calc, action: broken, input: {reason: flat tyre}}")
    err = r.steps["a"].error
    assert err.code == "BACKEND_ERROR"
    assert "flat tyre" in err.message and "calc" in err.message


def test_slow_tool_hits_the_timeout_and_the_session_stays(ow):
    r = run(
        ow,
        """
  - {id: s, connector: calc, action: slow, input: {seconds: 5}, continueOnError: true}
  - {id: e, connector: calc, action: echo, input: {text: after}, needs: [s]}
""",
    )
    assert r.steps["s"].error.code == "TIMEOUT"
    assert r.steps["s"].error.details["timeout_ms"] == 1500
    assert r.steps["e"].output == "after"


def test_server_killed_mid_run_fails_the_step_and_restarts_for_the_next_call():
    ow2 = OpenWorkflow(state=False)
    try:
        ow2.load(CALC.replace("exclude: [die]", "exclude: []"))
        r = run(
            ow2,
            """
  - {id: p1, connector: calc, action: pid}
  - {id: kill, connector: calc, action: die, input: {}, needs: [p1], continueOnError: true}
  - {id: p2, connector: calc, action: pid, needs: [kill]}
""",
        )
        err = r.steps["kill"].error
        assert err.code == "BACKEND_ERROR"
        assert "calc" in err.message
        first, second = r.steps["p1"].output["result"], r.steps["p2"].output["result"]
        assert first != second  # a new server process answered
        assert not _alive(first)
    finally:
        ow2.close()
    assert not _alive(second)  # closing the registry ended the restarted server too


def test_fifty_parallel_calls_share_one_server(ow):
    r = run(
        ow,
        """
  - {id: p0, connector: calc, action: pid}
  - id: many
    type: forEach
    items: "{{ range(50) | list }}"
    maxConcurrency: 50
    needs: [p0]
    steps:
      - {id: e, connector: calc, action: add, input: {a: "{{ item }}", b: 1}}
  - {id: p, connector: calc, action: pid, needs: [many]}
""",
    )
    assert r.status == "completed", r.error
    results = r.steps["many"].output["results"]
    assert [x["output"]["total"] for x in results] == list(range(1, 51))
    assert r.steps["p0"].output == r.steps["p"].output  # one server process served them all


AGENT = """
agents:
  - name: mathy
    model:
      provider: scripted
      responses:
        - tool_calls: [{name: calc_add, args: {a: 20, b: 22}}, {name: calc_count, args: {note: called}}]
        - tool_calls: [{name: calc_broken, args: {reason: nope}}]
        - content: "The answer is 42"
    toolset: [calc]
workflows:
  - name: ask
    steps: [{id: ask, agent: mathy, input: "what is 20 + 22?"}]
"""


@pytest.mark.parametrize("backend", ["native", "langchain"])
def test_agents_call_mcp_tools_in_their_tool_loop(backend, tmp_path):
    count = tmp_path / "count.txt"
    ow = OpenWorkflow(state=False)
    try:
        ow.load(CALC.replace("exclude: [die]", f'exclude: [die]\n  env: {{COUNT_FILE: "{count}"}}'))
        ow.load(AGENT)
        r = ow.workflow("ask").execute(prefer_backend=backend)
        assert r.status == "completed", r.error
        assert r.steps["ask"].output == "The answer is 42"  # a tool error went back to the model
        assert count.read_text() == "called\n"  # the server ran the agent's call, once
    finally:
        ow.close()


def test_native_agent_sees_tool_results(ow):
    from owf_magics.agents.loop import agent_tools

    ow.load(AGENT)
    tools = agent_tools(ow, ow.agent("mathy").model)
    assert {"calc_add", "calc_echo"} <= set(tools)
    assert "calc_die" not in tools
    assert tools["calc_add"].parameters["required"] == ["a", "b"]


def test_openflow_and_taxonomy_spellings_normalise_with_warnings():
    ow = OpenWorkflow(state=False)
    loaded = ow.load(
        """
type: connector
kind: mcp
name: gh
url: http://127.0.0.1:9/mcp
transport: http
retry_attempts: 0
mcp:
  available_tools: [a]
  filter: [b]
  requireApproval: always
auth: {type: apiKey, in: header, name: X-Key, prefix: "Token ", value: "{{ secrets.K }}"}
"""
    )
    conn = loaded[0].model
    assert conn.kind == "mcp-server"
    assert conn.mcp.transport == "streamable-http"
    assert conn.mcp.endpoint == "http://127.0.0.1:9/mcp"
    assert conn.mcp.expose == ["a"] and conn.mcp.exclude == ["b"]
    assert conn.mcp.require_approval == "always" and conn.mcp.retry_attempts == 0
    assert conn.auth == {"type": "api_key", "header_name": "X-Key", "prefix": "Token ", "api_key": "{{ secrets.K }}"}
    codes = [w.code for w in ow.warnings]
    assert codes.count("ALIAS") >= 6
    assert "UNAVAILABLE" in codes  # nothing listens there: tools are listed on first use
    ow.close()


def test_bad_auth_is_a_load_error():
    ow = OpenWorkflow(state=False)
    ow.load(
        "type: connector\nkind: mcp-server\nname: x\nmcp: {transport: stdio, command: x, retry_attempts: 0}\nauth: {type: bearer}\n"
    )
    missing = [w for w in ow.warnings if w.code == "MISSING_REQUIRED_FIELD"]  # the runtime may fill it
    assert missing and "token" in missing[0].message and missing[0].line == 5
    with pytest.raises(ManifestError) as err:
        ow.load(
            "type: connector\nkind: mcp-server\nname: x\nmcp: {transport: stdio, command: x}\nauth: {type: oauth}\n"
        )
    assert err.value.diagnostics[0].code in ("INVALID_VALUE", "INVALID_TYPE")


def test_reference_time_server_from_pypi():
    ow = OpenWorkflow(state=False)
    try:
        ow.load(
            """
type: connector
kind: mcp-server
name: time
mcp: {transport: stdio, command: python, args: ["-m", mcp_server_time, "--local-timezone", UTC]}
---
name: now
steps: [{id: t, connector: time, action: get_current_time, input: {timezone: UTC}}]
"""
        )
        r = ow.workflow("now").execute()
        assert r.status == "completed", r.error
        assert r.steps["t"].output["timezone"] == "UTC"
    finally:
        ow.close()


def test_cli_lists_tools_with_schemas(tmp_path, capsys):
    from owf_magics.cli import main

    path = tmp_path / "calc.yaml"
    path.write_text(CALC)
    assert main(["mcp", "tools", str(path), "--json"]) == 0
    tools = {t["name"]: t for t in json.loads(capsys.readouterr().out)["tools"]}
    assert tools["add"]["input"]["required"] == ["a", "b"]
    assert "die" not in tools
    assert main(["mcp", "tools", str(path)]) == 0
    out = capsys.readouterr().out
    assert "add: Add two integers." in out
    assert main(["mcp", "tools", str(tmp_path / "none.yaml")]) == 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_notebook_workflow_tools_lists_a_servers_tools():
    from IPython.utils.capture import capture_output

    from tests.ipython_shell import magic_shell

    with magic_shell(state=":memory:") as ip:
        with capture_output() as cap:
            ip.run_cell_magic("workflow", "", CALC)
            ip.run_line_magic("workflow", "tools calc")
        text = cap.stdout + "".join(o.data.get("text/plain", "") for o in cap.outputs)
        rows = {line.split()[0]: line for line in text.splitlines()[2:] if line.strip()}
        assert "Add two integers." in rows["add"] and '"a": {"title": "A", "type": "integer"}' in rows["add"]
        assert "die" not in rows


def test_a_registry_that_refuses_mcp_starts_no_server(tmp_path):
    marker = tmp_path / "started"
    script = tmp_path / "touch.py"
    script.write_text(f"open({str(marker)!r}, 'w')")
    ow = OpenWorkflow(state=False, allow_handlers=["function"])
    with pytest.raises(ManifestError) as err:
        ow.load(CALC.replace(SERVER, str(script)))
    assert err.value.diagnostics[0].code == "HANDLER_NOT_ALLOWED"
    assert not marker.exists()
