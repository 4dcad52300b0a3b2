"""Run history: the core functions (runs, diff, timeline, turns, step details, cost) on a real SQLite
store, then ``%workflow runs | diff | replay | fork | timeline | inspect | cost`` through a real
IPython shell."""

from __future__ import annotations

import math
import pickle
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from owf_magics import OpenWorkflow, OWFError
from owf_magics.api import run_history as h
from tests.flows import CALCULATOR
from tests.ipython_shell import magic_shell

# two agents: a planner that calls a tool once, then answers; a writer that answers at once
TEAM = (
    CALCULATOR
    + """
---
agents:
  - name: planner
    model:
      provider: scripted
      name: plan-model
      responses:
        - tool_calls: [{name: calculator_add, args: {a: 1, b: 2}}]
          usage: {prompt_tokens: 10, completion_tokens: 5}
        - content: "plan: 3"
          usage: {prompt_tokens: 20, completion_tokens: 7}
    toolset: [calculator]
  - name: writer
    model:
      provider: scripted
      name: write-model
      responses:
        - content: "the text"
          usage: {prompt_tokens: 3, completion_tokens: 2}
    personality: {systemPrompt: You write.}
workflows:
  - name: team
    inputs: {topic: {type: string, default: tea}, n: {type: integer, default: 2}}
    steps:
      - {id: prep, type: transform, expression: "{{ inputs.topic | upper }}"}
      - {id: plan, agent: planner, input: {task: "plan {{ steps.prep.output.result }}"}}
      - {id: write, agent: writer, input: {task: "{{ steps.plan.output }}"}}
      - id: each
        type: forEach
        items: "{{ range(inputs.n) | list }}"
        steps:
          - {id: sq, type: transform, expression: "{{ item * item }}"}
    outputs: {text: {value: "{{ steps.write.output }}"}}
"""
)


@pytest.fixture
def ow(tmp_path):
    ow = OpenWorkflow(state=str(tmp_path / "runs.db"))
    ow.load(TEAM)
    yield ow
    ow.close()


def test_runs_table_lists_newest_first_and_names_replays_and_forks(ow):
    wf = ow.workflow("team")
    first = wf.execute()
    second = wf.execute(inputs={"topic": "coffee"})
    fork = ow.fork(first.run_id, "write")
    replay = ow.replay(first.run_id)
    table = h.runs_table(ow, "team")
    assert list(table["run_id"]) == [replay.run_id, fork.run_id, second.run_id, first.run_id]
    origin = dict(zip(table["run_id"], table["origin"], strict=True))
    assert origin[fork.run_id] == f"fork of {first.run_id} from write"
    assert origin[replay.run_id] == f"replay of {first.run_id}"
    assert origin[first.run_id] == ""
    assert h.runs_table(ow, "no-such-workflow").empty
    assert len(h.runs_table(ow, limit=1)) == 1


def test_diff_names_the_steps_that_differ_side_by_side(ow):
    wf = ow.workflow("team")
    a = wf.execute()
    b = wf.execute(inputs={"topic": "coffee", "n": 3})
    diff = h.diff_runs(ow, a, b.run_id)
    # durations may differ too (the first run compiles the templates): leave them out here
    changed = {(r.step_id, r.iteration): r.changed.replace(", duration_ms", "") for r in diff.itertuples()}
    assert changed[("prep", "")] == "output"
    assert changed[("each", "")] == "output"
    assert changed[("sq", "2")] == "status"  # the third iteration ran only in B
    assert changed.get(("write", ""), "duration_ms") == "duration_ms"  # the writer's answer is the same
    row = diff[diff["step_id"] == "prep"].iloc[0]
    assert (row["output_a"], row["output_b"]) == ({"result": "TEA"}, {"result": "COFFEE"})
    assert diff.attrs == {"run_a": a.run_id, "run_b": b.run_id}
    # a run id's unique suffix works as well as the id; a fork from `write` reproduces A
    fork = ow.fork(a.run_id, "write")
    assert h.diff_runs(ow, a.run_id[-6:], fork).empty
    same = h.diff_runs(ow, a, fork, include_same=True)
    assert set(same["step_id"]) == {"prep", "plan", "write", "each", "sq"} and set(same["changed"]) == {""}
    pickle.loads(pickle.dumps(diff))  # plain data


