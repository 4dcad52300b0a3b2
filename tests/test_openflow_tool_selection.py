"""OpenFlow's ``tools.tool_selection`` on an LLM node with a real MCP server and a local
chat-completions server: ``auto`` offers every discovered tool and lets the model choose;
``manual`` offers only ``available_tools`` and requires a call (``tool_choice: required`` on the
first turn, then the model answers); a model that answers without the call fails the step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from owf_magics import OpenWorkflow
from owf_magics.errors import ManifestError
from tests import chat_server
from tests.local_http import serve

pytest.importorskip("langchain_openai")
pytest.importorskip("mcp")

BACKENDS = ["native", "langchain"]


@pytest.fixture(scope="module")
def mcp_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import os

    from tests.test_mcp_http import free_port, start_server

    os.environ.setdefault("COUNT_FILE", str(tmp_path_factory.mktemp("mcp") / "count.txt"))
    port = free_port()
    proc = start_server(port)
    try:
        yield f"http://127.0.0.1:{port}/none/mcp"
    finally:
        proc.terminate()
        proc.wait(10)


def flow(mcp: str, base: str, tools: dict[str, Any], provider: str = "openai") -> dict[str, Any]:
    config: dict[str, Any] = {
        "provider": provider,
        "model": "tool-model",
        "base_url": base,
        "api_key": "k",
        "max_retries": 0,
        "mcp_servers": [{"name": "calc", "url": mcp}],
        "tools": {"mcp_servers": ["calc"], **tools},
    }
    if provider == "scripted":
        config["responses"] = [{"content": '{"answer": "no tool"}'}]
    return {
        "name": "picker",
        "version": "1.0.0",
        "variables": [{"id": "answer", "type": "string", "default": ""}],
        "output": ["answer"],
        "nodes": [
            {
                "id": "solve",
                "type": "LLM",
                "name": "Solve",
                "config": config,
                "messages": [{"type": "text", "role": "user", "text": "What is 2 + 3?"}],
                "output": {"answer": {"type": "string", "description": "the result"}},
            },
            {
                "id": "keep",
                "type": "UPDATE_VARIABLE",
                "name": "Keep",
                "config": {"type": "update", "variable_id": "answer"},
                "value": "{{solve.answer}}",
            },
        ],
    }


def tool_names(body: dict[str, Any]) -> list[str]:
    return sorted(t["function"]["name"] for t in body.get("tools") or [])


@pytest.mark.parametrize("backend", BACKENDS)
def test_manual_offers_only_the_available_tools_and_requires_a_call(mcp_url: str, backend: str) -> None:
    chat_server.REQUESTS.clear()
    with serve(chat_server.ChatHandler) as base:
        ow = OpenWorkflow(state=":memory:")
        ow.load(flow(mcp_url, base, {"tool_selection": "manual", "available_tools": ["add"]}))
        res = ow.workflow("picker").execute(prefer_backend=backend)
        ow.close()  # its MCP sessions, before the servers go
    assert res.status == "completed", res.error
    assert res.outputs == {"answer": '{"total": 5}'}  # the MCP server's add ran on the model's call
    first, second = (r["body"] for r in chat_server.REQUESTS)
    assert tool_names(first) == ["calc_add"]
    assert first["tool_choice"] == "required"
    assert second.get("tool_choice") in (None, "auto")  # after the call, the model may answer
    assert [m["role"] for m in second["messages"]][-2:] == ["assistant", "tool"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_auto_offers_every_discovered_tool_and_lets_the_model_choose(mcp_url: str, backend: str) -> None:
    chat_server.REQUESTS.clear()

    class Answers(chat_server.ChatHandler):
        never_calls = True

    with serve(Answers) as base:
        ow = OpenWorkflow(state=":memory:")
        ow.load(flow(mcp_url, base, {"tool_selection": "auto", "filter": ["die", "slow"]}))
        res = ow.workflow("picker").execute(prefer_backend=backend)
        ow.close()  # its MCP sessions, before the servers go
    assert res.status == "completed", res.error
    assert res.outputs == {"answer": "plain"}  # answered without a tool: allowed under auto
    (req,) = chat_server.REQUESTS
    names = tool_names(req["body"])
    assert {"calc_add", "calc_echo", "calc_count"} <= set(names)
    assert "calc_die" not in names and "calc_slow" not in names
    assert req["body"].get("tool_choice") in (None, "auto")


@pytest.mark.parametrize("backend", BACKENDS)
def test_manual_fails_the_step_when_the_model_does_not_call_a_tool(mcp_url: str, backend: str) -> None:
    ow = OpenWorkflow(state=":memory:")
    ow.load(flow(mcp_url, "http://unused", {"tool_selection": "manual", "available_tools": ["add"]}, "scripted"))
    res = ow.workflow("picker").execute(prefer_backend=backend)
    ow.close()
    assert res.status == "failed"
    error = res.steps["solve"].error
    assert (error.code, error.details["tool_choice"], error.details["tools"]) == (
        "VALIDATION",
        "required",
        ["calc_add"],
    )


def test_tool_selection_is_checked_at_load(tmp_path: Path) -> None:
    bad = flow("http://127.0.0.1:1/mcp", "http://unused", {"tool_selection": "sometimes"})
    manual = flow("http://127.0.0.1:1/mcp", "http://unused", {"tool_selection": "manual"})
    codes = []
    for f in (bad, manual):
        with pytest.raises(ManifestError) as err:
            OpenWorkflow(state=":memory:").load(f)
        codes.append([d.code for d in err.value.diagnostics])
    assert codes == [["INVALID_VALUE"], ["MISSING_REQUIRED_FIELD"]]
