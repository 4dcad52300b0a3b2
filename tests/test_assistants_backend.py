"""The assistants backend on the OpenAI Agents SDK, against the local chat-completions server."""

from __future__ import annotations

import json

import pytest

from tests.flows import CALCULATOR
from tests.local_http import serve
from tests.test_openai_provider import REQUESTS, Handler

pytest.importorskip("agents")

CALC = CALCULATOR


def test_agent_with_tools_and_exact_usage_on_the_agents_sdk(ow):
    REQUESTS.clear()
    ow.load(CALC)
    with serve(Handler) as base:
        ow.load(f"""
agents:
  - name: gpt
    toolset: [calculator]
    personality: {{systemPrompt: You add numbers.}}
    execution: {{backend: assistants}}
    model: {{provider: openai, id: gpt-4o-mini, providerConfig: {{base_url: "{base}/v1", api_key: sk-test}}}}
workflows:
  - name: hosted
    steps: [{{id: q, type: agent, agent: gpt, input: "2 + 3?"}}]
    outputs: {{answer: {{value: "{{{{ steps.q.output }}}}"}}}}
""")
        r = ow.workflow("hosted").execute()
    assert r.status == "completed", r.error
    assert r.outputs == {"answer": "The answer is 5"}
    assert r.usage[["prompt_tokens", "completion_tokens"]].values.tolist() == [[11, 5], [12, 6]]
    assert r.trace.backend.tolist() == ["assistants"] and r.trace.total_tokens.tolist() == [34]
    [event] = [e for e in r.events if e["type"] == "step.execution.completed"]
    assert event["execution"]["backend"] == "assistants"
    assert event["execution"]["token_usage"] == {"prompt_tokens": 23, "completion_tokens": 11, "total_tokens": 34}
    assert REQUESTS[0]["messages"][0] == {"role": "system", "content": "You add numbers."}
    assert REQUESTS[0]["tools"][0]["function"]["name"] == "calculator_add"
    tool_msg = REQUESTS[1]["messages"][-1]
    assert tool_msg["role"] == "tool" and json.loads(tool_msg["content"]) == {"result": 5}
    info = ow.backend_registry.info("assistants")
    assert info.installed and "openai-agents" in info.frameworks


def test_a_required_tool_choice_reaches_the_agents_sdk_and_is_reset_after_the_call(ow):
    REQUESTS.clear()
    ow.load(CALC)
    with serve(Handler) as base:
        ow.load(f"""
agents:
  - name: forced
    toolset: [calculator]
    execution: {{backend: assistants}}
    model: {{provider: openai, id: m, params: {{tool_choice: required}},
             providerConfig: {{base_url: "{base}/v1", api_key: sk-test}}}}
workflows:
  - name: hosted
    steps: [{{id: q, type: agent, agent: forced, input: "2 + 3?"}}]
""")
        r = ow.workflow("hosted").execute()
    assert r.status == "completed", r.error
    assert REQUESTS[0]["tool_choice"] == "required"
    assert REQUESTS[1].get("tool_choice") in (None, "auto")


def test_offline_providers_are_unavailable_on_assistants(ow):
    ow.load("""
agents: [{name: parrot, model: {provider: echo}, execution: {backend: assistants}}]
workflows: [{name: w, steps: [{id: a, type: agent, agent: parrot, input: hi}]}]
""")
    err = ow.workflow("w").execute().steps["a"].error
    assert err.code == "UNAVAILABLE" and "OpenAI models" in err.message


def test_without_the_package_the_backend_is_unavailable_with_the_install_hint(ow, monkeypatch):
    from owf_magics.errors import UnavailableError
    from owf_magics.runtime import registry

    real = registry._missing
    monkeypatch.setattr(registry, "_missing", lambda mods: ("openai-agents",) if "agents" in mods else real(mods))
    ow.load("""
agents: [{name: parrot, model: {provider: echo}, execution: {backend: assistants}}]
workflows: [{name: w, steps: [{id: a, type: agent, agent: parrot, input: hi}]}]
""")
    with pytest.raises(UnavailableError) as err:
        ow.workflow("w").execute()
    assert err.value.details["suggestion"] == "Install what is missing: openai-agents"
    info = ow.backend_registry.info("assistants")
    assert not info.installed and info.install_hint == "pip install 'owf-magics[assistants]'"


@pytest.mark.parametrize("name", ["langchain", "langgraph", "assistants"])
def test_owf_backend_test_passes_for_the_adapters(name, capsys):
    from owf_magics.cli import main

    assert main(["backend", "test", name]) == 0
    out = capsys.readouterr().out
    assert "echo action returned {'ping': 1}" in out and ": ok" in out