def test_diff_reports_token_and_status_changes(ow, tmp_path):
    other = OpenWorkflow(state=str(tmp_path / "runs.db"))  # the same store, another writer's tokens
    other.load(TEAM.replace("prompt_tokens: 3, completion_tokens: 2", "prompt_tokens: 30, completion_tokens: 2"))
    a = ow.workflow("team").execute()
    b = other.workflow("team").execute()
    diff = h.diff_runs(ow, a, b)
    write = diff[diff["step_id"] == "write"].iloc[0]
    assert write["changed"] == "tokens" and (write["tokens_a"], write["tokens_b"]) == (5, 32)
    other.close()
    with pytest.raises(OWFError) as err:
        h.diff_runs(ow, a, "nope")
    assert "no stored run 'nope'" in err.value.message


def test_diff_reports_a_step_that_took_much_longer(tmp_path):
    ow = OpenWorkflow(state=str(tmp_path / "runs.db"))
    ow.load(
        "connector: {name: t, actions: [{name: nap, handler: {function: tests.handlers.nap}}]}\n---\n"
        "name: napper\ninputs: {ms: {type: integer}}\nsteps: [{id: rest, connector: t, action: nap, input: {ms: '{{ inputs.ms }}'}}]\n"
    )
    wf = ow.workflow("napper")
    quick, slow = wf.execute(inputs={"ms": 0}), wf.execute(inputs={"ms": 400})
    diff = h.diff_runs(ow, quick, slow)
    row = diff.iloc[0]
    assert (row["step_id"], row["changed"]) == ("rest", "duration_ms")
    assert row["duration_ms_b"] >= 400 > row["duration_ms_a"]
    assert h.diff_runs(ow, quick, slow, min_duration_ms=1000).empty  # under the threshold: the same
    ow.close()


def test_timeline_places_every_execution_on_one_axis_and_draws_it(ow):
    from owf_magics.notebook.views.timeline import TIMELINE_COLOURS, TimelineView

    res = ow.workflow("team").execute()
    frame = h.timeline(res)
    assert len(frame) == len(res.trace_rows) == 6
    assert frame["start_ms"].min() == 0.0
    assert (frame["end_ms"] >= frame["start_ms"]).all()
    assert list(frame["start_ms"]) == sorted(frame["start_ms"])
    assert set(frame[frame["step_id"] == "sq"]["iteration"]) == {"0", "1"}
    view = TimelineView(res)
    svg = view.svg()
    root = ET.fromstring(svg)  # well-formed
    bars = [g for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "owf-bar"]
    assert [b.get("data-step") for b in bars] == list(frame["step_id"])
    assert all(TIMELINE_COLOURS["success"] in ET.tostring(b, encoding="unicode") for b in bars)
    bundle = view._repr_mimebundle_()
    assert bundle["image/svg+xml"] == svg and "sq [1]" in bundle["text/plain"]


def test_timeline_saves_svg_only(ow, tmp_path):
    from owf_magics.notebook.views.timeline import TimelineView

    view = TimelineView(ow.workflow("team").execute())
    out = view.save(tmp_path / "t.svg")
    assert out.read_text(encoding="utf-8").startswith("<svg")
    with pytest.raises(ValueError, match="SVG"):
        view.save(tmp_path / "t.png")


@pytest.mark.parametrize("backend", ["native", "langchain"])
def test_agent_turns_keep_the_prompt_and_completion_text_also_when_read_back(ow, backend):
    res = ow.workflow("team").execute(prefer_backend=backend)
    assert res.status == "completed" and res.steps["plan"].backend == backend
    for source in (res, ow.run(res.run_id)):
        turns = h.agent_turns(source)
        plan = turns[turns["step_id"] == "plan"]
        assert list(plan["turn"]) == [1, 2]
        assert plan.iloc[0]["tool_calls"] == ["calculator_add"] and pd.isna(plan.iloc[0]["completion"])
        assert plan.iloc[0]["prompt"][-1] == {"role": "user", "content": '{"task": "plan TEA"}'}
        second = plan.iloc[1]["prompt"]  # what turn 2 adds: the tool call and its result
        assert [m["role"] for m in second] == ["assistant", "tool"] and '"result": 3' in second[1]["content"]
        assert plan.iloc[1]["completion"] == "plan: 3"
        write = turns[turns["step_id"] == "write"].iloc[0]
        assert write["prompt"][0] == {"role": "system", "content": "You write."}
        assert (write["agent"], write["provider"], write["model"]) == ("writer", "scripted", "write-model")


def test_step_details_give_input_output_and_turns(ow):
    res = ow.workflow("team").execute()
    d = h.step_details(ow, res, "plan")
    assert d["input"] == {"task": "plan TEA"} and d["output"] == "plan: 3" and d["status"] == "success"
    assert [t["turn"] for t in d["turns"]] == [1, 2]
    one = h.step_details(ow, ow.run(res.run_id), "sq", "0")
    assert one["output"] == {"result": 0} and one["iteration"] == "0"
    last = h.step_details(ow, res, "sq")
    assert last["iteration"] == "1" and last["iterations"] == ["0", "1"]
    with pytest.raises(OWFError) as err:
        h.step_details(ow, res, "plna")
    assert "Did you mean 'plan'?" in err.value.message


