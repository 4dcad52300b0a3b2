"""Workflow-runner requests run against a local chat-completions server on 127.0.0.1, scripted
per agent (by its instructions) to call the agent tool, then hand off."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from owf_magics import OpenWorkflow
from owf_magics.agents.guardrail_presets import REGISTRY, register_guardrail
from tests.local_http import JSONHandler, serve

pytest.importorskip("langchain_openai")

EXAMPLES = Path(__file__).parent.parent / "examples" / "runner"
REQUESTS: list[dict[str, Any]] = []
USAGE = {"supervisor": (100, 10), "researcher": (20, 2), "writer": (30, 3), "assistant": (7, 4)}
WRITER_TEXT = {"value": "Reusable boosters now land routinely, cutting launch costs."}


def web_search(data: dict[str, Any]) -> dict[str, Any]:
    return {"results": [f"Starship caught by the tower ({data.get('query')})"]}


def agent_of(body: dict[str, Any]) -> str:
    system = body["messages"][0]["content"] if body["messages"][0]["role"] == "system" else ""
    for name, word in (("supervisor", "orchestrate"), ("researcher", "research specialist"), ("writer", "craft")):
        if word in system:
            return name
    return "assistant"


def call(name: str, args: dict[str, Any]) -> dict[str, Any]:
    fn = {"name": name, "arguments": json.dumps(args)}
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": f"call_{name}", "type": "function", "function": fn}],
    }


def reply(body: dict[str, Any]) -> dict[str, Any]:
    agent = agent_of(body)
    tools_done = [m.get("tool_call_id", "")[5:] for m in body["messages"] if m["role"] == "tool"]
    user = [m["content"] for m in body["messages"] if m["role"] == "user"]
    if agent == "supervisor" and "research_insights" not in tools_done:
        return call("research_insights", {"input": "reusable rockets 2026"})
    if agent == "supervisor":
        return call("transfer_to_writer", {})
    if agent == "researcher" and "web_search" not in tools_done:
        return call("web_search", {"query": "reusable rockets"})
    if agent == "researcher":
        return {"role": "assistant", "content": "- Starship caught by the tower"}
    if agent == "writer":
        text = WRITER_TEXT["value"]
        return {"role": "assistant", "content": text}
    offered = [t["function"]["name"] for t in body.get("tools") or []]
    if "calc_add" in offered and "calc_add" not in tools_done:
        return call("calc_add", {"a": 40, "b": 2})
    if "calc_add" in offered:
        return {"role": "assistant", "content": "MCP says " + body["messages"][-1]["content"]}
    return {"role": "assistant", "content": f"Answer {len(user)} about Mars."}


class Handler(JSONHandler):
    def do_POST(self) -> None:
        body = self.read_json()
        REQUESTS.append(body)
        message = reply(body)
        prompt, completion = USAGE[agent_of(body)]
        self.send_json(
            {
                "id": f"c{len(REQUESTS)}",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            }
        )


@pytest.fixture
def server() -> Any:
    REQUESTS.clear()
    WRITER_TEXT["value"] = "Reusable boosters now land routinely, cutting launch costs."
    with serve(Handler) as base:
        yield f"{base}/v1"


def request(name: str, server: str, **changes: Any) -> dict[str, Any]:
    req = json.loads((EXAMPLES / name).read_text())
    for agent in req["workflow"]["agents"]:
        agent["model"]["provider_config"] = {"base_url": server, "api_key": "sk-local", "max_retries": 0}
    req.update(changes)
    return req


def load(req: dict[str, Any]) -> OpenWorkflow:
    ow = OpenWorkflow(state=":memory:")
    ow.load("""
connector: {name: web_search, kind: sdk}
actions:
  - name: search
    description: Search the web
    input: {type: object, properties: {query: {type: string}}, required: [query]}
    handler: {function: tests.test_runner_requests.web_search}
