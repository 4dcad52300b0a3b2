"""OpenFlow flows (formats/openflow): the SDK's example flows, rewritten as our own test data in
tests/openflow/, load by their shape and run on the native and langchain backends with the outputs
the protocol implies; `owf convert` output runs to the same outputs; inputs are checked first."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from owf_magics import ManifestError, OpenWorkflow
from owf_magics.errors import OWFError
from owf_magics.formats import detect_format
from owf_magics.formats.convert import convert_file

FLOWS = Path(__file__).parent / "openflow"
BACKENDS = ["native", "langchain"]

CASES: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    ("conditional.json", "conditional_logic", {"score": 90}, {"grade": "A", "route": "high"}),
    ("conditional.json", "conditional_logic", {"score": 60}, {"grade": "B", "route": "middle"}),
    ("conditional.json", "conditional_logic", {"score": 10}, {"grade": "C", "route": "default"}),
    ("foreach_join.json", "foreach_join", {}, {"joined": "hello ada #0, hello alan #1, hello grace #2", "count": 3}),
    ("foreach_join.json", "foreach_join", {"names": ["x"], "greeting": "hi"}, {"joined": "hi x #0", "count": 1}),
    ("llm_two_node.json", "llm_two_node", {"topic": "owls"}, {"answer": "Explain: short"}),
    ("flow_call.json", "flow_call", {"numbers": [3, 4, 5]}, {"values": ["33", "44", "55"], "first": ["33"]}),
]


def load(ow: OpenWorkflow, name: str) -> None:
    if name == "flow_call.json":
        ow.load(str(FLOWS / "child_flow.json"))
    ow.load(str(FLOWS / name))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("file", "flow", "inputs", "expected"), CASES, ids=[f"{c[1]}-{i}" for i, c in enumerate(CASES)]
)
def test_example_flows_give_the_protocols_outputs(
    backend: str, file: str, flow: str, inputs: dict[str, Any], expected: dict[str, Any]
) -> None:
    ow = OpenWorkflow(state=":memory:")
    load(ow, file)
    res = ow.workflow(flow).execute(inputs=inputs, prefer_backend=backend)
    assert res.status == "completed", res.error
    assert res.outputs == expected


@pytest.mark.parametrize(
    ("file", "flow", "inputs", "expected"), CASES, ids=[f"{c[1]}-{i}" for i, c in enumerate(CASES)]
)
def test_convert_round_trip_gives_equal_outputs(
    tmp_path: Path, file: str, flow: str, inputs: dict[str, Any], expected: dict[str, Any]
) -> None:
    ow = OpenWorkflow(state=":memory:")
    if file == "flow_call.json":
        ow.load(convert_file(FLOWS / "child_flow.json"))
    text = convert_file(FLOWS / file)
    assert text.startswith("# converted from openflow")
    ow.load(text)
    assert ow.workflow(flow).execute(inputs=inputs).outputs == expected


def test_owf_convert_command_prints_loadable_yaml() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "owf_magics.cli", "convert", str(FLOWS / "conditional.json"), "--to", "openworkflow"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    ow = OpenWorkflow(state=":memory:")
    ow.load(out.stdout)
    assert ow.workflow("conditional_logic").execute(inputs={"score": 80}).outputs == {"grade": "A", "route": "high"}


def test_the_consumer_declared_first_runs_after_its_producer_and_usage_is_per_node() -> None:
    ow = OpenWorkflow(state=":memory:")
    ow.load(str(FLOWS / "llm_two_node.json"))
    wf = ow.workflow("llm_two_node")
    edges = {(e.source, e.target) for e in wf.graph.edges}
    assert ("summarize__out", "explain") in edges
    res = wf.execute(inputs={"topic": "owls"})
    assert list(res.steps).index("summarize") < list(res.steps).index("explain")
    rows = {r["step_id"]: r for r in res.usage.to_dict("records")}
    assert (rows["summarize"]["prompt_tokens"], rows["summarize"]["completion_tokens"]) == (11, 7)
    assert rows["summarize"]["provider"] == "scripted" and rows["explain"]["provider"] == "echo"
    assert res.steps["summarize__out"].output == {"summary": "short", "words": 1}


def test_detect_by_shape_json_or_yaml() -> None:
    assert detect_format({"nodes": [], "variables": []}) is not None
    assert detect_format({"nodes": [], "output": []}) is not None
    assert detect_format({"nodes": []}) is None
    ow = OpenWorkflow(state=":memory:")
    yaml_flow = """
