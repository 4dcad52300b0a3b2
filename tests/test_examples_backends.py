"""Every file in examples/backends/ validates (backends checked) and runs on the offline providers."""

from __future__ import annotations

from pathlib import Path

import pytest

from owf_magics import OpenWorkflow
from owf_magics.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "backends"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_validates_with_backends_checked(path: Path, capsys) -> None:
    assert main(["validate", "--check-backends", str(path)]) == 0, capsys.readouterr().out


def test_native_and_langchain_agents_answer_alike() -> None:
    ow = OpenWorkflow(state=":memory:")
    ow.load_many([EXAMPLES / "native-agent.yaml", EXAMPLES / "langchain-agent.yaml"])
    native = ow.load_agent("adder").execute("What is 2 + 3?")
    langchain = ow.load_agent("lc-adder").execute("What is 2 + 3?")
    assert native.trace.iloc[0]["backend"] == "native" and langchain.trace.iloc[0]["backend"] == "langchain"
    assert native.output == langchain.output == "2 + 3 = 5"
    assert list(native.usage["total_tokens"]) == list(langchain.usage["total_tokens"]) == [42, 61]
    assert native.messages[2:] == langchain.messages[2:]


def test_mixed_workflow() -> None:
    ow = OpenWorkflow(state=":memory:")
    ow.load(EXAMPLES / "mixed-workflow.yaml")
    res = ow.workflow("mixed-backends").execute()
    assert res.outputs == {"report": "Tides follow the moon. (Approved.)"}
    assert dict(zip(res.trace["step_id"], res.trace["backend"], strict=True)) == {
        "draft": "native",
        "review": "langchain",
        "report": "native",
    }


def test_connector_with_capabilities() -> None:
    ow = OpenWorkflow(state=":memory:")
    ow.load(EXAMPLES / "connector-capabilities.yaml")
    seen: list[dict] = []
    res = ow.workflow("weather-report").execute(callback=seen.append)
    assert res.outputs == {"location": "Oslo", "answer": "Oslo: see the tool's report."}
    called = next(e for e in seen if e["type"] == "agent.tool.called")
    assert called["tool"] == "weather_current" and called["arguments"] == {"location": "Oslo"}