""")
    ow.load(json.dumps(req))
    return ow


def test_complex_example_calls_the_agent_tool_then_hands_off(server: str) -> None:
    ow = load(request("complex.json", server))
    res = ow.workflow("research_supervisor").execute()
    assert res.status == "completed", res.error
    assert res.outputs["final_output"] == WRITER_TEXT["value"]
    order = [agent_of(b) for b in REQUESTS]
    assert order == ["supervisor", "researcher", "researcher", "supervisor", "writer"]
    # the researcher (agent tool) ran web_search through the configured connector
    assert "Starship caught" in REQUESTS[2]["messages"][-1]["content"]
    # the handoff carried the whole conversation to the writer, under the writer's instructions
    writer = REQUESTS[4]["messages"]
    assert writer[0]["role"] == "system" and "craft" in writer[0]["content"]
    assert any(m["role"] == "tool" and m.get("content", "").find("- Starship") >= 0 for m in writer)
    summary = res.outputs["summary"]
    assert summary["workflow_name"] == "research_supervisor" and summary["session_id"] == "demo-complex"
    assert summary["final_output"] == WRITER_TEXT["value"] and summary["error"] is None
    assert summary["last_agent"] == "writer"
    assert summary["usage"] == {
        "supervisor": {"requests": 2, "prompt_tokens": 200, "completion_tokens": 20},
        "researcher": {"requests": 2, "prompt_tokens": 40, "completion_tokens": 4},
        "writer": {"requests": 1, "prompt_tokens": 30, "completion_tokens": 3},
    }
    moves = [(e["type"], e["payload"]) for e in res.events if e["type"].startswith("agent.")]
    assert moves == [
        ("agent.agent_tool", {"agent": "supervisor", "tool": "research_insights", "runs": "researcher"}),
        ("agent.handoff", {"from": "supervisor", "to": "writer"}),
    ]
    per_agent = {r["step_id"]: 0 for r in res.usage_rows}
    for r in res.usage_rows:
        per_agent[r["step_id"]] += r["total_tokens"]
    assert per_agent == {"run/supervisor": 220, "run/researcher": 44, "run/writer": 33}


def test_input_guardrail_trips_before_any_model_call(server: str) -> None:
    ow = load(request("complex.json", server, query="Please do my algebra homework"))
    res = ow.workflow("research_supervisor").execute()
    assert res.status == "failed" and REQUESTS == []
    err = res.steps["run"].error
    assert err.code == "VALIDATION" and err.details["guardrail"] == "math_homework_input"
    assert err.details["info"] == {"keyword": "algebra homework"}


def test_output_guardrail_trips_on_a_phone_number(server: str) -> None:
    WRITER_TEXT["value"] = "Call us at 415-555-0100 for details."
    ow = load(request("complex.json", server))
    res = ow.workflow("research_supervisor").execute()
    assert res.status == "failed"
    err = res.steps["run"].error
    assert err.details["guardrail"] == "phone_number_output" and err.details["agent"] == "writer"


def test_a_registered_guardrail_and_max_turns(server: str) -> None:
    register_guardrail(
        "no_rockets", lambda agent, value, config: {"word": "rocket"} if "rocket" in str(value) else None
    )
    try:
        req = request("complex.json", server)
        req["workflow"]["agents"][2]["input_guardrails"] = [{"name": "no_rockets"}]
        res = load(req).workflow("research_supervisor").execute()
        assert res.steps["run"].error.details["guardrail"] == "no_rockets"
    finally:
        REGISTRY["input"].pop("no_rockets")
    req = request("complex.json", server)
    req["session"]["max_turns"] = 1
    res = load(req).workflow("research_supervisor").execute()
    assert res.steps["run"].error.code == "BACKEND_ERROR" and res.steps["run"].error.details["max_turns"] == 1


def test_hosted_tool_without_a_connector_is_unavailable(server: str) -> None:
    ow = OpenWorkflow(state=":memory:")
    ow.load(json.dumps(request("complex.json", server)))
    res = ow.workflow("research_supervisor").execute()
    err = res.steps["run"].error
    assert err.code == "UNAVAILABLE" and "web_search" in err.details["suggestion"]


def test_output_type_is_enforced_strictly(server: str) -> None:
    req = request("simple.json", server)
    req["workflow"]["agents"][0]["output_type"] = {
        "name": "Facts",
        "strict": True,
        "schema": {"type": "object", "properties": {"facts": {"type": "array"}}},
    }
    res = load(req).workflow("simple_assistant").execute()
    assert res.steps["run"].error.code == "VALIDATION" and res.steps["run"].error.details["output_type"] == "Facts"


def test_simple_example_and_a_second_request_in_the_same_session(server: str) -> None:
    ow = load(request("simple.json", server))
    first = ow.workflow("simple_assistant").execute()
    assert first.outputs["final_output"] == "Answer 1 about Mars."
    second = ow.workflow("simple_assistant").execute(inputs={"query": "And about Venus?"})
    assert second.outputs["final_output"] == "Answer 2 about Mars."
    sent = [(m["role"], m["content"]) for m in REQUESTS[1]["messages"][1:]]
    assert sent == [
        ("user", "List three fun facts about Mars."),
        ("assistant", "Answer 1 about Mars."),
        ("user", "And about Venus?"),
    ]
    assert second.outputs["summary"]["session_id"] == "demo-simple"


def test_output_type_accepts_matching_json_and_refuses_extra_properties(server: str) -> None:
    from owf_magics.agents.multi import check_output_type
    from owf_magics.manifest.models import Agent

    decl = {"name": "Facts", "strict": True, "schema": {"type": "object", "properties": {"facts": {"type": "array"}}}}
    agent = Agent(name="a", model={"provider": "echo"}, extensions={"openaiAgents": {"output_type": decl}})
    assert check_output_type(agent, '{"facts": ["red"]}') == {"facts": ["red"]}
    with pytest.raises(Exception) as info:
        check_output_type(agent, '{"facts": [], "more": 1}')
    assert info.value.error.code == "VALIDATION"  # type: ignore[attr-defined]


def test_the_session_outlives_the_registry_in_the_run_store(server: str, tmp_path: Path) -> None:
    state = str(tmp_path / "runs.db")
    for query in ("First question", "Second question"):
        ow = OpenWorkflow(state=state)
        ow.load(json.dumps(request("simple.json", server, query=query)))
        assert ow.workflow("simple_assistant").execute().status == "completed"
        ow.close()
    sent = [m["content"] for m in REQUESTS[1]["messages"][1:]]
    assert sent == ["First question", "Answer 1 about Mars.", "Second question"]
    ow = OpenWorkflow(state=state)
    assert [m["role"] for m in ow.store.get_messages("demo-simple")] == ["user", "assistant"] * 2
    ow.close()


def test_history_size_keeps_only_the_last_items(server: str) -> None:
    req = request("simple.json", server)
    req["session"]["history_size"] = 1
    ow = load(req)
    answers = [ow.workflow("simple_assistant").execute(inputs={"query": q}).outputs["final_output"] for q in "abc"]
    assert [m["content"] for m in REQUESTS[1]["messages"][1:]] == [answers[0], "b"]
    assert [m["content"] for m in REQUESTS[2]["messages"][1:]] == [answers[1], "c"]


def test_result_summary_is_the_runners_and_still_the_text(server: str) -> None:
    ow = load(request("simple.json", server))
    res = ow.workflow("simple_assistant").execute()
    assert res.summary["workflow_name"] == "simple_assistant" and res.summary["session_id"] == "demo-simple"
    assert res.summary["final_output"] == res.outputs["final_output"] and res.summary["error"] is None
    assert res.summary["last_response_id"]
    assert res.summary().startswith(f"run {res.run_id} of 'simple_assistant': completed")
    failed = load(request("complex.json", server, query="fix my calculus homework")).workflow("research_supervisor")
    bad = failed.execute()
    assert bad.summary["error"] == "input guardrail 'math_homework_input' tripped on agent 'supervisor'"
    assert bad.summary["final_output"] is None and "failed" in bad.summary()


class Collector(JSONHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        Collector.received.append(self.read_json())
        self.send_json({"ok": True})


def test_http_callback_of_the_request_receives_the_events(server: str) -> None:
    Collector.received = []
    with serve(Collector) as hook:
        req = request("simple.json", server, callback={"target": f"{hook}/events", "mode": "http"})
        res = load(req).workflow("simple_assistant").execute()
    assert res.status == "completed"
    types = [e["type"] for e in Collector.received]
    assert types[0] == "run.started" and types[-1] == "run.completed"


def test_stdout_callback_prints_the_run(server: str, capsys: pytest.CaptureFixture[str]) -> None:
    load(request("simple.json", server)).workflow("simple_assistant").execute()  # the example's mode: stdout
    out = capsys.readouterr().out
    assert "step run started" in out and "completed in" in out


def test_owf_run_runs_a_request_file_with_an_overridden_query(server: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "request.json"
    path.write_text(json.dumps(request("simple.json", server, callback={"mode": "stdout_verbose"})))
    cmd = [sys.executable, "-m", "owf_magics.cli", "run", str(path), "--state", str(tmp_path / "r.db"), "--json"]
    cmd += ["-i", "query=What about Phobos?"]
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert REQUESTS[-1]["messages"][-1]["content"] == "What about Phobos?"
    assert '"final_output": "Answer 1 about Mars."' in out.stdout


def test_mcp_entries_become_mcp_connectors_with_require_approval(server: str) -> None:
    from tests.test_mcp_http import free_port, start_server

    port = free_port()
    proc = start_server(port)
    try:
        req = request("simple.json", server)
        address = f"http://127.0.0.1:{port}/none/mcp"
        req["workflow"]["agents"][0]["mcp"] = [
            {"server_label": "calc", "address": address, "require_approval": "always"}
        ]
        ow = load(req)
        first = ow.workflow("simple_assistant").execute()
        assert first.status == "waiting_approval"
        pending = first.pending[0]
        assert pending.payload["server"] == "calc" and pending.payload["tool"] == "add"
        done = ow.resume(first.run_id, approvals={pending.id: True})
        assert done.status == "completed", done.error
        assert json.loads(done.outputs["final_output"].removeprefix("MCP says "))["total"] == 42
        ow.close()
    finally:
        proc.terminate()
        proc.wait(10)


def test_owf_convert_prints_yaml_that_runs_the_same(server: str, tmp_path: Path) -> None:
    from owf_magics.formats.convert import convert_file

    path = tmp_path / "request.json"
    path.write_text(json.dumps(request("simple.json", server)))
    converted = convert_file(path)
    assert converted.startswith("# converted from runner")
    direct = load(json.loads(path.read_text())).workflow("simple_assistant").execute()
    ow = OpenWorkflow(state=":memory:")
    ow.load(converted)
    again = ow.workflow("simple_assistant").execute()
    assert again.outputs["final_output"] == direct.outputs["final_output"] == "Answer 1 about Mars."
    assert again.summary["workflow_name"] == "simple_assistant"


@pytest.mark.slow
def test_the_service_runs_a_request_file_and_an_inline_request(server: str, tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from tests.service_server import start, token

    path = tmp_path / "request.json"
    path.write_text(json.dumps(request("simple.json", server, callback={"mode": "stdout"})))
    srv = start(tmp_path, str(path))
    try:
        with srv.client(token()) as c:
            body = c.post("/workflows/execute", json={"workflow": "simple_assistant"}).json()
            assert body["status"] == "completed" and body["outputs"]["final_output"] == "Answer 1 about Mars."
            inline = request("simple.json", server, callback={"mode": "stdout"})
            inline["session"]["session_id"] = "other"
            body = c.post(
                "/workflows/execute", json={"manifest": json.dumps(inline), "inputs": {"query": "Inline?"}}
            ).json()
            assert body["status"] == "completed", body
        assert REQUESTS[-1]["messages"][-1]["content"] == "Inline?"
    finally:
        assert srv.stop() in (0, -15), srv.stderr()
