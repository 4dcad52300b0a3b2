"""The magics through a real IPython `InteractiveShell`: define, show, run, errors, settings, completion."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from owf_magics import ManifestError, OWFError
from owf_magics.notebook.views import SETTINGS
from tests.flows import APPROVAL
from tests.ipython_shell import magic_shell

ROOT = Path(__file__).resolve().parent.parent
DIGEST = (ROOT / "examples" / "research-digest.yaml").read_text(encoding="utf-8")

ONE = """\
workflows:
  - name: tiny
    version: {version}
    inputs:
      n: {{type: integer, default: 2}}
    steps:
      - id: double
        type: transform
        expression: "{{{{ inputs.n * 2 }}}}"
    outputs:
      result: {{value: "{{{{ steps.double.output.result }}}}"}}
"""

FAILING = """\
connectors:
  - name: calc
    namespace: demo
    version: 1.0.0
    actions:
      - name: explode
        handler: {function: tests.handlers.boom}
workflows:
  - name: broken
    steps:
      - id: ok
        type: transform
        expression: fine
      - id: boom
        type: action
        connector: connector:demo/calc@1.0.0
        action: explode
        input: {message: kaboom}
"""


@pytest.fixture
def shell():
    with magic_shell(state=":memory:") as ip:
        yield ip


def cell(ip, line, body):
    with capture_output() as cap:
        result = ip.run_cell(f"%%workflow {line}\n{body}")
    return result, cap


def mimetypes(cap):
    return [set(o.data) for o in cap.outputs]


def test_load_and_unload_register_and_remove_the_magics():
    ip = InteractiveShell.instance()
    try:
        ip.run_line_magic("load_ext", "owf_magics")
        assert "workflow" in ip.magics_manager.magics["cell"]
        assert "workflow" in ip.magics_manager.magics["line"]
        assert any(type(c).__name__ == "OWF" for c in ip.configurables)
        ip.run_line_magic("unload_ext", "owf_magics")
        assert "workflow" not in ip.magics_manager.magics["cell"]
        assert not any(type(c).__name__ == "OWF" for c in ip.configurables)
    finally:
        InteractiveShell.clear_instance()


def test_cell_validates_registers_and_shows_graph_and_resolution(shell):
    result, cap = cell(shell, "", DIGEST)
    assert result.success
    kinds = mimetypes(cap)
    assert "text/vnd.mermaid" in kinds[0] and "text/html" in kinds[0]
    assert "flowchart TD" in cap.outputs[0].data["text/vnd.mermaid"]
    assert "Backend resolution: Research Digest" in cap.outputs[1].data["text/html"]
    assert "  default  " in cap.outputs[1].data["text/plain"]  # the source, in the contract's word
    # usable from later cells
    with capture_output() as cap2:
        shell.run_line_magic("workflow", "list")
    assert "workflow:local/Research Digest@1.0.0" in cap2.outputs[0].data["text/plain"]


def test_show_option_and_quiet(shell):
    _, cap = cell(shell, "--show yaml", DIGEST)
    assert len(cap.outputs) == 1 and "name: Research Digest" in cap.outputs[0].data["text/plain"]
    _, cap = cell(shell, "--quiet", DIGEST)
    assert cap.outputs == [] and cap.stdout == ""
    result, _ = cell(shell, "--show grahp", DIGEST)
    assert isinstance(result.error_in_exec, UsageError)
    assert "Did you mean 'graph'?" in str(result.error_in_exec)


def test_run_binds_the_result_and_takes_inputs(shell):
    result, cap = cell(shell, "--run -o res --input n=21", ONE.format(version="1.0.0"))
    assert result.success, result.error_in_exec
    res = shell.user_ns["res"]
    assert res.status == "completed" and res.outputs == {"result": 42}
    assert "completed (1 success)" in cap.outputs[-1].data["text/plain"]
    shell.user_ns["given"] = {"n": 5}
    with capture_output():
        shell.run_line_magic("workflow", "run tiny --inputs given -o again --quiet")
    assert shell.user_ns["again"].outputs == {"result": 10}


def test_run_of_a_workflow_with_spaces_in_its_name(shell):
    cell(shell, "--quiet", DIGEST)
    with capture_output():
        shell.run_line_magic("workflow", 'run "Research Digest" -o res --input topic="OpenWorkflow LangGraph"')
    res = shell.user_ns["res"]
    assert res.status == "completed" and res.outputs["notes"] == 2


def test_deterministic_mode_hides_wall_clock_and_run_ids(shell):
    shell.run_line_magic("config", "OWF.deterministic = True")
    assert SETTINGS.deterministic is True
    _, one = cell(shell, "--run -o a", ONE.format(version="1.0.0"))
    _, two = cell(shell, "--run -o b", ONE.format(version="1.0.0"))
    assert one.outputs[-1].data == two.outputs[-1].data
    assert shell.user_ns["a"].run_id not in one.outputs[-1].data["text/plain"]
    shell.run_line_magic("config", "OWF.deterministic = False")
    _, three = cell(shell, "--run -o c", ONE.format(version="1.0.0"))
    assert shell.user_ns["c"].run_id in three.outputs[-1].data["text/plain"]


def test_redefining_a_cell_replaces_what_it_defined(shell):
    cell(shell, "tiny --quiet", ONE.format(version="1.0.0"))
    cell(shell, "tiny --quiet", ONE.format(version="1.1.0"))
    from owf_magics.notebook.magics import registry

    ow = registry(shell)
    assert [w.version for w in ow.workflows()] == ["1.1.0"]
    # other cells' manifests are untouched
    cell(shell, "--quiet", DIGEST)
    cell(shell, "tiny --quiet", ONE.format(version="1.2.0"))
    assert sorted((w.name, w.version) for w in ow.workflows()) == [("Research Digest", "1.0.0"), ("tiny", "1.2.0")]


def test_manifest_error_fails_the_cell_with_a_short_rendering(shell):
    body = (
        "workflows:\n  - name: bad\n    steps:\n      - id: a\n        type: agent\n        agent: agent:x/nope@1.0.0\n"
    )
    result, cap = cell(shell, "", body)
    exc = result.error_in_exec
    assert isinstance(exc, ManifestError) and exc.codes == ["UNKNOWN_REFERENCE"]
    text = cap.stdout
    assert "UNKNOWN_REFERENCE at <cell 1>:7, step 'a'" in text
    assert "  > 7 |         agent: agent:x/nope@1.0.0" in text
    assert "fix: load the agent manifest first" in text
    assert "Traceback (most recent call last)" not in text and "site-packages" not in text
    # a failed cell registers nothing
    from owf_magics.notebook.magics import registry

    assert registry(shell).workflows() == []


def test_yaml_syntax_error_points_at_the_cell_line(shell):
    result, cap = cell(shell, "", "workflows:\n  - name: x\n    steps: [\n")
    assert isinstance(result.error_in_exec, ManifestError)
    assert "YAML_SYNTAX at <cell 1>" in cap.stdout


def test_run_failure_fails_the_cell_names_the_step_and_binds_the_result(shell):
    result, cap = cell(shell, "--run -o res", FAILING)
    exc = result.error_in_exec
    assert isinstance(exc, OWFError) and exc.code == "BACKEND_ERROR"
    assert "WorkflowRunError: BACKEND_ERROR at <cell 1>:15, step 'boom'" in cap.stdout
    assert "  > 15 |       - id: boom" in cap.stdout
    assert "see: res.steps['boom'].error, res.trace" in cap.stdout
    result, cap = cell(shell, "--run", FAILING)
    assert "see: _owf_last.steps['boom'].error" in cap.stdout
    with capture_output() as cap:  # without NAME: the workflow of the last cell
        result = shell.run_cell("%workflow show --show resolution")
    assert result.success and "boom" in cap.outputs[0].data["text/plain"]
    assert "Traceback (most recent call last)" not in cap.stdout
    res = shell.user_ns["res"]
    assert res.status == "failed" and res.steps["boom"].status == "failed"


def test_bad_flags_and_subcommands_are_usage_errors(shell):
    for line in ("--bogus", "frobnicate", "run", "run nosuch", "run a b", "trace"):
        with capture_output():
            result = shell.run_cell(f"%workflow {line}")
        assert isinstance(result.error_in_exec, UsageError), line
    with capture_output():
        result = shell.run_cell("%workflow lsit")
    assert "Did you mean 'list'?" in str(result.error_in_exec)
    result, _ = cell(shell, "--input novalue", ONE.format(version="1.0.0"))
    assert result.success  # --input is only read by --run
    result, _ = cell(shell, "--run --input novalue", ONE.format(version="1.0.0"))
    assert isinstance(result.error_in_exec, UsageError)


def test_help_is_the_argument_help(shell):
    doc = shell.find_line_magic("workflow").__doc__
    for flag in ("--run", "--prefer-backend", "--inputs", "--show", "--quiet", "-o VAR"):
        assert flag in doc
    with capture_output() as cap:
        shell.run_line_magic("workflow", "help")
    assert "%workflow backends" in cap.stdout
    with capture_output() as cap:
        result = shell.run_cell("%workflow?")
    assert result.success
    for text in ("--prefer-backend B", "validate [NAME] | backends | trace [VAR]", "bind the RunResult to VAR"):
        assert text in cap.stdout


def test_backends_trace_usage_validate(shell):
    cell(shell, "--quiet --run", DIGEST)
    with capture_output() as cap:
        shell.run_line_magic("workflow", "backends")
        shell.run_line_magic("workflow", "trace")
        shell.run_line_magic("workflow", "usage")
        shell.run_line_magic("workflow", 'validate "Research Digest"')
    backends = cap.outputs[0].data["text/plain"]
    assert backends.splitlines()[1].split()[:3] == ["native", "yes", shell_version()]
    custom = next(line for line in backends.splitlines() if line.startswith("custom"))
    assert custom.split()[:3] == ["custom", "no", "-"] and "ow.register_backend('custom', YourBackend())" in custom
    assert "count_words" in cap.outputs[1].data["text/plain"] and "[5 rows]" in cap.outputs[1].data["text/plain"]
    assert "summarize" in cap.outputs[2].data["text/plain"]
    assert "ok: Research Digest v1.0.0: 4 steps, backends native" in cap.stdout


def shell_version():
    from owf_magics import __version__

    return __version__


def test_config_settings_and_unknown_keys(shell):
    shell.run_line_magic("config", "OWF.max_rows = 3")
    assert SETTINGS.max_rows == 3
    shell.run_line_magic("config", "OWF.max_rows = 20")
    with pytest.warns(UserWarning, match="Did you mean `deterministic`"):
        shell.run_line_magic("config", "OWF.determinstic = True")
    shell.run_line_magic("config", "OWF.prefer_backend = 'nosuch'")
    result, _ = cell(shell, "", ONE.format(version="1.0.0"))
    assert isinstance(result.error_in_exec, UsageError) and "nosuch" in str(result.error_in_exec)


def test_pyproject_settings_with_did_you_mean(tmp_path, capsys):
    from owf_magics.notebook.config import OWF, apply_pyproject, find_pyproject

    (tmp_path / "pyproject.toml").write_text(
        '[tool.owf_magics]\nmax_rows = 7\nshow = "graph"\ndetermnistic = true\nwidgets = "sometimes"\n'
    )
    sub = tmp_path / "notebooks"
    sub.mkdir()
    path = find_pyproject(sub)
    assert path == tmp_path / "pyproject.toml"
    saved = SETTINGS.max_rows
    owf = OWF()
    try:
        problems = apply_pyproject(owf, path)
        assert owf.max_rows == 7 and owf.show == "graph"
        assert any("unknown setting 'determnistic'" in p and "Did you mean 'deterministic'?" in p for p in problems)
        assert any("bad value for 'widgets'" in p for p in problems)
        assert "unknown setting 'determnistic'" in capsys.readouterr().err
    finally:
        SETTINGS.max_rows = saved


def complete(ip, text):
    from IPython.core.completer import provisionalcompleter

    with provisionalcompleter():
        return [c.text for c in ip.Completer.completions(text, len(text))]


def applied(ip, text):
    """The last line of the cell after each completion is applied, as a front end would."""
    from IPython.core.completer import provisionalcompleter

    with provisionalcompleter():
        found = list(ip.Completer.completions(text, len(text)))
    return [(text[: c.start] + c.text + text[c.end :]).splitlines()[-1].strip() for c in found]


def test_completion_in_the_cell_body(shell):
    cell(shell, "--quiet", DIGEST)
    head = "%%workflow\nworkflows:\n  - name: w\n    steps:\n      - id: first\n"
    assert "transform" in complete(shell, head + "        type: tra")
    assert "forEach" in complete(shell, head + "        type: ")
    assert "langchain" in complete(shell, head + "        execution: {x: 1}\n        backend: lang")
    # references: whatever IPython takes as the token, applying the completion gives the full reference
    assert applied(shell, head + "        agent: agent:demo/su") == ["agent: agent:demo/summarizer@1.0.0"]
    assert applied(shell, head + "        connector: conn") == ["connector: connector:demo/notes@1.0.0"]
    assert applied(shell, head + '        input: "{{ steps.fi') == ['input: "{{ steps.first']
    assert "first" in complete(shell, head + '        input: "{{ steps.fi')
    assert "scripted" in complete(shell, "%%workflow\n    provider: scr")
    # outside a %%workflow cell, nothing of ours
    assert "transform" not in complete(shell, "type = tra")


def test_unavailable_backend_and_bad_inputs_fail_short(shell):
    from owf_magics import UnavailableError

    body = "workflows:\n  - name: lc\n    steps:\n      - {id: a, type: transform, expression: x, execution: {backend: custom}}\n"
    result, cap = cell(shell, "--run", body)
    assert isinstance(result.error_in_exec, UnavailableError)
    assert "UnavailableError: UNAVAILABLE" in cap.stdout and "step: a" in cap.stdout
    assert "Traceback (most recent call last)" not in cap.stdout
    result, cap = cell(shell, "--run --input n=many", ONE.format(version="1.0.0"))
    assert isinstance(result.error_in_exec, OWFError) and result.error_in_exec.code == "VALIDATION"
    assert "OWFError: VALIDATION" in cap.stdout and "input 'n' must be integer, got str" in cap.stdout


def test_load_ext_stays_cheap_it_loads_no_models_or_widgets():
    import json
    import subprocess
    import sys

    code = (
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "ip.run_line_magic('load_ext', 'owf_magics')\n"
        "import sys, json; print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    mods = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "owf_magics.notebook.magics" in mods
    assert not {"owf_magics.api.openworkflow", "owf_magics.manifest.models", "pydantic", "ipywidgets", "pandas"} & mods


def test_secrets_from_the_namespace_never_reach_the_display(shell):
    body = (
        "connectors:\n  - name: t\n    actions:\n      - {name: echo, handler: {function: tests.handlers.echo}}\n"
        "workflows:\n  - name: sec\n    steps:\n"
        '      - {id: call, connector: t, action: echo, input: {headers: {Authorization: "Bearer {{ secrets.TOKEN }}"}}}\n'
        '    outputs: {sent: {value: "{{ steps.call.output }}"}}\n'
    )
    shell.user_ns["creds"] = {"TOKEN": "s3cr3t-value"}
    result, cap = cell(shell, "--run -o res --secrets creds --show graph,resolution,yaml", body)
    assert result.success, result.error_in_exec
    shown = cap.stdout + "".join(str(v) for o in cap.outputs for v in o.data.values())
    assert "s3cr3t-value" not in shown
    assert "***" in str(shell.user_ns["res"].outputs)
    result, _ = cell(shell, "--run --secrets nosuch", body)
    assert isinstance(result.error_in_exec, UsageError)


def test_state_setting_chooses_the_run_store(shell, tmp_path):
    from owf_magics.notebook.magics import registry

    assert registry(shell).state == ":memory:"
    shell.run_line_magic("unload_ext", "owf_magics")
    shell.run_line_magic("load_ext", "owf_magics")
    shell.run_line_magic("config", f"OWF.state = {str(tmp_path / 'runs.db')!r}")
    cell(shell, "--quiet --run", ONE.format(version="1.0.0"))
    assert registry(shell).state == str(tmp_path / "runs.db") and (tmp_path / "runs.db").exists()


def test_settings_defaults_come_from_the_environment(monkeypatch):
    from owf_magics.notebook.config import OWF

    saved = dataclasses.asdict(SETTINGS)
    try:
        monkeypatch.setenv("OWF_DETERMINISTIC", "0")
        monkeypatch.setenv("OWF_WIDGETS", "never")
        owf = OWF()
        assert owf.deterministic is False and owf.widgets == "never" and SETTINGS.deterministic is False
        monkeypatch.setenv("OWF_DETERMINISTIC", "1")
        monkeypatch.setenv("OWF_WIDGETS", "bogus")
        owf = OWF()
        assert owf.deterministic is True and owf.widgets == "auto"
    finally:
        for key, value in saved.items():
            setattr(SETTINGS, key, value)


def test_a_run_error_quotes_the_cell_that_defined_the_workflow(shell):
    cell(shell, "--quiet", FAILING)  # unnamed cell 1
    cell(shell, "--quiet", DIGEST)  # unnamed cell 2, same "<cell>" name
    with capture_output() as cap:
        result = shell.run_cell("%workflow run broken")
    assert result.error_in_exec is not None
    assert "  > 15 |       - id: boom" in cap.stdout


def test_a_waiting_run_says_how_to_resume_and_resume_continues_it(shell):
    shell.run_line_magic("config", "OWF.deterministic = False")  # show the real ids (masked under pytest)
    result, cap = cell(shell, "--run -o waiting", APPROVAL)
    assert result.success, result.error_in_exec  # waiting is not a failure
    waiting = shell.user_ns["waiting"]
    assert waiting.status == "waiting_approval"
    [request] = waiting.pending
    shown = cap.outputs[-1].data["text/plain"]
    assert f"waiting for approval {request.id} at step pay" in shown
    assert f"%workflow resume {waiting.run_id} --approve {request.id}" in shown
    with capture_output() as out:
        shell.run_line_magic("workflow", f"resume {waiting.run_id} --approve {request.id} -o done")
    done = shell.user_ns["done"]
    assert done.status == "completed" and done.outputs == {"paid": 5}
    assert "completed" in out.outputs[-1].data["text/plain"]
    # an unknown request fails the cell with a short error
    result = shell.run_cell(f"%workflow resume {waiting.run_id} --approve nope")
    assert not result.success


def test_reject_through_the_magic_fails_the_cell(shell):
    cell(shell, "--run -o waiting", APPROVAL)
    waiting = shell.user_ns["waiting"]
    result = shell.run_cell(f"%workflow resume --reject {waiting.pending[0].id}")  # the last run by default
    assert not result.success and "rejected" in str(result.error_in_exec)


def test_cells_without_a_workflow_do_not_replace_each_other(shell):
    cell(shell, "--quiet", "agents: [{name: helper, model: {provider: echo}}]")
    cell(
        shell,
        "--quiet",
        "connector: {name: tools, kind: sdk, actions: [{name: a, handler: {function: tests.handlers.echo}}]}",
    )
    from owf_magics.notebook.magics import registry

    ow = registry(shell)
    names = {a.name for a in ow.agents()} | {c.name for c in ow.connectors()}
    assert {"helper", "tools"} <= names


def test_output_name_must_be_a_variable_and_string_inputs_keep_their_text(shell):
    cell(
        shell,
        "--quiet",
        "name: s\ninputs: {code: {type: string}}\nsteps: [{id: a, type: transform, expression: x}]\noutputs: {code: {value: '{{ inputs.code }}'}}",
    )
    result = shell.run_cell("%workflow run s -o 1bad --input code=01234")
    assert not result.success and "variable name" in str(result.error_in_exec)
    with capture_output():
        shell.run_line_magic("workflow", "run s -o res --input code=01234 --quiet")
    assert shell.user_ns["res"].outputs == {"code": "01234"}


def test_a_cell_that_fails_its_flags_registers_nothing(shell):
    from owf_magics.notebook.magics import registry

    result = shell.run_cell("%%workflow Digst\nname: Digest\nsteps: [{id: a, type: transform, expression: x}]")
    assert not result.success and "Did you mean 'Digest'" in str(result.error_in_exec)
    result = shell.run_cell("%%workflow --run\nagents: [{name: lonely, model: {provider: echo}}]")
    assert not result.success and "--run needs a workflow" in str(result.error_in_exec)
    ow = registry(shell)
    assert not ow.workflows() and not [a for a in ow.agents() if a.name == "lonely"]