name: tiny
version: 1.0.0
description: d
author: a
variables: [{id: x, type: number, default: 2}, {id: y, type: number, default: 0}]
input: [x]
output: [y]
nodes:
  - {id: set, type: UPDATE_VARIABLE, name: s, config: {type: update, variable_id: y}, value: "{{@x}}"}
"""
    ow.load(yaml_flow)
    assert ow.workflow("tiny").execute(inputs={"x": 5}).outputs == {"y": 5}
    assert ow.workflow("tiny").execute().outputs == {"y": 2}


@pytest.mark.parametrize(
    ("flow", "inputs", "words"),
    [
        ("conditional_logic", {"score": 101}, "at most 100"),
        ("conditional_logic", {}, "'score' is required"),
        ("conditional_logic", {"score": "high"}, "must be number"),
        ("foreach_join", {"greeting": "yo"}, "must be one of"),
        ("llm_two_node", {"topic": "a"}, "at least 2 characters"),
    ],
)
def test_inputs_are_checked_against_the_variable_rules_before_anything_runs(
    flow: str, inputs: dict[str, Any], words: str
) -> None:
    ow = OpenWorkflow(state=":memory:")
    for f in ("conditional.json", "foreach_join.json", "llm_two_node.json"):
        ow.load(str(FLOWS / f))
    with pytest.raises(OWFError) as err:
        ow.workflow(flow).execute(inputs=inputs)
    assert err.value.code == "VALIDATION"
    assert words in str(err.value)


def test_a_flows_diagnostics_point_at_the_flow_files_lines(tmp_path: Path) -> None:
    flow = json.loads((FLOWS / "foreach_join.json").read_text())
    flow["nodes"][1]["value"] = "{{nowhere.items}}"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(flow, indent=2))
    with pytest.raises(ManifestError) as err:
        OpenWorkflow(state=":memory:").load(str(path))
    (d,) = err.value.diagnostics
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if '"id": "counted"' in text)
    assert (d.code, d.file, d.step_id) == ("MISSING_DEPENDENCY", str(path), "counted")
    assert line - 1 <= d.line <= line


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_llm_node_with_an_mcp_server_calls_its_tools(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_mcp_http import free_port, start_server

    count = tmp_path / "count.txt"
    monkeypatch.setenv("COUNT_FILE", str(count))
    port = free_port()
    proc = start_server(port)
    try:
        path = tmp_path / "mcp_tools.json"
        path.write_text((FLOWS / "mcp_tools.json").read_text().replace("__PORT__", str(port)))
        ow = OpenWorkflow(state=":memory:")
        ow.load(str(path))
        res = ow.workflow("mcp_tools").execute(prefer_backend=backend)
        assert res.status == "completed", res.error
        assert res.outputs == {"answer": "5"}
        assert count.read_text() == "solved\n"  # the server ran the model's tool call, once
        again = OpenWorkflow(state=":memory:")
        again.load(convert_file(path))
        assert again.workflow("mcp_tools").execute(prefer_backend=backend).outputs == res.outputs
        again.close()
        rows = [r for r in res.usage.to_dict("records") if r["step_id"] == "solve"]
        assert (sum(r["prompt_tokens"] for r in rows), sum(r["completion_tokens"] for r in rows)) == (50, 8)
        ow.close()
    finally:
        proc.terminate()
        proc.wait(10)


def test_delay_between_waits_between_iterations_not_after_the_last() -> None:
    ow = OpenWorkflow(state=":memory:")
    ow.load(str(FLOWS / "foreach_join.json"))
    res = ow.workflow("foreach_join").execute()
    rows = [r for r in res.trace.to_dict("records") if r["step_id"].endswith("each_name__delay")]
    assert [r["status"] for r in rows] == ["success", "success", "skipped"]
    assert all(r["duration_ms"] >= 15 for r in rows[:2])  # 20 ms asked (a lower bound, not a timing)
