"""The `owf` command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml

from owf_magics.cli import main
from tests.flows import APPROVAL

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "research-digest.yaml"


def test_validate_ok(capsys):
    assert main(["validate", str(EXAMPLE)]) == 0
    assert "ok: 1 agent, 1 connector, 1 workflow valid" in capsys.readouterr().out


def test_validate_reports_file_line_code(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: w\nsteps:\n  - id: a\n    type: transform\n    expression: '{{ steps.nope.output }}'\n  - id: a\n    type: wait\n    duration: soon\n"
    )
    assert main(["validate", str(bad)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert f"{bad}:5: UNKNOWN_REFERENCE" in "\n".join(lines)
    assert any(line.startswith(f"{bad}:6: DUPLICATE_STEP_ID") for line in lines)
    assert main(["validate", "--json", str(bad)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False
    assert sorted(d["code"] for d in data["errors"]) == ["DUPLICATE_STEP_ID", "INVALID_DURATION", "UNKNOWN_REFERENCE"]


def test_validate_loads_files_together(tmp_path, capsys):
    conn = tmp_path / "c.yaml"
    conn.write_text(
        "connector: {name: c, kind: sdk}\nactions: [{name: go, handler: {function: owf_magics.demo_tools.text_stats}}]\n"
    )
    wf = tmp_path / "w.yaml"
    wf.write_text("name: w\nsteps: [{id: s, connector: c, action: go, input: {text: x}}]\n")
    assert main(["validate", str(wf), str(conn)]) == 0
    assert main(["validate", str(tmp_path)]) == 0
    capsys.readouterr()


def test_plan_table_and_json(capsys):
    assert main(["plan", str(EXAMPLE), "--prefer-backend", "native"]) == 0
    out = capsys.readouterr().out
    assert "summarize" in out and "  prefer  " in out  # the source, in the contract's word
    assert main(["plan", str(EXAMPLE), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["steps"]
    assert (rows[0]["step_id"], rows[0]["backend"], rows[0]["source"]) == ("search", "native", "default")
    assert main(["plan", str(EXAMPLE), "--prefer-backend", "nativ"]) == 1
    assert "Did you mean 'native'" in capsys.readouterr().err


def test_backends_list_format(capsys):
    assert main(["backends", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    native = next(line for line in lines if line.startswith("native"))
    assert "[installed]" in native and "OpenWorkflow native runtime" in native
    assert any(line.startswith("langchain") for line in lines)
    assert main(["backends", "list", "--json"]) == 0
    assert {"native", "langchain", "assistants"} <= {b["name"] for b in json.loads(capsys.readouterr().out)}


def test_backend_test(capsys):
    assert main(["backend", "test", "native"]) == 0
    out = capsys.readouterr().out
    assert "PASS  invoke" in out
    assert main(["backend", "test", "nope", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and data["checks"][0]["check"] == "available"


def test_schema_validates_canonical_manifests(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    doc = yaml.safe_load(EXAMPLE.read_text())
    jsonschema.Draft202012Validator(schema).validate(doc)
    bad = {"workflows": [{"name": "x", "steps": [{"id": "a", "type": "transform", "expresion": "y"}]}]}
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(bad))


def test_console_script_is_installed():
    owf = Path(sys.executable).parent / "owf"
    out = subprocess.run([str(owf), "validate", str(EXAMPLE)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


def test_run_waits_then_resume_and_runs_list(tmp_path, capsys):
    flow = tmp_path / "flow.yaml"
    flow.write_text(APPROVAL)
    db = str(tmp_path / "runs.db")
    assert main(["run", str(flow), "--state", db, "--json"]) == 0
    waiting = json.loads(capsys.readouterr().out)
    assert waiting["status"] == "waiting_approval"
    assert waiting["pending"][0]["kind"] == "approval" and waiting["pending"][0]["step_id"] == "pay"
    assert main(["run", str(flow), "--state", db]) == 0
    printed = capsys.readouterr().out
    assert "waiting for approval" in printed and "owf resume" in printed
    request = next(line.split()[3] for line in printed.splitlines() if line.startswith("waiting for approval"))
    from owf_magics import OpenWorkflow

    stored = OpenWorkflow(state=db).runs()
    run_id = stored[stored["status"] == "waiting_approval"]["run_id"].iloc[-1]
    assert main(["resume", run_id, str(flow), "--state", db, "--approve", request, "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["status"] == "completed" and done["outputs"] == {"paid": 5}
    assert main(["runs", "--state", db]) == 0
    listing = capsys.readouterr().out
    assert run_id in listing and "completed" in listing and "waiting_approval" in listing


def test_input_values_keep_their_text_for_string_inputs(tmp_path, capsys):
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "name: echo\n"
        "inputs: {code: {type: string}, day: {type: string}, n: {type: number}, tags: {type: array}}\n"
        "steps: [{id: a, type: transform, expression: x}]\n"
        "outputs:\n"
        "  all: {value: '{{ [inputs.code, inputs.day, inputs.n, inputs.tags] }}'}\n"
    )
    args = ["run", str(flow), "--state", ":memory:", "--json", "-i", "code=01234", "-i", "day=2024-01-01"]
    assert main([*args, "-i", "n=1.5", "-i", 'tags=["a"]']) == 0
    assert json.loads(capsys.readouterr().out)["outputs"]["all"] == ["01234", "2024-01-01", 1.5, ["a"]]
    assert main([*args, "-i", "=3"]) == 1
    assert "KEY=VALUE" in json.loads(capsys.readouterr().out)["error"]["message"]


def test_json_errors_and_secrets_from_the_environment(tmp_path, capsys, monkeypatch):
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        """
connector: {name: svc, kind: sdk, actions: [{name: call, handler: {function: tests.handlers.echo}}]}
---
name: keyed
steps: [{id: a, connector: svc, action: call, input: {headers: {Authorization: "Bearer {{ secrets.API_KEY }}"}}}]
outputs: {sent: {value: "{{ steps.a.output.echo.headers.Authorization }}"}}
"""
    )
    db = ["--state", ":memory:"]
    assert main(["run", str(flow), *db, "--json", "--secret", "API_KEY"]) == 1
    err = json.loads(capsys.readouterr().out)
    assert err["ok"] is False and err["error"]["code"] == "VALIDATION" and "API_KEY" in err["error"]["message"]
    monkeypatch.setenv("API_KEY", "sk-very-secret-1")
    assert main(["run", str(flow), *db, "--json", "--secret", "API_KEY"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["outputs"] == {"sent": "Bearer ***"} and "sk-very-secret-1" not in out
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: b\nsteps: [{id: a, type: transfrom, expression: x}]\n")
    assert main(["run", str(broken), *db, "--json"]) == 1
    bad = json.loads(capsys.readouterr().out)
    assert bad["ok"] is False and bad["diagnostics"][0]["line"] == 2
