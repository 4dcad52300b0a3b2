"""docs/migrating.md: every Python block and its manifest give the same output."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from owf_magics import OpenWorkflow

DOC = Path(__file__).resolve().parent.parent / "docs" / "migrating.md"
BLOCK = re.compile(r"```(python|yaml)\n# ([\w-]+)\n(.*?)```", re.S)


def _blocks() -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for lang, name, body in BLOCK.findall(DOC.read_text()):
        out.setdefault(name, {})[lang] = body
    return out


def test_the_page_has_both_sides_of_each_example() -> None:
    assert {k: sorted(v) for k, v in _blocks().items()} == {
        "langchain-agent": ["python", "yaml"],
        "langgraph-graph": ["python", "yaml"],
    }


def _python(name: str) -> object:
    scope: dict[str, object] = {"__name__": f"migrating_{name.replace('-', '_')}"}
    exec(compile(_blocks()[name]["python"], f"{DOC}:{name}", "exec"), scope)
    return scope["OUTPUT"]


@pytest.mark.parametrize("backend", ["native", "langchain"])
def test_langchain_agent_and_its_manifest(backend: str) -> None:
    expected = _python("langchain-agent")
    ow = OpenWorkflow(state=":memory:")
    ow.load(_blocks()["langchain-agent"]["yaml"])
    res = ow.load_agent("adder").execute("What is 2 + 3?", backend=backend)
    assert res.output == expected == "The sum is 5"
    assert res.messages[2]["tool_calls"] == [{"name": "calculator_add", "args": {"a": 2, "b": 3}}]


def test_langgraph_graph_and_its_manifest() -> None:
    expected = _python("langgraph-graph")
    ow = OpenWorkflow(state=":memory:")
    ow.load(_blocks()["langgraph-graph"]["yaml"])
    res = ow.workflow("clean-and-count").execute({"text": "  The Quick Brown Fox  "})
    assert res.outputs == expected == {"clean": "the quick brown fox", "words": 4}
