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


def test_cli_agent_run_prints_the_same_answer(tmp_path, capsys) -> None:
    import json

    from owf_magics.cli import main

    (tmp_path / "math.yaml").write_text(MATH)
    outputs = {}
    for backend in ("native", "langchain"):
        code = main(
            [
                "agent",
                "run",
                "agent:t/mathbot@1.0.0",
                str(tmp_path),
                "--backend",
                backend,
                "--input",
                "q=2+3",
                "--json",
                "--state",
                ":memory:",
            ]
        )
        out = json.loads(capsys.readouterr().out)
        assert code == 0 and out["ok"] is True
        outputs[backend] = out
        assert out["usage"] == {
            "prompt_tokens": 85,
            "completion_tokens": 18,
            "cost_usd": outputs[backend]["usage"]["cost_usd"],
        }
    assert outputs["native"]["output"] == outputs["langchain"]["output"] == "The sum is 5"
    assert outputs["native"]["messages"][2]["tool_calls"] == [{"name": "calculator_add", "args": {"a": 2, "b": 3}}]
    assert main(["agent", "run", "nobody", str(tmp_path), "--json", "--state", ":memory:"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "VALIDATION"


def test_execute_agent_conformance_helper() -> None:
    from owf_magics.testing import execute_agent

    native = execute_agent(MATH, backend="native", input="2+3")
    langchain = execute_agent(MATH, backend="langchain", input="2+3")
    assert native.output == langchain.output == "The sum is 5"
    assert list(native.usage["total_tokens"]) == list(langchain.usage["total_tokens"]) == [42, 61]


def test_validate_check_backends(tmp_path, capsys) -> None:
    from owf_magics.cli import main

    odd = tmp_path / "odd.yaml"
    odd.write_text("type: agent\nname: odd\nexecution: {backend: custom}\nmodel: {provider: echo}\n")
    plain = tmp_path / "plain.yaml"
    plain.write_text("type: agent\nname: plain\nmodel: {provider: echo}\n")
    old = tmp_path / "old.yaml"
    old.write_text(
        "type: agent\nname: old\nexecution: {backend: langchain, runtime: python, compatibility: {langgraph: '<0.0.1'}}\n"
        "model: {provider: echo}\n"
    )
    assert main(["validate", str(odd)]) == 0  # a known name: loading accepts it
    capsys.readouterr()
    assert main(["validate", str(odd), "--check-backends"]) == 1
    out = capsys.readouterr().out
    assert "BACKEND_UNAVAILABLE" in out and "'custom'" in out and "agent:local/odd@1.0.0" in out
    assert main(["validate", str(plain), "--check-backends"]) == 0
    capsys.readouterr()
    assert main(["validate", str(old), "--check-backends"]) == 1
    assert "VERSION_MISMATCH" in capsys.readouterr().out


def test_sessions_without_a_run_store_last_as_long_as_the_registry() -> None:
    ow = OpenWorkflow(state=False)
    ow.load("type: agent\nname: parrot\nmodel: {provider: echo}\n")
    parrot = ow.load_agent("parrot")
    first = parrot.execute("one", session="s")
    second = parrot.execute("two", session="s")
    assert first.output == "one" and second.output == "two"
    assert [m["content"] for m in second.messages] == ["one", "one", "two", "two"]
    assert [m["content"] for m in parrot.history("s")] == ["one", "one", "two", "two"]
    assert parrot.execute("x", session="other").messages[0]["content"] == "x"
