"""The declared environment (issue 21): templates read only the variables a workflow declares.

`runtime.environment: [{name, required}]` in the workflow, or `OpenWorkflow(env=[...])`, says
which; `{{ env }}` shows only those; anything else is UNKNOWN_REFERENCE at load; a declared name
that looks like a credential is a secret.
"""

from __future__ import annotations

import pytest

from owf_magics import ManifestError, OpenWorkflow, OWFError

SOURCE = {"REGION": "eu-west-1", "API_TOKEN": "tok-9/+zz", "SERVER_JWT_SECRET": "jwt-never-shown", "HOME": "/x"}

ECHO = "connector: {name: fn, kind: sdk, actions: [{name: echo, handler: {function: tests.handlers.echo}}]}\n---\n"


def _ow(**kw):
    return OpenWorkflow(state=":memory:", environment=dict(SOURCE), **kw)


def test_a_declared_variable_is_read():
    ow = _ow()
    ow.load("""
name: where
runtime: {environment: [{name: REGION, required: true}]}
steps:
  - {id: a, type: transform, expression: "region={{ env.REGION }}"}
outputs: {region: {value: "{{ env.REGION }}"}}
""")
    r = ow.workflow("where").execute()
    assert r.steps["a"].output == {"result": "region=eu-west-1"} and r.outputs == {"region": "eu-west-1"}


def test_an_undeclared_variable_is_unknown_at_load_with_the_declaration_as_fix():
    ow = _ow()
    with pytest.raises(ManifestError) as info:
        ow.load(
            """
name: where
runtime: {environment: [{name: REGION}]}
steps:
  - {id: a, type: transform, expression: "{{ env.REGION }}"}
  - id: b
    type: transform
    expression: "{{ env.HOME }}"
""",
            name="flow.yaml",
        )
    [d] = info.value.diagnostics
    assert (d.code, d.file, d.line, d.step_id) == ("UNKNOWN_REFERENCE", "flow.yaml", 8, "b")
    assert "env.HOME" in d.message and "runtime: {environment: [{name: HOME}]}" in d.hint


def test_the_registry_can_allow_names_for_every_workflow():
    ow = _ow(env=["HOME"])
    ow.load("name: home\nsteps:\n  - {id: a, type: transform, expression: '{{ env.HOME }}'}\n")
    assert ow.workflow("home").execute().steps["a"].output == {"result": "/x"}
    with pytest.raises(TypeError):
        OpenWorkflow(env="HOME")


def test_env_shows_only_declared_names_and_hides_credentials():
    ow = _ow(env=["REGION"])
    ow.load("""
name: all
inputs: {k: {type: string}}
runtime: {environment: [{name: API_TOKEN}, {name: NOT_SET}]}
steps:
  - {id: a, type: transform, expression: "{{ env }}"}
  - {id: b, type: transform, expression: "{{ json(env) }} {{ env | length }}"}
  - {id: c, type: transform, expression: "{{ env[inputs.k] }}"}
""")
    r = ow.workflow("all").execute(inputs={"k": "SERVER_JWT_SECRET"})
    assert r.steps["a"].output == {"result": {"API_TOKEN": "***", "REGION": "eu-west-1"}}
    assert r.steps["b"].output["result"].endswith(" 2")
    assert r.steps["c"].status == "failed"  # a computed name is looked up in the declared ones only
    text = repr(r.steps) + repr(r.events)
    assert "jwt-never-shown" not in text and "tok-9/+zz" not in text and "/x" not in text


def test_a_credential_like_variable_is_a_secret():
    ow = _ow()
    with pytest.raises(ManifestError) as info:
        ow.load("""
name: leak
runtime: {environment: [{name: API_TOKEN}]}
steps:
  - {id: a, type: transform, expression: "ok"}
outputs: {t: {value: "{{ env.API_TOKEN }}"}}
""")
    [d] = info.value.diagnostics
    assert d.code == "SECRET_USE" and d.line == 6 and "env.API_TOKEN" in d.message
    seen = []

    ow.load(
        ECHO
        + """
name: use
runtime: {environment: [{name: API_TOKEN}]}
steps:
  - {id: call, connector: fn, action: echo, input: {headers: {Authorization: "Bearer {{ env.API_TOKEN }}"}}}
"""
    )
    r = ow.workflow("use").execute(callback=seen.append)
    assert r.status == "completed"
    assert r.steps["call"].output == {"echo": {"headers": {"Authorization": "Bearer ***"}}}


def test_a_required_variable_that_is_not_set_stops_the_run_before_it_starts():
    ow = _ow()
    ow.load("""
name: needs
runtime: {environment: [{name: NOT_SET, required: true}]}
steps:
  - {id: a, type: transform, expression: "ok"}
""")
    with pytest.raises(OWFError) as info:
        ow.workflow("needs").execute()
    assert info.value.code == "VALIDATION" and "NOT_SET" in info.value.message


def test_the_process_environment_is_not_readable(monkeypatch):
    monkeypatch.setenv("OWF_TEST_PROCESS_VALUE", "process-value-42")
    ow = OpenWorkflow(state=":memory:")
    ow.load("""
name: proc
inputs: {k: {type: string}}
steps:
  - {id: a, type: transform, expression: "{{ env }}|{{ env[inputs.k] | default('none') }}"}
""")
    r = ow.workflow("proc").execute(inputs={"k": "OWF_TEST_PROCESS_VALUE"})
    assert r.steps["a"].output == {"result": "{}|none"}
