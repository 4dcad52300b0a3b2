"""Cells stay true: an edited cell run again replaces what it defined, sources and diagnostics name
``<cell N>`` with the execution count, and one vocabulary for where a backend came from (``step``,
``agent``, ``workflow``, ``prefer``, ``default``) in the plan, the tables, the trace and the store."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from owf_magics import OpenWorkflow, OWFError
from owf_magics.notebook.magics import registry
from owf_magics.notebook.views import resolution_rows
from tests.ipython_shell import magic_shell

FLOW = """\
workflows:
  - name: {name}
    steps:
      - {{id: a, type: transform, expression: "{{{{ 1 + 1 }}}}"}}
"""
SOURCES = """\
agents:
  - {name: lc, model: {provider: echo}, execution: {backend: native}}
  - {name: plain, model: {provider: echo}}
workflows:
  - name: mixed
    execution: {backend: native}
    steps:
      - {id: by_step, type: transform, expression: x, execution: {backend: native}}
      - {id: by_agent, agent: lc, input: {task: x}}
      - {id: by_workflow, type: transform, expression: y}
  - name: bare
    steps:
      - {id: none, type: transform, expression: x}
"""


@pytest.fixture
def shell(tmp_path):
    with magic_shell(state=str(tmp_path / "runs.db")) as ip:
        yield ip


def run(ip, text, **kwargs):
    with capture_output() as cap:
        result = ip.run_cell(text, **kwargs)
    return result, cap


def test_an_edited_cell_run_again_replaces_its_renamed_workflow(shell):
    result, _ = run(shell, "%%workflow --quiet\n" + FLOW.format(name="alpha"), cell_id="cell-a")
    assert result.success, result.error_in_exec
    run(shell, "%%workflow --quiet\n" + FLOW.format(name="other"), cell_id="cell-b")
    result, _ = run(shell, "%%workflow --quiet\n" + FLOW.format(name="beta"), cell_id="cell-a")  # edited
    assert result.success, result.error_in_exec
    names = {w.name for w in registry(shell).workflows()}
    assert names == {"beta", "other"}
    result, _ = run(shell, "%workflow run alpha")
    assert isinstance(result.error_in_exec, UsageError)
    with pytest.raises(OWFError):
        registry(shell).workflow("alpha")
    # a named cell renamed in place is the same cell too
    run(shell, "%%workflow gamma --quiet\n" + FLOW.format(name="gamma"), cell_id="cell-c")
    run(shell, "%%workflow delta --quiet\n" + FLOW.format(name="delta"), cell_id="cell-c")
    assert {w.name for w in registry(shell).workflows()} == {"beta", "other", "delta"}


def test_an_item_another_cell_also_defines_is_kept(shell):
    agent = "agents:\n  - {name: shared, model: {provider: echo}}\n"
    run(shell, "%%workflow --quiet\n" + agent + FLOW.format(name="one"), cell_id="c1")
    run(shell, "%%workflow --quiet\n" + agent + FLOW.format(name="two"), cell_id="c2")
    run(shell, "%%workflow --quiet\n" + FLOW.format(name="one"), cell_id="c1")  # c1 drops the agent
    assert [a.name for a in registry(shell).agents()] == ["shared"]  # c2 still defines it


def test_sources_and_diagnostics_name_the_cell_by_its_execution_count(shell):
    result, _ = run(shell, "%%workflow --quiet\n" + FLOW.format(name="counted"), store_history=True)
    assert result.success, result.error_in_exec
    count = result.execution_count
    assert registry(shell).workflow("counted").item.file == f"<cell {count}>"
    _, cap = run(shell, "%workflow list", store_history=True)
    assert f"<cell {count}>" in cap.outputs[-1].data["text/plain"]
    bad = "%%workflow\nworkflows:\n  - name: bad\n    steps:\n      - {id: a, agent: nope}\n"
    result, cap = run(shell, bad, store_history=True)
    assert result.execution_count == count + 2
    assert f"UNKNOWN_REFERENCE at <cell {count + 2}>:5, step 'a'" in cap.stdout


def test_one_vocabulary_for_the_backend_source_everywhere(tmp_path):
    ow = OpenWorkflow(state=str(tmp_path / "runs.db"))
    ow.load(SOURCES)
    mixed, bare = ow.workflow("mixed"), ow.workflow("bare")
    expected = {"by_step": "step", "by_agent": "agent", "by_workflow": "workflow"}
    plan = mixed.plan()
    assert {s: plan[s].source for s in plan} == expected
    assert bare.plan()["none"].source == "default"
    assert bare.plan(prefer_backend="native")["none"].source == "prefer"
    # the resolution table, the live trace, the stored trace and the events say the same words
    assert {r["step"]: r["source"] for r in resolution_rows(plan)} == expected
    res = mixed.execute()
    assert dict(zip(res.trace["step_id"], res.trace["backend_source"], strict=True)) == expected
    stored = ow.run(res.run_id)
    assert dict(zip(stored.trace["step_id"], stored.trace["backend_source"], strict=True)) == expected
    done = [e for e in res.events if e["type"] == "step.execution.completed"]
    assert {e["step_id"]: e["execution"]["backend_source"] for e in done} == expected
    prefer = bare.execute(prefer_backend="native")
    assert list(prefer.trace["backend_source"]) == ["prefer"]
    # the words explained, each starting with the source itself
    assert plan["by_agent"].explanation == "agent: the agent's execution.backend"
    assert bare.plan()["none"].reason == "default"
    ow.close()