def test_cost_rollup_per_agent_provider_and_model(ow):
    wf = ow.workflow("team")
    a, b = wf.execute(), wf.execute()
    one = h.cost_rollup(a)
    rows = {r.agent: r for r in one.itertuples()}
    assert set(rows) == {"planner", "writer"}
    assert (rows["planner"].model, rows["planner"].turns, rows["planner"].total_tokens) == ("plan-model", 2, 42)
    assert (rows["writer"].provider, rows["writer"].total_tokens) == ("scripted", 5)
    both = h.cost_rollup([a, ow.run(b.run_id)])
    assert dict(zip(both["agent"], both["total_tokens"], strict=True)) == {"planner": 84, "writer": 10}
    assert set(both["runs"]) == {2}
    assert list(h.cost_rollup(a, by=("provider",))["total_tokens"]) == [47]
    assert all(not math.isnan(c) for c in both["cost_usd"])


# -- the magic ----------------------------------------------------------------------------------


@pytest.fixture
def shell(tmp_path):
    with magic_shell(state=str(tmp_path / "runs.db"), deterministic=False) as ip:
        with capture_output():
            assert ip.run_cell(f"%%workflow team --quiet --run -o a\n{TEAM}").success
            assert ip.run_cell("%workflow run team --quiet --input topic=coffee -o b").success
        yield ip


def line(ip, text):
    with capture_output() as cap:
        result = ip.run_cell(f"%workflow {text}")
    return result, cap


def test_runs_magic_shows_the_store_and_binds_the_frame(shell):
    result, cap = line(shell, "runs team -o table")
    assert result.success, result.error_in_exec
    table = shell.user_ns["table"]
    a, b = shell.user_ns["a"], shell.user_ns["b"]
    assert list(table["run_id"]) == [b.run_id, a.run_id]
    shown = cap.outputs[-1].data
    assert "2 stored runs" in shown["text/plain"] and a.run_id in shown["text/plain"]
    assert 'class="owf-runs"' in shown["text/html"]
    _, cap = line(shell, "runs other")
    assert "no stored runs of 'other' yet" in cap.stdout


def test_diff_magic_takes_variables_and_ids(shell):
    a, b = shell.user_ns["a"], shell.user_ns["b"]
    result, cap = line(shell, f"diff a {b.run_id} -o d")
    assert result.success, result.error_in_exec
    d = shell.user_ns["d"]
    assert d[d["step_id"] == "prep"].iloc[0]["changed"] == "output"
    assert set(d["changed"]) <= {"output", "duration_ms"}  # the first run's loop may be slower (warm-up)
    text = cap.outputs[-1].data["text/plain"]
    assert f"runs {a.run_id} (A) and {b.run_id} (B): {len(d)} step" in text and (
        "1 step differs" in text or "steps differ" in text
    )
    assert 'output: A {"result": "TEA"}  |  B {"result": "COFFEE"}' in text
    assert 'style="background:#fde7d9"' in cap.outputs[-1].data["text/html"]
    result, cap = line(shell, "diff a")
    assert isinstance(result.error_in_exec, UsageError) and "two runs" in str(result.error_in_exec)


def test_replay_and_fork_magics_make_new_runs(shell):
    a = shell.user_ns["a"]
    result, cap = line(shell, "replay a -o r")
    assert result.success, result.error_in_exec
    replay = shell.user_ns["r"]
    assert replay.run_id != a.run_id and replay.outputs == a.outputs
    assert "completed" in cap.outputs[-1].data["text/plain"]
    result, _ = line(shell, "fork a --from write -o f --quiet")
    assert result.success, result.error_in_exec
    fork = shell.user_ns["f"]
    assert fork.status == "completed" and set(fork.steps) >= {"write"}
    table = shell.user_ns.get("table")
    assert table is None
    _, cap = line(shell, "runs team")
    assert f"fork of {a.run_id} from write" in cap.outputs[-1].data["text/plain"]
    result, _ = line(shell, "fork a")
    assert "--from STEP" in str(result.error_in_exec)
    result, _ = line(shell, "fork a --from nope")
    assert "has no step 'nope'" in str(result.error_in_exec)


