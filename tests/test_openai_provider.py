"""The OpenAI provider through langchain-core, against a local server speaking chat-completions."""

from __future__ import annotations

import json
import math

import pytest

from tests.local_http import JSONHandler, serve

pytest.importorskip("langchain_openai")

REQUESTS: list[dict] = []


def _completion(body: dict, turn: int) -> dict:
    usage = {"prompt_tokens": 11 + turn, "completion_tokens": 5 + turn, "total_tokens": 16 + 2 * turn}
    if body.get("tools") and not any(m["role"] == "tool" for m in body["messages"]):
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "calculator_add", "arguments": json.dumps({"a": 2, "b": 3})},
                }
            ],
        }
        finish = "tool_calls"
    else:
        message = {"role": "assistant", "content": "The answer is 5"}
        finish = "stop"
    return {
        "id": f"c{turn}",
        "object": "chat.completion",
        "created": 0,
        "model": body["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    }


class Handler(JSONHandler):
    def do_POST(self):
        body = self.read_json()
        REQUESTS.append(body)
        turn = len(REQUESTS) - 1
        full = _completion(body, turn)
        if body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            msg = full["choices"][0]["message"]
            delta = {"role": "assistant", "content": msg.get("content") or ""}
            if msg.get("tool_calls"):
                delta["tool_calls"] = [dict(msg["tool_calls"][0], index=0)]
            chunks = [
                {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
                {"choices": [{"index": 0, "delta": {}, "finish_reason": full["choices"][0]["finish_reason"]}]},
                {"choices": [], "usage": full["usage"]},
            ]
            for c in chunks:
                c.update({"id": full["id"], "object": "chat.completion.chunk", "created": 0, "model": body["model"]})
                self.wfile.write(f"data: {json.dumps(c)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            return
        self.send_json(full)


@pytest.fixture
def server():
    REQUESTS.clear()
    with serve(Handler) as base:
        yield f"{base}/v1"


@pytest.mark.parametrize("streaming", [False, True])
def test_openai_agent_with_tools_and_exact_usage(ow, server, streaming):
    ow.load("""
connector: {name: calculator, kind: sdk}
actions:
  - name: add
    input: {type: object, properties: {a: {type: number}, b: {type: number}}, required: [a, b]}
    handler: {function: owf_magics.demo_tools.calculator_add}
""")
    ow.load(f"""
agents:
  - name: gpt
    toolset: [calculator]
    model:
      provider: openai
      id: gpt-test
      providerConfig: {{base_url: "{server}", api_key: "sk-local-test", streaming: {str(streaming).lower()}, max_retries: 0}}
    personality: {{systemPrompt: You add numbers.}}
workflows:
  - name: ask
    steps: [{{id: q, type: agent, agent: gpt, input: "2 + 3?"}}]
""")
    r = ow.workflow("ask").execute()
    assert r.status == "completed", r.error
    assert r.steps["q"].output == "The answer is 5"
    assert r.usage["prompt_tokens"].tolist() == [11, 12] and r.usage["completion_tokens"].tolist() == [5, 6]
    assert not r.usage["estimated"].any()
    assert r.trace.iloc[0]["total_tokens"] == 34
    # gpt-test is in no price table: its cost is unknown (NaN), never a silent 0
    assert r.usage["cost_usd"].isna().all() and math.isnan(r.trace.iloc[0]["cost_usd"])
    first = REQUESTS[0]
    assert first["model"] == "gpt-test" and first["tools"][0]["function"]["name"] == "calculator_add"
    assert first["messages"][0] == {"role": "system", "content": "You add numbers."}
    tool_msg = next(m for m in REQUESTS[1]["messages"] if m["role"] == "tool")
    assert json.loads(tool_msg["content"]) == {"result": 5}
    assert bool(first.get("stream")) is streaming


def test_missing_key_is_unavailable(ow, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    ow.load("""
agents: [{name: gpt, model: {provider: openai, id: gpt-4o-mini}}]
workflows: [{name: w, steps: [{id: q, type: agent, agent: gpt, input: hi}]}]
""")
    r = ow.workflow("w").execute()
    assert r.steps["q"].error.code == "UNAVAILABLE" and "OPENAI_API_KEY" in r.steps["q"].error.details["suggestion"]


def test_buffer_memory_carries_earlier_exchanges(ow, server):
    ow.load(f"""
agents:
  - name: chat
    memory: {{type: buffer, maxMessages: 2}}
    model: {{provider: openai, id: gpt-test, providerConfig: {{base_url: "{server}", api_key: "sk-local", max_retries: 0}}}}
workflows:
  - name: talk
    steps:
      - {{id: one, type: agent, agent: chat, input: "first question"}}
      - {{id: two, type: agent, agent: chat, input: "second question", needs: [one]}}
      - {{id: three, type: agent, agent: chat, input: "third question", needs: [two]}}
""")
    r = ow.workflow("talk").execute()
    assert r.status == "completed", r.error
    contents = [[m["content"] for m in req["messages"]] for req in REQUESTS]
    assert contents[0] == ["first question"]
    assert contents[1] == ["first question", "The answer is 5", "second question"]
    # maxMessages: 2 keeps only the last exchange
    assert contents[2] == ["second question", "The answer is 5", "third question"]


def test_buffer_memory_survives_a_resume(ow, server):
    ow.load(f"""
connector: {{name: gate, kind: sdk, approval: {{required: always}}, actions: [{{name: open, handler: {{function: tests.handlers.echo}}}}]}}
---
agents:
  - name: chat
    memory: {{type: buffer}}
    model: {{provider: openai, id: gpt-test, providerConfig: {{base_url: "{server}", api_key: "sk-local", max_retries: 0}}}}
workflows:
  - name: talk
    steps:
      - {{id: one, type: agent, agent: chat, input: "first question"}}
      - {{id: gate, connector: gate, action: open, needs: [one]}}
      - {{id: two, type: agent, agent: chat, input: "second question", needs: [gate]}}
""")
    r = ow.workflow("talk").execute()
    assert r.status == "waiting_approval"
    REQUESTS.clear()
    done = ow.resume(r.run_id, approvals={r.pending[0].id: True})
    assert done.status == "completed", done.error
    # step one was served from its checkpoint, and its exchange is still in the agent's memory
    [request] = REQUESTS
    assert [m["content"] for m in request["messages"]] == ["first question", "The answer is 5", "second question"]


def test_prices_shipped_overridden_and_from_the_manifest(ow, server):
    from owf_magics import OpenWorkflow

    def run(registry, model_id, pricing=""):
        registry.load(f"""
agents:
  - name: gpt
    model: {{provider: openai, id: {model_id}, {pricing} providerConfig: {{base_url: "{server}", api_key: "k", max_retries: 0}}}}
workflows: [{{name: w, steps: [{{id: q, type: agent, agent: gpt, input: "hello"}}]}}]
""")
        REQUESTS.clear()
        return registry.workflow("w").execute()

    # the shipped table, with a dated id matched to its family (gpt-4o-mini: 0.15 in, 0.60 out per 1M)
    r = run(ow, "gpt-4o-mini-2024-07-18")
    tokens = r.usage.iloc[0]
    expected = (tokens["prompt_tokens"] * 0.15 + tokens["completion_tokens"] * 0.6) / 1_000_000
    assert r.usage["cost_usd"].iloc[0] == pytest.approx(expected) and expected > 0
    # OpenWorkflow(prices=...) overrides the table
    custom = OpenWorkflow(prices={"openai/my-finetune": {"input": 1000, "output": 2000}})
    r = run(custom, "my-finetune")
    tokens = r.usage.iloc[0]
    assert r.usage["cost_usd"].iloc[0] == pytest.approx(
        (tokens["prompt_tokens"] * 1000 + tokens["completion_tokens"] * 2000) / 1_000_000
    )
    # model.pricing in the manifest overrides both
    r = run(OpenWorkflow(), "gpt-4o", "pricing: {input: 0, output: 0},")
    assert r.usage["cost_usd"].iloc[0] == 0.0
