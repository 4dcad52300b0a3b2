"""The LITERAL_CREDENTIAL warning (issue 24) in every entry point: `ow.load`, `owf run`, the
`%%workflow` cell; and the values that are not literal credentials (secrets, placeholders)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from owf_magics import OpenWorkflow
from tests.conftest import ROOT

FLOW = """\
connectors:
  - name: crm
    auth: {type: api_key, api_key: "sk-live-0123456789", header_name: X-API-Key}
    actions:
      - name: find
        handler:
          http: {url: "https://crm.example.com/find", method: GET, headers: {Authorization: "Bearer abc123"}}
  - name: safe
    auth: {type: bearer, token: "{{ secrets.CRM_TOKEN }}"}
    actions:
      - name: find
        handler: {http: {url: "https://crm.example.com/find", method: GET, headers: {X-Api-Key: "${env.KEY}"}}}
workflows:
  - name: w
    inputs: {password: {type: string, default: "***"}}
    steps: [{id: a, type: transform, expression: "ok"}]
"""


def test_load_warns_at_each_literal_credential_and_only_there():
    ow = OpenWorkflow(state=False)
    ow.load(FLOW, name="flow.yaml")
    found = [(w.code, w.line, w.path) for w in ow.warnings if w.code == "LITERAL_CREDENTIAL"]
    assert found == [
        ("LITERAL_CREDENTIAL", 3, "connectors[0].auth.api_key"),
        ("LITERAL_CREDENTIAL", 7, "connectors[0].actions[0].handler.http.headers.Authorization"),
    ]
    assert all(w.severity == "warning" and "secrets" in (w.hint or "") for w in ow.warnings)


def test_owf_run_prints_the_warning_on_stderr(tmp_path):
    path = tmp_path / "flow.yaml"
    path.write_text(FLOW)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "owf_magics.cli",
            "run",
            str(path),
            "-w",
            "w",
            "--json",
            "--state",
            str(tmp_path / "r.db"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert f"{path}:3: warning LITERAL_CREDENTIAL" in done.stderr
    assert "LITERAL_CREDENTIAL" not in done.stdout  # the JSON result stays clean


def test_a_notebook_cell_shows_the_warning():
    pytest.importorskip("IPython")
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    ip = InteractiveShell.instance()
    try:
        ip.run_line_magic("load_ext", "owf_magics")
        ip.run_line_magic("config", "OWF.state = ':memory:'")
        with capture_output() as cap:
            result = ip.run_cell(f"%%workflow w\n{FLOW}")
        assert result.success
        assert "warning: " in cap.stdout and "LITERAL_CREDENTIAL" in cap.stdout and "'api_key'" in cap.stdout
    finally:
        ip.run_line_magic("unload_ext", "owf_magics")
        InteractiveShell.clear_instance()
