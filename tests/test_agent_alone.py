"""`ow.load_agent(ref).execute(...)`: one agent on its own, the same answer on every backend."""

from __future__ import annotations

import pytest

from owf_magics import OpenWorkflow
from owf_magics.errors import OWFError
from tests.agent_fixtures import MATH


def _ow() -> OpenWorkflow:
    ow = OpenWorkflow(state=":memory:")
    ow.load(MATH)
    return ow


def test_native_and_langchain_give_the_same_answer_usage_and_messages() -> None:
    ow = _ow()
    agent = ow.load_agent("agent:t/mathbot@1.0.0")
    results = {b: agent.execute("What is 2 + 3?", backend=b) for b in ("native", "langchain")}
    for backend, res in results.items():
        assert res.status == "completed", (backend, res.error)
        assert res["output"] == res.output == "The sum is 5"
        usage = res.usage
        assert list(usage["prompt_tokens"]) == [30, 55] and list(usage["completion_tokens"]) == [12, 6]
        assert not usage["estimated"].any()
        assert res.trace.iloc[0]["backend"] == backend
    native, langchain = results["native"].messages, results["langchain"].messages
    assert native == langchain
    assert native[0] == {"role": "system", "content": "You add numbers with the tool."}
    assert native[1] == {"role": "user", "content": "What is 2 + 3?"}
    assert native[2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"name": "calculator_add", "args": {"a": 2, "b": 3}}],
    }
    assert native[3] == {"role": "tool", "name": "calculator_add", "content": {"result": 5}}
    assert native[4] == {"role": "assistant", "content": "The sum is 5"}
    # the agent's one-step workflow is not registered as a workflow of the registry
    assert ow.workflows() == []


def test_by_name_structured_output_and_unknown_agent() -> None:
    ow = OpenWorkflow(state=":memory:")
    ow.load(
        """
type: agent
name: planner
model:
  provider: scripted
  responses: [{content: '{"plan": ["a", "b"], "done": true}'}]
guardrails: {output: {format: json}}
"""
    )
    res = ow.load_agent("planner").execute({"goal": "x"})
    assert res["plan"] == ["a", "b"] and res["done"] is True and res["output"] == {"plan": ["a", "b"], "done": True}
    assert set(res) == {"plan", "done", "output"}
    with pytest.raises(OWFError) as err:
        ow.load_agent("nobody")
    assert err.value.code == "VALIDATION" and err.value.details["known"] == ["planner"]


def test_a_failing_agent_reports_its_error() -> None:
    ow = OpenWorkflow(state=":memory:")
    ow.load(
        "type: agent\nname: loud\nmodel: {provider: scripted, responses: [{content: too long}]}\n"
        "guardrails: {output: {maxLength: 3}}\n"
    )
    res = ow.load_agent("loud").execute("hi")
    assert res.status == "failed" and res.error is not None and res.error.code == "VALIDATION"


def test_aexecute() -> None:
    import asyncio

    res = asyncio.run(_ow().load_agent("mathbot").aexecute("2+3", backend="native"))
    assert res.output == "The sum is 5"
