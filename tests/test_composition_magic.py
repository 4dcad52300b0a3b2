"""`%%workflow` cells compose by name (issue 13, item 6), through a real IPython `InteractiveShell`."""

from __future__ import annotations

from tests.test_magics import cell, shell  # noqa: F401 - the shell fixture

FETCH = """\
workflows:
  - name: fetch
    inputs: {topic: {type: string}}
    steps:
      - {id: get, type: transform, expression: "{{ inputs.topic | upper }}"}
    outputs: {text: {value: "{{ steps.get.output.result }}", type: string}}
"""

DIGEST = """\
workflows:
  - name: digest
    steps:
      - {id: f, workflow: fetch, inline: true, with: {topic: owf}}
      - {id: shout, type: transform, expression: "{{ steps.f.outputs.text }}!"}
    outputs: {text: "{{ steps.shout.output.result }}"}
"""


def test_a_cell_inlines_a_workflow_an_earlier_cell_defined(shell):  # noqa: F811
    result, _ = cell(shell, "--quiet", FETCH)
    assert result.success, result.error_in_exec
    result, cap = cell(shell, "--run -o res", DIGEST)
    assert result.success, result.error_in_exec
    assert shell.user_ns["res"].outputs == {"text": "OWF!"}
    assert list(shell.user_ns["res"].steps) == ["f/get", "shout"]
    assert "┆ part f:" in cap.outputs[-1].data["text/plain"]  # the run's graph groups the part
    result, cap = cell(shell, "", DIGEST)
    mermaid = cap.outputs[0].data["text/vnd.mermaid"]
    assert 'subgraph g0["part f"]' in mermaid and "f/get" in mermaid
