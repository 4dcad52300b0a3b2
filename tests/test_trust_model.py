"""What docs/security.md promises about handlers and inputs, checked with real subprocesses."""

from __future__ import annotations

import sys

from owf_magics import OpenWorkflow

ARGV = "import json, sys; print(json.dumps(sys.argv[1:]))"


def test_command_input_values_are_single_arguments_never_a_shell(tmp_path):
    marker = tmp_path / "pwned"
    ow = OpenWorkflow(state=":memory:")
    ow.load(
        f"connector: {{name: argv}}\nactions:\n  - name: show\n    handler:\n"
        f"      command: {sys.executable!r}\n      args: ['-c', {ARGV!r}, '--', 'a-${{input.v}}', '${{input.v}}']\n"
    )
    ow.load(
        "name: w\ninputs: {v: {type: string}}\n"
        "steps: [{id: s, connector: argv, action: show, input: {v: '{{ inputs.v }}'}}]"
    )
    value = f"x; touch {marker} && echo $(id) | cat `id` * ${{secrets.T}} {{{{ 7*7 }}}}"
    result = ow.workflow("w").execute(inputs={"v": value}, secrets={"T": "sekret"})
    assert result.status == "completed", result.steps["s"].error
    assert result.steps["s"].output == ["--", f"a-{value}", value]  # each one argv element, as given
    assert not marker.exists()  # no shell ever read it


def test_input_values_are_never_templates():
    ow = OpenWorkflow(state=":memory:")
    ow.load(
        "name: w\ninputs: {t: {type: string}}\n"
        "steps: [{id: a, type: transform, expression: 'x{{ inputs.t }}'}]\noutputs: {a: '{{ steps.a.output }}'}"
    )
    result = ow.workflow("w").execute(inputs={"t": "{{ 7*7 }}${env.HOME}"})
    assert result.outputs["a"] == {"result": "x{{ 7*7 }}${env.HOME}"}
