"""Results that are data: trace and usage are plain DataFrames (pickle, joblib, parquet), nulls read
the same in every run, and a notebook shows them truncated (head and tail, the run once, the real
variable name) through IPython's display, not through a subclass."""

from __future__ import annotations

import importlib.util
import pickle

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from owf_magics import OpenWorkflow
from tests.flows import CALCULATOR

LOOP = """
name: loop
steps:
  - {id: each, type: transform, expression: "{{ item * 2 }}", forEach: "{{ range(30) | list }}"}
"""
FAILING = """
connector: {name: calc, kind: sdk}
actions: [{name: explode, handler: {function: tests.handlers.boom}}]
---
name: broken
steps:
  - {id: ok, type: transform, expression: fine}
  - {id: boom, connector: calc, action: explode, input: {message: kaboom}, continueOnError: true, needs: [ok]}
"""
AGENT = """
agent: {name: helper, model: {provider: echo}}
---
name: ask
steps: [{id: ask, agent: helper, input: {prompt: hello}}]
"""


@pytest.fixture
def ow():
    ow = OpenWorkflow(state=False)
    ow.load(CALCULATOR)
    ow.load(LOOP)
    ow.load(FAILING)
    ow.load(AGENT)
    return ow


def frames(ow):
    loop = ow.workflow("loop").execute()
    broken = ow.workflow("broken").execute()
    asked = ow.workflow("ask").execute()
    return loop, broken, asked


def test_trace_and_usage_are_plain_frames_that_pickle(ow, tmp_path):
    loop, broken, asked = frames(ow)
    for df in (loop.trace, broken.trace, asked.trace, asked.usage, loop.usage):
        assert type(df) is pd.DataFrame
        back = pickle.loads(pickle.dumps(df))
        pd.testing.assert_frame_equal(back, df)
        assert back.attrs == df.attrs
        df.to_pickle(tmp_path / "t.pkl")
        pd.testing.assert_frame_equal(pd.read_pickle(tmp_path / "t.pkl"), df)
    assert type(ow.workflow("loop").execute().trace.head(3)) is pd.DataFrame
    assert pickle.loads(pickle.dumps(loop)).trace.equals(loop.trace)  # the result too, frames rebuilt


def test_trace_goes_through_joblib(ow, tmp_path):
    if importlib.util.find_spec("joblib") is None:
        pytest.skip("joblib is not in the lock (locks/dev.txt); pickle above is what joblib uses")
    import joblib

    loop, _, _ = frames(ow)
    joblib.dump(loop.trace, tmp_path / "t.joblib")
    pd.testing.assert_frame_equal(joblib.load(tmp_path / "t.joblib"), loop.trace)


def test_trace_writes_to_parquet(ow, tmp_path):
    if importlib.util.find_spec("pyarrow") is None and importlib.util.find_spec("fastparquet") is None:
        pytest.skip("no parquet engine (pyarrow) is in the lock (locks/dev.txt)")
    loop, broken, _ = frames(ow)
    for df in (loop.trace, broken.trace):
        df.to_parquet(tmp_path / "t.parquet")
        back = pd.read_parquet(tmp_path / "t.parquet")
        assert list(back["step_id"]) == list(df["step_id"])


def test_nulls_are_the_same_in_every_run(ow):
    loop, broken, asked = frames(ow)
    traces = [loop.trace, broken.trace, asked.trace]
    for df in traces:
        assert df["error_code"].dtype == object and df["step_id"].dtype == object
        assert df["attempt"].dtype == "int64" and df["total_tokens"].dtype == "int64"
        assert df["duration_ms"].dtype == "float64" and df["cost_usd"].dtype == "float64"
    # no error anywhere: None; one error among successes: still None beside the code, never NaN
    assert list(loop.trace["error_code"].unique()) == [None]
    codes = list(broken.trace["error_code"])
    assert codes == [None, "BACKEND_ERROR"] and codes[0] is None
    usage = asked.usage
    assert usage["estimated"].dtype == bool and usage["total_tokens"].dtype == "int64"
    empty = loop.usage  # no model ran: the columns keep their dtypes
    assert len(empty) == 0 and empty["cost_usd"].dtype == "float64"


