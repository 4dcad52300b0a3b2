"""Opaque secrets (issue 21): a secret fills a credential field whole, and nothing else.

Refused at load with file:line where the template shows it (SECRET_USE), at run time otherwise.
"""

from __future__ import annotations

import pytest

from owf_magics import ManifestError, OpenWorkflow

HEAD = """connector: {name: fn, kind: sdk, actions: [{name: echo, handler: {function: tests.handlers.echo}}]}
---
agents:
  - {name: parrot, model: {provider: echo}}
workflows:
  - name: w
    inputs: {k: {type: string}}
    steps:
      - {id: first, type: transform, expression: "ok"}
"""  # the step under test is on line 10


@pytest.mark.parametrize(
    ("step", "what"),
    [
        ('{id: s, type: transform, expression: "{{ secrets.TOKEN }}"}', "may not go into a transform"),
        ('{id: s, type: agent, agent: parrot, input: {apiKey: "{{ secrets.TOKEN }}"}}', "an agent's prompt"),
        ('{id: s, type: agent, agent: parrot, input: "say {{ secrets.TOKEN }}"}', "an agent's prompt"),
        ('{id: s, connector: fn, action: echo, input: {text: "{{ secrets.TOKEN }}"}}', "not named like a credential"),
        ('{id: s, type: transform, expression: "ok", condition: "{{ secrets.TOKEN }}"}', "may not go into"),
        ('{id: s, connector: fn, action: echo, input: {token: "{{ secrets.TOKEN | upper }}"}}', "'upper' filter"),
        ('{id: s, connector: fn, action: echo, input: {token: "{{ secrets.TOKEN | reverse }}"}}', "'reverse' filter"),
        ('{id: s, connector: fn, action: echo, input: {token: "{{ secrets.TOKEN[1:] }}"}}', "reading a part"),
        ('{id: s, connector: fn, action: echo, input: {token: "{{ secrets.TOKEN.upper() }}"}}', "reading a part"),
        ("{id: s, connector: fn, action: echo, input: {token: \"{{ secrets.TOKEN ~ 'x' }}\"}}", "an operator"),
        ("{id: s, connector: fn, action: echo, input: {token: \"{{ secrets.TOKEN == 'x' }}\"}}", "comparing"),
        ('{id: s, connector: fn, action: echo, input: {token: "{{ secrets.TOKEN is string }}"}}', "'string' test"),
        (
            '{id: s, connector: fn, action: echo, input: {token: "{% for c in secrets.TOKEN %}{{ c }}{% endfor %}"}}',
            "iterating",
        ),
        ('{id: s, connector: fn, action: echo, input: {token: "{{ secrets | list }}"}}', "all of 'secrets'"),
        ('{id: s, connector: fn, action: echo, input: {token: "{{ secrets[inputs.k] }}"}}', "all of 'secrets'"),
    ],
)
def test_a_misused_secret_is_refused_at_load_with_its_line(step, what):
    ow = OpenWorkflow(state=":memory:")
    with pytest.raises(ManifestError) as info:
        ow.load(HEAD + f"      - {step}\n", name="flow.yaml")
    found = [(d.code, d.file, d.line, d.step_id) for d in info.value.diagnostics]
    assert ("SECRET_USE", "flow.yaml", 10, "s") in found, found
    assert any(what in d.message and "secret" in d.message for d in info.value.diagnostics), info.value.message


def test_a_secret_in_an_output_is_refused_at_load_with_its_line():
    ow = OpenWorkflow(state=":memory:")
    with pytest.raises(ManifestError) as info:
        ow.load(HEAD + "    outputs:\n      t: {value: \"{{ secrets.TOKEN | list | join('-') }}\"}\n", name="f.yaml")
    [d] = info.value.diagnostics
    assert (d.code, d.line, d.path) == ("SECRET_USE", 11, "workflows[0].outputs.t.value")


def test_a_secret_fills_a_credential_field_whole():
    ow = OpenWorkflow(state=":memory:")
    ow.load(
        HEAD
        + '      - {id: s, connector: fn, action: echo, input: {headers: {Authorization: "Bearer {{ secrets.TOKEN }}"},'
        + ' api_key: "{{ secrets.TOKEN }}"}}\n'
    )
    r = ow.workflow("w").execute(secrets={"TOKEN": "tok-/+-value"}, inputs={"k": "x"})
    assert r.status == "completed"
    assert r.steps["s"].output == {"echo": {"headers": {"Authorization": "Bearer ***"}, "api_key": "***"}}


def test_what_only_the_run_shows_is_refused_at_run_time():
    """A computed name reaches a credential-like variable: the sandbox refuses the operation."""
    ow = OpenWorkflow(state=":memory:", environment={"API_TOKEN": "run-time-secret-77"})
    ow.load(
        HEAD.replace("    inputs:", "    runtime: {environment: [{name: API_TOKEN}]}\n    inputs:")
        + '      - {id: s, type: transform, expression: "{{ env[inputs.k] | upper }}"}\n'
        + '      - {id: t, type: transform, expression: "{{ env[inputs.k] }}"}\n'
        + '      - {id: u, connector: fn, action: echo, input: {token: "{{ env[inputs.k] }}"}}\n'
    )
    r = ow.workflow("w").execute(inputs={"k": "API_TOKEN"})
    for sid, what in (("s", "the 'upper' filter"), ("t", "rendering")):
        err = r.steps[sid].error
        assert r.steps[sid].status == "failed" and err.code == "VALIDATION", err
        assert what in err.message and "secret 'API_TOKEN'" in err.message
    assert r.steps["u"].output == {"echo": {"token": "***"}}  # whole, in a credential field: allowed
    assert "run-time-secret-77" not in repr(r.steps) + repr(r.events) + repr(r.outputs)
