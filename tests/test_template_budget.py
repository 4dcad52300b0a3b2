"""Template budgets (issue 21): sizes, iterations and time, enforced while a template runs.

The hostile corpus (test_hostile_templates.py) shows that nothing escapes; here each limit is
checked at its edge, settable on `OpenWorkflow`, named in the error, and stopped by step and
workflow timeouts.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from owf_magics import OpenWorkflow, OWFError
from owf_magics.cli import main
from owf_magics.manifest.budget import DEFAULT_LIMITS, TemplateLimits
from owf_magics.manifest.render import TemplateError, render_string

DOCS = Path(__file__).resolve().parent.parent / "docs"
SLOW = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


def _transform(ow: OpenWorkflow, expression: str, **wf: object) -> dict:
    ow.load({"name": "t", "steps": [{"id": "t", "type": "transform", "expression": expression}], **wf})
    return ow.workflow("t").execute()


@pytest.mark.parametrize(
    ("limit", "ok", "too_much"),
    [
        ("max_string", "{{ 'a' * 10 }}", "{{ 'a' * 11 }}"),
        ("max_string", "{{ 'a' | center(10) }}", "{{ 'a' | center(11) }}"),
        ("max_string", "{{ '%5d' % 1 }}", "{{ '%11d' % 1 }}"),
        ("max_string", "{{ '{0:>4}'.format(1) }}", "{{ '{0:>11}'.format(1) }}"),
        ("max_string", "{{ 'aaaaa' ~ 'bbbbb' }}", "{{ 'aaaaa' ~ 'bbbbbb' }}"),
        ("max_items", "{{ [0] * 10 }}", "{{ [0] * 11 }}"),
        ("max_items", "{{ [1] | batch(10) | list }}", "{{ [1] | batch(11) | list }}"),
        ("max_int_bits", "{{ 2 ** 63 }}", "{{ 2 ** 64 }}"),
        ("max_iterations", "{% for i in range(9) %}{% endfor %}", "{% for i in range(30) %}{% endfor %}"),
    ],
)
def test_each_limit_holds_at_its_edge(limit, ok, too_much):
    limits = {"max_string": 10, "max_items": 10, "max_int_bits": 64, "max_iterations": 20}
    ow = OpenWorkflow(template_limits=limits)
    r = _transform(ow, ok)
    assert r.status == "completed", r.steps["t"].error
    ow = OpenWorkflow(template_limits=limits)
    r = _transform(ow, too_much)
    err = r.steps["t"].error
    assert r.steps["t"].status == "failed" and err.details["limit"] == limit, err
    assert limit in err.message and "expression" in err.message  # names the limit and the field


def test_an_error_names_the_field_and_the_template():
    ow = OpenWorkflow(state=":memory:")
    ow.load("""
connector: {name: fn, kind: sdk, actions: [{name: echo, handler: {function: tests.handlers.echo}}]}
---
name: big
steps:
  - {id: e, connector: fn, action: echo, input: {note: {text: "{{ 'a' * 10**9 }}"}}}
""")
    err = ow.workflow("big").execute().steps["e"].error
    assert err.details["field"] == "input.note.text" and err.details["template"] == "{{ 'a' * 10**9 }}"
    assert err.message.startswith("input.note.text: ") and "max_string = 1,000,000" in err.message


def test_a_step_timeout_stops_a_template():
    ow = OpenWorkflow(template_limits={"max_iterations": 10**12, "max_seconds": 60})
    started = time.monotonic()
    ow.load({"name": "s", "steps": [{"id": "t", "type": "transform", "expression": SLOW, "timeout": "1s"}]})
    r = ow.workflow("s").execute()
    elapsed = time.monotonic() - started
    err = r.steps["t"].error
    assert elapsed < 10 and err.code == "TIMEOUT", err
    assert "step 't' timeout (1s)" in err.message


def test_a_workflow_timeout_stops_a_template():
    ow = OpenWorkflow(template_limits={"max_iterations": 10**12, "max_seconds": 60})
    started = time.monotonic()
    r = _transform(ow, SLOW, timeout="1s")
    assert time.monotonic() - started < 10
    assert r.status == "failed" and r.steps["t"].error.code == "TIMEOUT"
    assert "workflow 't' timeout (1s)" in r.steps["t"].error.message


def test_the_time_budget_stops_a_template_without_any_timeout():
    ow = OpenWorkflow(template_limits={"max_iterations": 10**12, "max_seconds": 0.5})
    started = time.monotonic()
    r = _transform(ow, SLOW)
    assert time.monotonic() - started < 10
    err = r.steps["t"].error
    assert err.code == "TIMEOUT" and "max_seconds (0.5s" in err.message


def test_ordinary_templates_are_untouched():
    ow = OpenWorkflow()
    expression = (
        "{% for i in range(1000) %}{{ i }},{% endfor %}"
        "{{ ([1, 2, 3] | map('string') | join('-')) ~ '|' ~ ('%05d' % 42) ~ '|' ~ '{:>6}'.format('x') }}"
    )
    r = _transform(ow, expression)
    assert r.status == "completed"
    assert r.steps["t"].output["result"].endswith("998,999,1-2-3|00042|     x")
    assert render_string("{{ [1, 2] | map('string') | list }}", {}) == ["1", "2"]
    assert render_string("{{ range(3) }}", {}) == [0, 1, 2]


def test_limits_are_validated():
    with pytest.raises(OWFError) as info:
        OpenWorkflow(template_limits={"max_strings": 10})
    assert "max_strings" in info.value.message
    assert OpenWorkflow(template_limits=TemplateLimits(max_string=5)).template_limits.max_string == 5
    assert OpenWorkflow().template_limits == DEFAULT_LIMITS


def test_a_value_that_is_not_data_fails_the_step():
    with pytest.raises(TemplateError) as info:
        render_string("{{ (cycler) }}", {})
    assert "data" in info.value.message
    with pytest.raises(TemplateError):
        render_string("x{{ (joiner) }}", {})
    with pytest.raises(TemplateError):
        render_string("{{ ''.__class__ }}", {})


def test_documented_defaults_match_the_code():
    text = (DOCS / "security.md").read_text(encoding="utf-8")
    for name in TemplateLimits.__dataclass_fields__:
        row = re.search(rf"^\| `{name}` \| ([^|]+) \|", text, re.M)
        assert row, f"docs/security.md does not document {name}"
        number = re.match(r"([\d,.]+)", row.group(1)).group(1).replace(",", "")
        assert float(number) == float(getattr(DEFAULT_LIMITS, name)), name


def test_validate_json_prints_json_for_huge_numbers(tmp_path, capsys):
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "name: big\nsteps:\n"
        '  - {id: a, type: transform, expression: "{{ 10**5000 }}"}\n'
        f'  - {{id: b, type: transform, expression: "{{{{ {"7" * 5000} }}}}"}}\n'
    )
    code = main(["validate", "--json", str(flow)])
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    assert out["ok"] is False
    found = out["errors"]
    assert [(d["code"], d["line"]) for d in found] == [("TEMPLATE_SYNTAX", 4)]
