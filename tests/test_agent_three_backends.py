"""One OpenAI-compatible agent with a tool, alone, on native, langchain and assistants (the OpenAI
Agents SDK), against a local chat-completions server: the same answer, usage, messages and events."""

from __future__ import annotations

import pytest

from owf_magics import OpenWorkflow
from tests.flows import CALCULATOR
from tests.local_http import serve
from tests.test_openai_provider import REQUESTS, Handler

pytest.importorskip("agents")


def test_same_answer_usage_messages_and_events_on_every_backend() -> None:
    results = {}
    for backend in ("native", "langchain", "assistants"):
        REQUESTS.clear()
        ow = OpenWorkflow(state=":memory:")
        ow.load(CALCULATOR)
        with serve(Handler) as base:
            ow.load(
                f"""
type: agent
name: gpt
toolset: [calculator]
personality: {{systemPrompt: You add numbers.}}
model: {{provider: openai, id: gpt-4o-mini, providerConfig: {{base_url: "{base}/v1", api_key: sk-test, max_retries: 0}}}}
"""
            )
            seen: list[dict] = []
            res = ow.load_agent("gpt").execute("2 + 3?", backend=backend, callback=seen.append)
        assert res.status == "completed", (backend, res.error)
        results[backend] = (res, [e for e in seen if e["type"].startswith("agent.")])
    for backend, (res, events) in results.items():
        assert res.output == "The answer is 5", backend
        assert res.usage[["prompt_tokens", "completion_tokens"]].values.tolist() == [[11, 5], [12, 6]], backend
        assert [e["type"] for e in events] == [
            "agent.turn.started",
            "agent.turn.completed",
            "agent.tool.called",
            "agent.tool.completed",
            "agent.turn.started",
            "agent.turn.completed",
        ], backend
        called = events[2]
        assert called["tool"] == "calculator_add" and called["arguments"] == {"a": 2, "b": 3}
        assert events[3]["result"] == {"result": 5}
    messages = [r.messages for r, _ in results.values()]
    assert messages[0] == messages[1] == messages[2]
