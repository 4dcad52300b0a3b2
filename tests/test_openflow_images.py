"""An LLM node's image messages reach the model as image content parts (the OpenAI chat format):
a local chat-completions server on 127.0.0.1 sees them, the offline echo model returns them."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from owf_magics import OpenWorkflow
from owf_magics.agents.content import is_content_parts, message_content
from tests.local_http import JSONHandler, serve

REQUESTS: list[dict[str, Any]] = []
PNG = b"\x89PNG\r\n\x1a\n fake pixels"


class Handler(JSONHandler):
    def do_POST(self) -> None:
        body = self.read_json()
        REQUESTS.append(body)
        self.send_json(
            {
                "id": "c1",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "a cat"}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 812, "completion_tokens": 3, "total_tokens": 815},
            }
        )


def flow(config: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "look",
        "version": "1.0.0",
        "variables": [{"id": "pic", "type": "string"}, {"id": "what", "type": "string", "default": ""}],
        "input": ["pic"],
        "output": ["what"],
        "nodes": [
            {
                "id": "see",
                "type": "LLM",
                "config": config,
                "messages": [
                    {"type": "text", "role": "system", "text": "You describe pictures."},
                    {"type": "text", "role": "user", "text": "What is in {{@pic}}?"},
                    {"type": "image", "role": "user", "image_path": "{{@pic}}"},
                    {"type": "image", "role": "user", "text": "Compare:", "image_url": "https://example.org/dog.jpg"},
                    {"type": "image", "role": "user", "image_data": base64.b64encode(b"raw").decode()},
                ],
                "output": {"text": {"type": "string"}},
            },
            {
                "id": "keep",
                "type": "UPDATE_VARIABLE",
                "config": {"type": "update", "variable_id": "what"},
                "value": "{{see.text}}",
            },
        ],
    }


def expected_parts() -> list[dict[str, Any]]:
    image = f"data:image/png;base64,{base64.b64encode(PNG).decode()}"
    raw = f"data:image/png;base64,{base64.b64encode(b'raw').decode()}"
    return [
        {"type": "text", "text": "What is in cat.png?"},
        {"type": "image_url", "image_url": {"url": image, "detail": "high"}},
        {"type": "text", "text": "Compare:"},
        {"type": "image_url", "image_url": {"url": "https://example.org/dog.jpg", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": raw, "detail": "high"}},
    ]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "cat.png").write_bytes(PNG)
    return tmp_path


@pytest.mark.parametrize("backend", ["native", "langchain"])
def test_image_parts_reach_a_chat_completions_server_with_exact_usage(root: Path, backend: str) -> None:
    pytest.importorskip("langchain_openai")
    REQUESTS.clear()
    with serve(Handler) as base:
        config = {"provider": "openai", "model": "gpt-vision", "base_url": f"{base}/v1", "api_key": "sk-local"}
        ow = OpenWorkflow(state=":memory:", files_root=root)
        ow.load(flow(config | {"max_retries": 0}))
        res = ow.workflow("look").execute(inputs={"pic": "cat.png"}, prefer_backend=backend)
    assert res.status == "completed", res.error
    assert res.outputs == {"what": "a cat"}
    (req,) = REQUESTS
    assert req["messages"][0] == {"role": "system", "content": "You describe pictures."}
    assert req["messages"][-1] == {"role": "user", "content": expected_parts()}
    (row,) = res.usage.to_dict("records")
    assert (row["prompt_tokens"], row["completion_tokens"], bool(row["estimated"])) == (812, 3, False)


@pytest.mark.parametrize("backend", ["native", "langchain"])
def test_the_offline_echo_model_receives_the_parts(root: Path, backend: str) -> None:
    ow = OpenWorkflow(state=":memory:", files_root=root)
    ow.load(flow({"provider": "echo", "model": "echo-1"}))
    res = ow.workflow("look").execute(inputs={"pic": "cat.png"}, prefer_backend=backend)
    assert res.status == "completed", res.error
    assert res.steps["see"].output == expected_parts()


def test_an_image_path_outside_the_files_root_fails_the_node(
    root: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "secret.png"
    elsewhere.write_bytes(PNG)
    ow = OpenWorkflow(state=":memory:", files_root=root)
    ow.load(flow({"provider": "echo", "model": "echo-1"}))
    for pic in (str(elsewhere), "../" + elsewhere.parent.name + "/secret.png", "missing.png"):
        res = ow.workflow("look").execute(inputs={"pic": pic})
        assert res.status == "failed" and res.steps["see__parts"].status == "failed", pic
        assert res.steps["see"].status != "success"


def test_content_parts_are_recognised_and_anything_else_is_text() -> None:
    parts = [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]
    assert is_content_parts(parts) and message_content(parts) == parts
    assert message_content("plain") == "plain"
    for other in ([], [{"type": "text"}], [{"type": "image_url", "image_url": "x"}], [{"a": 1}], {"type": "text"}):
        assert not is_content_parts(other)
        assert isinstance(message_content(other), str)
    assert json.loads(message_content({"b": 1, "a": 2})) == {"a": 2, "b": 1}
