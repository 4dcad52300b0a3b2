"""An OpenFlow LLM node against a local chat-completions server on 127.0.0.1: the node's messages
and model reach the server, the reply is parsed as the node's output schema, usage is exact."""

from __future__ import annotations

import json
from typing import Any

import pytest

from owf_magics import OpenWorkflow
from tests.local_http import JSONHandler, serve

pytest.importorskip("langchain_openai")

REQUESTS: list[dict[str, Any]] = []


class Handler(JSONHandler):
    def do_POST(self) -> None:
        body = self.read_json()
        REQUESTS.append(body)
        content = json.dumps({"title": "Owls", "score": 7})
        self.send_json(
            {
                "id": "c1",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 23, "completion_tokens": 9, "total_tokens": 32},
            }
        )


def flow(base: str) -> dict[str, Any]:
    return {
        "name": "titler",
        "version": "1.0.0",
        "description": "titles a text",
        "author": "tests",
        "variables": [{"id": "text", "type": "string"}, {"id": "title", "type": "string", "default": ""}],
        "input": ["text"],
        "output": ["title"],
        "nodes": [
            {
                "id": "name_it",
                "type": "LLM",
                "name": "Title",
                "config": {
                    "provider": "openai",
                    "model": "gpt-test",
                    "max_tokens": 50,
                    "temperature": 0.2,
                    "base_url": base,
                    "api_key": "sk-local-test",
                    "max_retries": 0,
                },
                "messages": [
                    {"type": "text", "role": "system", "text": "You write titles."},
                    {"type": "text", "role": "user", "text": "Title this: {{@text}}"},
                ],
                "output": {
                    "title": {"type": "string", "description": "the title"},
                    "score": {"type": "number", "description": "how good"},
                },
            },
            {
                "id": "keep",
                "type": "UPDATE_VARIABLE",
                "name": "Keep",
                "config": {"type": "update", "variable_id": "title"},
                "value": "{{name_it.title}} ({{name_it.score}})",
            },
        ],
    }


@pytest.mark.parametrize("backend", ["native", "langchain"])
def test_llm_node_against_a_local_server_with_exact_usage(backend: str) -> None:
    REQUESTS.clear()
    with serve(Handler) as base:
        ow = OpenWorkflow(state=":memory:")
        ow.load(flow(f"{base}/v1"))
        res = ow.workflow("titler").execute(inputs={"text": "night birds"}, prefer_backend=backend)
    assert res.status == "completed", res.error
    assert res.outputs == {"title": "Owls (7)"}
    (row,) = res.usage.to_dict("records")
    assert (row["step_id"], row["prompt_tokens"], row["completion_tokens"], bool(row["estimated"])) == (
        "name_it",
        23,
        9,
        False,
    )
    (req,) = REQUESTS
    limit = req.get("max_completion_tokens", req.get("max_tokens"))  # the client library picks the name
    assert (req["model"], limit, req["temperature"]) == ("gpt-test", 50, 0.2)
    assert req["messages"][0] == {"role": "system", "content": "You write titles."}
    assert req["messages"][-1]["content"] == "Title this: night birds"