def test_timeline_inspect_and_cost_magics(shell):
    result, cap = line(shell, "timeline a")
    assert result.success, result.error_in_exec
    assert cap.outputs[-1].data["image/svg+xml"].startswith("<svg")
    result, cap = line(shell, "inspect plan a")
    assert result.success, result.error_in_exec
    text = cap.outputs[-1].data["text/plain"]
    assert 'input:\n{\n  "task": "plan TEA"\n}' in text
    assert "turn 2 · planner · scripted/plan-model" in text and "completion:\nplan: 3" in text
    result, cap = line(shell, "inspect sq[0]")  # the last run (b)
    assert result.success, result.error_in_exec
    assert cap.outputs[-1].data["text/plain"].startswith("step sq[0]: success")
    result, cap = line(shell, "cost team -o c")
    assert result.success, result.error_in_exec
    assert dict(zip(shell.user_ns["c"]["agent"], shell.user_ns["c"]["runs"], strict=True)) == {
        "planner": 2,
        "writer": 2,
    }
    assert "2 runs of 'team'" in cap.outputs[-1].data["text/plain"]
    result, _ = line(shell, "inspect nosuch a")
    assert isinstance(result.error_in_exec, UsageError)


def test_step_io_gives_every_execution_its_input_and_output(ow):
    res = ow.workflow("team").execute()
    io = h.step_io(ow, res)
    rows = {(r.step_id, r.iteration): r for r in io.itertuples()}
    assert rows[("plan", "")].input == {"task": "plan TEA"} and rows[("plan", "")].output == "plan: 3"
    assert rows[("sq", "1")].output == {"result": 1}
    assert set(io["status"]) == {"success"}


def test_inspect_without_a_step_lists_every_input_and_output(shell):
    result, cap = line(shell, "inspect -o io")
    assert result.success, result.error_in_exec
    assert "plan TEA" not in cap.outputs[-1].data["text/plain"]  # the last run is b: coffee
    assert '{"task": "plan COFFEE"}' in cap.outputs[-1].data["text/plain"]
    assert list(shell.user_ns["io"]["step_id"])[:3] == ["prep", "plan", "write"]


@pytest.mark.slow
def test_history_cells_leave_static_outputs_under_nbclient(tmp_path):
    import nbclient
    import nbformat

    root = Path(__file__).resolve().parent.parent
    nb = nbformat.v4.new_notebook()
    sources = [
        "%load_ext owf_magics",
        f"%config OWF.state = {str(tmp_path / 'runs.db')!r}",
        f"%%workflow team --quiet --run -o a\n{TEAM}",
        "%workflow run team --quiet --input topic=coffee -o b",
        "%workflow runs team",
        "%workflow diff a b",
        "%workflow fork a --from write --quiet -o f",
        "%workflow timeline a",
        "%workflow inspect plan a",
        "%workflow cost team",
    ]
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(root)}}
    ).execute()
    shown = {s.split()[1]: c.outputs for s, c in zip(sources[4:], nb.cells[4:], strict=True)}
    for name, outputs in shown.items():
        data = [o for o in outputs if o.output_type == "display_data"]
        if name == "fork":
            assert data == []  # --quiet
            continue
        assert data and "text/plain" in data[-1]["data"], name
        assert "application/vnd.jupyter.widget-view+json" not in data[-1]["data"], name
    assert "2 stored runs" in shown["runs"][-1]["data"]["text/plain"]
    assert "prep: output" in shown["diff"][-1]["data"]["text/plain"]
    assert shown["timeline"][-1]["data"]["image/svg+xml"].startswith("<svg")
    assert "completion:\nplan: 3" in shown["inspect"][-1]["data"]["text/plain"]
    assert "planner" in shown["cost"][-1]["data"]["text/plain"]


def test_an_image_in_a_prompt_is_named_not_copied_into_the_events(tmp_path):
    ow = OpenWorkflow(state=str(tmp_path / "runs.db"))
    ow.load(
        "agents:\n  - {name: eye, model: {provider: scripted, responses: [{content: a cat}]}}\n"
        "workflows:\n  - name: look\n    steps:\n"
        "      - id: see\n        agent: eye\n        input:\n"
        "          - {type: text, text: what is this?}\n"
        "          - {type: image_url, image_url: {url: 'data:image/png;base64," + "A" * 4000 + "'}}\n"
    )
    res = ow.workflow("look").execute()
    assert res.status == "completed", res.error
    [turn] = h.agent_turns(ow.run(res.run_id)).to_dict("records")
    assert turn["prompt"] == [{"role": "user", "content": "what is this?\n[image data:image/png, 4022 characters]"}]
    assert "AAAA" not in str(ow.run(res.run_id).events)
    ow.close()
