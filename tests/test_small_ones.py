"""The small ones of issue 11: the JSON hint on --input, a warning for an output that would show a
secret, caught failures and plurals in the summary, res.steps in plan order, the user's traceback
kept and shown, the forEach item in a loop's error, and --show yaml showing the cell's text."""

from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from owf_magics import OpenWorkflow
from owf_magics.api import input_pairs
from owf_magics.errors import OWFError

CONNECTOR = """
connector: {name: calc, kind: sdk}
actions:
  - {name: explode, handler: {function: tests.handlers.fail_with}}
  - {name: echo, handler: {function: tests.handlers.echo}}
"""
FLOWS = """
name: docs
inputs: {docs: {type: array}}
steps: [{id: n, type: transform, expression: "{{ inputs.docs | length }}"}]
---
name: caught
steps:
  - {id: slow, type: wait, duration: 50ms}
  - {id: fast, type: transform, expression: one}
  - {id: bad, connector: calc, action: explode, input: {text: x}, continueOnError: true}
---
name: each
steps:
  - id: loop
    type: forEach
    items: "{{ ['a', 'b', 'c'] }}"
    steps: [{id: use, connector: calc, action: explode, input: {text: "{{ item }}"}, condition: "{{ item == 'c' }}"}]
---
name: one
steps: [{id: only, type: transform, expression: x}]
"""


@pytest.fixture
def ow():
    ow = OpenWorkflow(state=False)
    ow.load(CONNECTOR)
    ow.load(FLOWS)
    return ow


def test_a_list_written_yaml_style_gets_the_json_hint(ow):
    declared = ow.workflow("docs").manifest.inputs
    with pytest.raises(OWFError) as info:
        input_pairs(["docs=[a, b, c]"], declared)
    assert info.value.code == "VALIDATION"
    assert """write it as JSON, e.g. --input docs='["a", "b", "c"]'""" in info.value.message
    assert input_pairs(['docs=["a", "b"]'], declared) == {"docs": ["a", "b"]}


def test_an_output_that_would_show_a_secret_warns_at_definition():
    ow = OpenWorkflow(state=False)
    ow.load(CONNECTOR)
    ow.load("""
name: login
steps: [{id: call, connector: calc, action: echo, input: {token: "{{ secrets.API_KEY }}"}}]
outputs: {sent: {value: "{{ steps.call.output }}"}, fine: {value: "done"}}
""")
    [warning] = [w for w in ow.warnings if "secrets.API_KEY" in w.message]
    assert warning.severity == "warning" and "output 'sent' reads steps.call" in warning.message
    result = ow.workflow("login").execute(secrets={"API_KEY": "k-123"})
    assert "k-123" not in str(result.outputs)  # still redacted at run time


def test_caught_failures_plurals_and_plan_order(ow):
    r = ow.workflow("caught").execute()
    assert r.status == "completed"
    assert "completed with 1 caught failure (2 success, 1 failed)" in r.summary_text()
    assert list(r.steps) == ["slow", "fast", "bad"]  # res.steps reads in plan order
    assert r.metrics["nodes_executed"] == [s for s in r.finished if s != "bad"]  # in the order they finished
    one = ow.workflow("one")
    assert repr(one).endswith(": 1 step>") and "1 step>" in repr(one.execute())
    assert "1 step (" in repr(one.plan())


def test_the_users_traceback_is_kept_and_a_loop_error_names_its_item(ow):
    r = ow.workflow("each").execute()
    error = r.steps["loop"].error
    assert error.message.endswith("(forEach item 2: 'c')")
    assert error.details["index"] == 2 and error.details["item"] == "'c'"
    trace = r.steps["use"].error.details["traceback"]
    assert trace.startswith("Traceback (most recent call last):")
    assert "tests/handlers.py" in trace and "in fail_with" in trace and "owf_magics/" not in trace
    assert "traceback" not in r.steps["use"].error.to_dict()["details"]  # not in events or templates


def test_secrets_in_a_traceback_are_redacted():
    ow = OpenWorkflow(state=False)
    ow.load(CONNECTOR)
    ow.load("""
name: leak
steps: [{id: use, connector: calc, action: explode, input: {token: "{{ secrets.T }}"}}]
""")
    ow.load("""
connector: {name: tok, kind: sdk}
actions: [{name: fail, handler: {function: tests.handlers.fail_with_token}}]
---
name: leak2
steps: [{id: use, connector: tok, action: fail, input: {token: "{{ secrets.T }}"}}]
""")
    r = ow.workflow("leak2").execute(secrets={"T": "sekrit-value"})
    details = r.steps["use"].error.details
    assert "traceback" in details and "sekrit-value" not in details["traceback"]


@pytest.fixture
def shell():
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "owf_magics")
    ip.run_line_magic("config", "OWF.state = ':memory:'")
    yield ip
    ip.run_line_magic("unload_ext", "owf_magics")
    InteractiveShell.clear_instance()


def test_the_cell_shows_the_traceback_folded_and_yaml_as_written(shell):
    with capture_output():
        shell.run_cell(f"%%workflow --quiet\n{CONNECTOR}")
    with capture_output() as cap:
        result = shell.run_cell(f"%%workflow each --run -o res\n{FLOWS}")
    assert not result.success
    page = cap.outputs[-1].data["text/html"]
    assert "<details class='owf-traceback'><summary>traceback of step 'use'" in page
    assert "in fail_with" in page
    assert "raised at: File" in cap.stdout and "traceback: res.steps['loop'].error.details['traceback']" in cap.stdout
    body = "# the cell's own comment\nname: shown\nsteps:\n  - id: a   # and this one\n    type: transform\n    expression: x\n"
    with capture_output() as cap:
        shell.run_cell(f"%%workflow --show yaml\n{body}")
    assert cap.outputs[-1].data["text/plain"] == body


def test_a_long_output_is_folded_and_a_wide_trace_scrolls_in_its_box(shell):
    body = """
name: many
steps: [{id: each, type: transform, expression: "{{ item }}", forEach: "{{ range(40) | list }}"}]
outputs: {all: {value: "{{ steps.each.output }}"}}
"""
    with capture_output() as cap:
        assert shell.run_cell(f"%%workflow --run -o res\n{body}").success
    data = cap.outputs[-1].data
    assert "more lines: res.outputs" in data["text/plain"]
    assert len(data["text/plain"].split("outputs:\n", 1)[1].split("\ngraph:")[0].splitlines()) == 21
    assert "<details><summary>Output (" in data["text/html"]  # folded, every line still there
    assert 'class="owf-frame-box" style="max-width:100%;overflow-x:auto"' in data["text/html"]