@pytest.fixture
def shell():
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "owf_magics")
    ip.run_line_magic("config", "OWF.state = ':memory:'")
    yield ip
    ip.run_line_magic("unload_ext", "owf_magics")
    InteractiveShell.clear_instance()


def shown(ip, code):
    """What the front end receives for the cell's last line, displayed (capture_output captures
    displays; an Out value goes through the same formatter)."""
    *before, last = code.splitlines()
    with capture_output() as cap:
        result = ip.run_cell("\n".join([*before, "from IPython.display import display", f"display({last})"]))
    assert result.success, result.error_in_exec
    return cap.outputs[-1].data


def test_the_shell_shows_a_trace_truncated_head_and_tail_under_its_own_name(shell):
    with capture_output():
        shell.run_cell(f"%%workflow --run --quiet -o res\n{LOOP}")
    data = shown(shell, "res.trace")
    plain = data["text/plain"]
    assert "30 rows, showing the first 10 and the last 10; every row: print(res.trace.to_string())" in plain
    assert plain.startswith("run …\n")  # the run once (masked: deterministic under pytest)
    assert "run_id" not in plain.splitlines()[1]
    assert "<caption>run …</caption>" in data["text/html"]
    rows = [line.split()[0] for line in plain.splitlines()[2:-1]]
    assert rows[:3] == ["each", "each", "each"] and "…" in rows
    data = shown(shell, "t = res.trace[['step_id', 'status', 'iteration']]\nt")
    assert "every row: print(t.to_string())" in data["text/plain"]
    assert "29" in data["text/plain"] and "15 " not in data["text/plain"]
    data = shown(shell, "res.trace.copy()")  # not reachable by a name: a neutral wording
    assert "every row: print(frame.to_string())" in data["text/plain"]
    data = shown(shell, "import pandas as pd\npd.DataFrame({'x': range(100)})")  # not ours: as pandas shows it
    assert "every row" not in data["text/plain"] and "[100 rows x 1 columns]" in data["text/plain"]


def test_the_run_view_names_the_variable_it_is_bound_to(shell):
    with capture_output() as cap:
        shell.run_cell(f"%%workflow --run -o mine\n{LOOP}")
    plain = cap.outputs[-1].data["text/plain"]
    assert "every row: print(mine.trace.to_string())" in plain


def test_every_frame_the_project_returns_is_typed_the_same_way(tmp_path):
    ow = OpenWorkflow(state=str(tmp_path / "runs.db"))
    ow.load(FAILING)
    ow.load(LOOP)
    ow.load("""
name: score
inputs: {n: {type: integer}}
steps: [{id: s, type: transform, expression: "{{ inputs.n * 2 }}"}]
outputs: {score: {value: "{{ steps.s.output.result }}"}}
""")
    ow.workflow("loop").execute()
    ow.workflow("broken").execute()
    runs = ow.runs()
    assert type(runs) is pd.DataFrame and runs["error_code"].dtype == object
    assert list(runs["error_code"]) == [None, None]  # both completed (the failure is caught)
    assert runs["steps"].dtype == "int64" and runs["duration_ms"].dtype == "float64"
    batch = ow.map("score", [{"n": 1}, {"n": 2}, {"n": "x"}], progress=False)
    frame = batch.frame
    assert list(frame["error_code"]) == [None, None, "VALIDATION"]
    assert frame["tokens"].dtype == "int64" and frame["score"].dtype.kind in "if"  # an output keeps numbers
    for df in (frame, batch.trace, batch.usage, runs):
        pd.testing.assert_frame_equal(pickle.loads(pickle.dumps(df)), df)


def test_a_trace_read_in_a_shell_without_the_extension_still_displays_truncated():
    ip = InteractiveShell.instance()
    try:
        ip.user_ns["ow"] = OpenWorkflow(state=False)
        ip.user_ns["LOOP"] = LOOP
        data = shown(ip, "ow.load(LOOP)\nr = ow.workflow('loop').execute()\nr.trace")
        assert "every row: print(r.trace.to_string())" in data["text/plain"]
    finally:
        InteractiveShell.clear_instance()
