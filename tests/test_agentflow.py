"""AgentFlow Core WorkflowSpecs: input -> router -> (llm | image) -> db -> aggregator on a real
SQLite file, metrics, the unified error format, queues under a controllable clock, the handler
switch, `owf convert` and the langchain backend."""

from __future__ import annotations

import asyncio
import copy
import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from owf_magics import ManifestError, OpenWorkflow
from owf_magics.agents.limits import ManualClock
from owf_magics.formats import detect_format
from owf_magics.formats.convert import convert_file

SPEC: dict[str, Any] = {
    "id": "support-flow",
    "start_node": "input",
    "nodes": [
        {"id": "input", "type": "input"},
        {"id": "router", "type": "router"},
        {
            "id": "llm",
            "type": "llm",
            "metadata": {"source": "chat", "config": {"prompt_template": "Answer: {user_input}"}},
        },
        {"id": "image", "type": "image", "metadata": {"source": "pics"}},
        {
            "id": "db",
            "type": "db",
            "metadata": {
                "source": "store",
                "config": {
                    "query": "SELECT name, price FROM products WHERE kind = ? ORDER BY name",
                    "params": ["{intent}"],
                },
            },
        },
        {"id": "final", "type": "aggregator"},
    ],
    "edges": [
        {"from": "input", "to": "router"},
        {"from": "router", "to": ["llm", "image"]},
        {"from": "llm", "to": "db"},
        {"from": "image", "to": "db"},
        {"from": "db", "to": "final"},
    ],
    "queues": [],
    "sources": [
        {"id": "chat", "kind": "llm", "config": {"provider": "echo"}},
        {"id": "pics", "kind": "image", "config": {"provider": "offline"}},
        {"id": "store", "kind": "db", "config": {"database": "DB"}},
    ],
}


def shop(tmp_path: Path) -> str:
    path = tmp_path / "shop.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE products (name TEXT, price INTEGER, kind TEXT)")
    conn.executemany(
        "INSERT INTO products VALUES (?, ?, ?)", [("pen", 2, "text"), ("poster", 9, "image"), ("book", 12, "text")]
    )
    conn.commit()
    conn.close()
    return str(path)


def spec_file(tmp_path: Path, **changes: Any) -> Path:
    spec = copy.deepcopy(SPEC)
    spec["sources"][2]["config"]["database"] = shop(tmp_path)
    spec.update(changes)
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(spec, indent=2))
    return path


def test_both_branches_run_by_input_and_the_db_node_reads_sqlite(tmp_path: Path) -> None:
    ow = OpenWorkflow(state=":memory:")
    ow.load(spec_file(tmp_path))
    wf = ow.workflow("support-flow")
    text = wf.execute(inputs={"user_input": "hello there"})
    assert text.status == "completed"
    assert text.outputs["intent"] == "text"
    assert text.outputs["text_result"] == "Answer: hello there"
    assert text.outputs["image_result"] is None
    assert text.outputs["final_output"] == {
        "text": "Answer: hello there",
        "image": None,
        "db": [{"name": "book", "price": 12}, {"name": "pen", "price": 2}],
    }
    assert text.metrics["nodes_executed"] == ["input", "router", "llm", "db", "final"]
    assert text.metrics["tokens_used"] > 0 and text.metrics["execution_time_ms"] > 0
    assert set(text.metrics) == {"execution_time_ms", "tokens_used", "cost_usd", "nodes_executed"}

    image = wf.execute(inputs={"user_input": "img: a red cat"})
    assert image.outputs["intent"] == "image"
    assert image.outputs["text_result"] is None
    assert image.outputs["image_result"]["url"].startswith("offline://image/")
    assert image.outputs["final_output"]["db"] == [{"name": "poster", "price": 9}]
    assert image.metrics["nodes_executed"] == ["input", "router", "image", "db", "final"]
    assert image.steps["llm"].status == "skipped"


def test_db_parameters_are_bound_not_formatted(tmp_path: Path) -> None:
    """A state value that looks like SQL reaches the database as a value: no row, no error."""
    path = spec_file(tmp_path)
    spec = json.loads(path.read_text())
    spec["nodes"][4]["metadata"]["config"]["params"] = ["{user_input}"]
    path.write_text(json.dumps(spec))
    ow = OpenWorkflow(state=":memory:")
    ow.load(path)
    res = ow.workflow("support-flow").execute(inputs={"user_input": "x' OR '1'='1"})
    assert res.status == "completed"
    assert res.outputs["db_result"] == []


def test_an_llm_classifier_router_and_fan_out(tmp_path: Path) -> None:
    spec = copy.deepcopy(SPEC)
    spec["sources"][2]["config"]["database"] = shop(tmp_path)
    spec["sources"].append(
        {"id": "judge", "kind": "llm", "config": {"provider": "scripted", "responses": [{"content": " IMAGE "}]}}
    )
    spec["nodes"][1]["metadata"] = {"source": "judge"}
    ow = OpenWorkflow(state=":memory:")
    ow.load(spec)
    res = ow.workflow("support-flow").execute(inputs={"user_input": "draw me a cat"})
    assert res.outputs["intent"] == "image"  # the classifier's answer, trimmed and lower-cased
    assert res.steps["llm"].status == "skipped"
    # a plain fan-out (no router) runs every target and the join merges both branches
    spec2 = copy.deepcopy(spec)
    spec2["nodes"][1] = {"id": "router", "type": "input"}
    ow2 = OpenWorkflow(state=":memory:")
    ow2.load(spec2)
    both = ow2.workflow("support-flow").execute(inputs={"user_input": "hi"})
    assert both.outputs["text_result"] == "Answer: hi"
    assert both.outputs["image_result"]["prompt"] == "hi"


def test_conditional_edges_pick_by_intent(tmp_path: Path) -> None:
    spec = copy.deepcopy(SPEC)
    spec["sources"][2]["config"]["database"] = shop(tmp_path)
    spec["nodes"][1]["metadata"] = {"config": {"rules": [{"prefix": "pic:", "intent": "picture"}]}}
    spec["edges"][1] = {"from": "router", "to": "image", "condition": "picture"}
    spec["edges"].insert(2, {"from": "router", "to": "llm", "condition": "text"})
    ow = OpenWorkflow(state=":memory:")
    ow.load(spec)
    wf = ow.workflow("support-flow")
    assert wf.execute(inputs={"user_input": "pic: sea"}).metrics["nodes_executed"][2] == "image"
    assert wf.execute(inputs={"user_input": "img: sea"}).metrics["nodes_executed"][2] == "llm"


def test_a_failing_db_node_gives_the_unified_error(tmp_path: Path) -> None:
    path = spec_file(tmp_path)
    spec = json.loads(path.read_text())
    spec["nodes"][4]["metadata"]["config"]["query"] = "SELECT name FROM missing_table"
    ow = OpenWorkflow(state=":memory:")
    ow.load(spec)
    res = ow.workflow("support-flow").execute(inputs={"user_input": "hi"})
    assert res.status == "failed"
    body = res.error_body
    assert body is not None and body["status"] == "error"
    assert body["message"].startswith("the SQL statement failed")
    assert body["details"]["step"] == "db" and body["details"]["code"] == "BACKEND_ERROR"
    assert res.steps["final"].status == "skipped"
    assert res.metrics["nodes_executed"] == ["input", "router", "llm"]


def test_allow_handlers_can_refuse_the_db_kind(tmp_path: Path) -> None:
    ow = OpenWorkflow(state=":memory:", allow_handlers=["image", "queue", "router"])
    with pytest.raises(ManifestError) as err:
        ow.load(spec_file(tmp_path))
    assert err.value.codes == ["HANDLER_NOT_ALLOWED"]
    assert "'sql' handler kind" in err.value.diagnostics[0].message


def queued(tmp_path: Path, on_limit: str, **bandwidth: Any) -> OpenWorkflow:
    queue = {
        "id": "q1",
        "from": "router",
        "to": "llm",
        "bandwidth": bandwidth,
        "subqueues": [{"id": "gold", "weight": 0.75}, {"id": "free", "weight": 0.25}],
        "on_limit": on_limit,
    }
    ow = OpenWorkflow(state=":memory:")
    ow.rate_limiter.clock = ManualClock()
    ow.load(spec_file(tmp_path, queues=[queue]))
    return ow


def test_queue_on_limit_fail_raises_queue_rate_limit_exceeded(tmp_path: Path) -> None:
    ow = queued(tmp_path, "fail", max_messages_per_second=1)
    wf = ow.workflow("support-flow")
    first = wf.execute(inputs={"user_input": "one"})
    assert first.status == "completed"
    assert "queue__q1" in first.metrics["nodes_executed"]
    second = wf.execute(inputs={"user_input": "two"})  # same instant by the manual clock
    assert second.status == "failed"
    assert second.error_body is not None
    assert second.error_body["details"]["error"] == "QueueRateLimitExceeded"
    assert second.error_body["details"]["queue"] == "q1"
    # the image branch does not pass the queue
    assert wf.execute(inputs={"user_input": "img: three"}).status == "completed"
    ow.rate_limiter.clock.advance(1.0)
    assert wf.execute(inputs={"user_input": "four"}).status == "completed"


def test_queue_on_limit_wait_holds_runs_until_the_clock_moves(tmp_path: Path) -> None:
    ow = queued(tmp_path, "wait", max_messages_per_second=1)
    clock: ManualClock = ow.rate_limiter.clock
    wf = ow.workflow("support-flow")
    assert wf.execute(inputs={"user_input": "one"}).status == "completed"
    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.append(wf.execute(inputs={"user_input": "two"})))
    worker.start()
    for _ in range(200):
        if clock.sleepers:
            break
        threading.Event().wait(0.01)
    assert clock.sleepers == 1 and not results  # waiting on the queue, by the manual clock
    clock.advance(1.0)
    worker.join(10)
    assert results and results[0].status == "completed"
    assert results[0].steps["queue__q1"].output["waited_s"] == pytest.approx(1.0)


def test_weighted_subqueues_serve_in_proportion(tmp_path: Path) -> None:
    """The queue's limiter key favours the heavier sub-queue (weights 0.75 and 0.25)."""
    ow = queued(tmp_path, "wait", max_messages_per_second=1)
    ow.workflow("support-flow").execute(inputs={"user_input": "warm", "metadata": {"subqueue": "gold"}})
    limiter, clock = ow.rate_limiter, ow.rate_limiter.clock
    order: list[str] = []

    async def send(sub: str) -> None:
        await limiter.acquire("queue:support-flow/q1", messages=1, subqueue=sub)
        order.append(sub)

    async def main() -> None:
        tasks = [asyncio.create_task(send(s)) for s in ["free"] * 4 + ["gold"] * 4]
        while len(order) < 8:
            await asyncio.sleep(0)
            if clock.sleepers:
                clock.advance(1.0)
        await asyncio.gather(*tasks)

    asyncio.run(main())
    # the first 'free' found the queue idle; after it, gold (weight 75) is served twice per free (25)
    # until its line is empty: all four gold messages go out within the first six
    assert order[:6].count("gold") == 4 and order[-2:] == ["free", "free"]


def test_owf_convert_round_trip_gives_the_same_outputs(tmp_path: Path) -> None:
    path = spec_file(tmp_path)
    assert detect_format(json.loads(path.read_text())) is not None
    text = convert_file(path)
    assert text.startswith("# converted from agentflow")
    cli = subprocess.run(
        [sys.executable, "-m", "owf_magics.cli", "convert", str(path), "--to", "openworkflow"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.strip() == text.strip()
    direct, converted = OpenWorkflow(state=":memory:"), OpenWorkflow(state=":memory:")
    direct.load(path)
    converted.load(text)
    for query in ("hello", "img: a boat"):
        a = direct.workflow("support-flow").execute(inputs={"user_input": query})
        b = converted.workflow("support-flow").execute(inputs={"user_input": query})
        assert a.outputs == b.outputs
        assert a.metrics["nodes_executed"] == b.metrics["nodes_executed"]


def test_runs_on_the_langchain_backend_with_the_same_outputs(tmp_path: Path) -> None:
    ow = OpenWorkflow(state=":memory:")
    ow.load(spec_file(tmp_path))
    wf = ow.workflow("support-flow")
    for query in ("hello", "img: a boat"):
        native = wf.execute(inputs={"user_input": query})
        chain = wf.execute(inputs={"user_input": query}, prefer_backend="langchain")
        assert chain.status == "completed", chain.error
        assert chain.outputs == native.outputs
    assert wf.plan(prefer_backend="langchain")["llm"].backend == "langchain"
    # the whole spec as one compiled LangGraph StateGraph, as AgentFlow Core builds it
    graph = wf.to_langgraph()
    state = graph.invoke({"inputs": {"user_input": "img: a boat"}})
    assert state["outputs"] == wf.execute(inputs={"user_input": "img: a boat"}).outputs


def test_metrics_count_the_llm_nodes_tokens_and_cost(tmp_path: Path) -> None:
    spec = copy.deepcopy(SPEC)
    spec["sources"][2]["config"]["database"] = shop(tmp_path)
    spec["sources"][0]["config"] = {
        "provider": "scripted",
        "model_name": "house-model",
        "responses": [{"content": "fine", "usage": {"prompt_tokens": 1000, "completion_tokens": 500}}],
        "pricing": {"input": 2.0, "output": 8.0},
    }
    ow = OpenWorkflow(state=":memory:")
    ow.load(spec)
    res = ow.workflow("support-flow").execute(inputs={"user_input": "hello"})
    assert res.outputs["text_result"] == "fine"
    assert res.metrics["tokens_used"] == 1500
    assert res.metrics["cost_usd"] == pytest.approx(0.006)  # (1000 * 2 + 500 * 8) / 1e6
    assert res.error_body is None


def dashboard(strategy: str, routes: list[dict[str, Any]], default: str | None = "user") -> dict[str, Any]:
    """AgentFlow's role-dashboard shape: a router with routes, edges routed by `condition: intent`."""
    return {
        "name": "Role Dashboard",
        "start_node": "input",
        "nodes": [
            {"id": "input", "type": "input"},
            {
                "id": "role_router",
                "type": "router",
                "metadata": {"strategy": strategy, "routes": routes, "default_intent": default},
            },
            {"id": "fetch_user", "type": "llm", "metadata": {"prompt_template": "user view of {user_input}"}},
            {"id": "fetch_developer", "type": "llm", "metadata": {"prompt_template": "dev view of {user_input}"}},
            {"id": "fetch_hr", "type": "llm", "metadata": {"prompt_template": "hr view of {user_input}"}},
            {"id": "merge", "type": "aggregator"},
        ],
        "edges": [
            {"from": "input", "to": "role_router"},
            {"from": "role_router", "to": ["fetch_user", "fetch_developer", "fetch_hr"], "condition": "intent"},
            {"from": "fetch_user", "to": "merge"},
            {"from": "fetch_developer", "to": "merge"},
            {"from": "fetch_hr", "to": "merge"},
        ],
    }


@pytest.mark.parametrize(
    ("strategy", "routes", "cases"),
    [
        (
            "keyword",
            [{"intent": "developer", "keywords": ["engineer", "dev"]}, {"intent": "hr", "keywords": ["recruiter"]}],
            {"I am an Engineer": "fetch_developer", "recruiter here": "fetch_hr", "hello": "fetch_user"},
        ),
        (
            "pattern",
            [{"intent": "developer", "pattern": r"^(dev|eng)\w*"}, {"intent": "hr", "pattern": "^hr\\b"}],
            {"Engineering lead": "fetch_developer", "HR team": "fetch_hr", "an engineer": "fetch_user"},
        ),
        (
            "rules",
            [{"intent": "hr", "condition": "starts_with('hr')"}, {"intent": "developer", "condition": "length_gt(12)"}],
            {"hr: hi": "fetch_hr", "a long message here": "fetch_developer", "short": "fetch_user"},
        ),
    ],
)
def test_router_strategies_route_by_the_target_named_like_the_intent(
    strategy: str, routes: list[dict[str, Any]], cases: dict[str, str]
) -> None:
    ow = OpenWorkflow(state=":memory:")
    ow.load(dashboard(strategy, routes))
    wf = ow.workflow("Role Dashboard")
    for text, target in cases.items():
        res = wf.execute(inputs={"user_input": text})
        assert res.status == "completed", res.error
        assert res.metrics["nodes_executed"] == ["input", "role_router", target, "merge"], text


def test_an_unknown_intent_goes_to_the_first_target_and_default_fans_out() -> None:
    ow = OpenWorkflow(state=":memory:")
    ow.load(dashboard("keyword", [{"intent": "hr", "keywords": ["hr"]}], default="nobody"))
    res = ow.workflow("Role Dashboard").execute(inputs={"user_input": "hello"})
    assert res.outputs["intent"] == "nobody"
    assert res.metrics["nodes_executed"][2] == "fetch_user"  # AgentFlow's fallback: the first target
    fan = OpenWorkflow(state=":memory:")
    fan.load(dashboard("default", [], default=None))
    res = fan.workflow("Role Dashboard").execute(inputs={"user_input": "x"})
    assert set(res.metrics["nodes_executed"][2:5]) == {"fetch_user", "fetch_developer", "fetch_hr"}
    assert res.outputs["text_result"] in {"user view of x", "dev view of x", "hr view of x"}


def test_the_service_reports_the_nodes_that_ran(tmp_path: Path) -> None:
    """`owf serve flow.json` (its own spec, trusted) and POST /workflows/execute: the metrics name
    only the branch taken."""
    from tests.service_server import start, token

    srv = start(tmp_path, str(spec_file(tmp_path)))
    try:
        with srv.client(token()) as client:
            res = client.post(
                "/workflows/execute", json={"workflow": "support-flow", "inputs": {"user_input": "img: kite"}}
            )
    finally:
        srv.stop()
    body = res.json()
    assert res.status_code == 200, body
    assert body["metrics"]["nodes_executed"] == ["input", "router", "image", "db", "final"]
    assert body["outputs"]["final_output"]["db"] == [{"name": "poster", "price": 9}]


def test_the_schema_documents_example_with_hyphenated_ids_runs(tmp_path: Path) -> None:
    """WORKFLOW-SCHEMA.md's valid example (ids like llm-text; a source with model_name and api_key)."""
    spec = {
        "start_node": "input",
        "name": "schema-example",
        "nodes": [
            {"id": "input", "type": "input"},
            {"id": "router", "type": "router"},
            {"id": "llm-text", "type": "llm", "metadata": {"source": "openai"}},
            {"id": "image-gen", "type": "image", "metadata": {"source": "openai-img"}},
            {"id": "final", "type": "aggregator"},
        ],
        "edges": [
            {"from": "input", "to": "router"},
            {"from": "router", "to": ["llm-text", "image-gen"]},
            {"from": "llm-text", "to": "final"},
            {"from": "image-gen", "to": "final"},
        ],
        "queues": [{"id": "q1", "from": "router", "to": "llm-text", "bandwidth": {"max_messages_per_second": 1}}],
        "sources": [
            {"id": "openai", "kind": "llm", "config": {"model_name": "gpt-4.1", "provider": "echo"}},
            {"id": "openai-img", "kind": "image", "config": {"api_key": "sk-not-a-key"}},
        ],
    }
    ow = OpenWorkflow(state=":memory:")
    ow.load(spec)
    wf = ow.workflow("schema-example")
    assert wf.execute(inputs={"user_input": "hi"}).metrics["nodes_executed"] == [
        "input",
        "router",
        "queue__q1",
        "llm-text",
        "final",
    ]
    res = wf.execute(inputs={"user_input": "img: sun"})
    assert res.metrics["nodes_executed"] == ["input", "router", "image-gen", "final"]
    assert res.outputs["final_output"]["image"]["url"].startswith("offline://image/")
    path = tmp_path / "schema-example.json"
    path.write_text(json.dumps(spec))
    assert "sk-not-a-key" not in convert_file(path)  # the image handler keeps only what it reads


def test_output_keys_and_an_aggregator_with_source_keys() -> None:
    """AgentFlow's later shape: llm nodes write `output_key`, prompts read earlier keys, the
    aggregator collects `source_keys`; routed by `condition: intent` from a keyword router."""
    validate = {"content": "valid", "usage": {"prompt_tokens": 10, "completion_tokens": 1}}
    spec = {
        "name": "Order Pipeline",
        "start_node": "input",
        "initial_state": {"product_ids": ""},
        "nodes": [
            {"id": "input", "type": "input"},
            {
                "id": "validate_order",
                "type": "llm",
                "metadata": {
                    "source_id": "judge",
                    "prompt_template": "{user_input}",
                    "output_key": "validation_result",
                },
            },
            {
                "id": "validation_router",
                "type": "router",
                "metadata": {
                    "strategy": "keyword",
                    "input_key": "validation_result",
                    "routes": [
                        {"intent": "error", "keywords": ["invalid"]},
                        {"intent": "proceed", "keywords": ["valid"]},
                    ],
                    "default_intent": "proceed",
                },
            },
            {
                "id": "check_inventory",
                "type": "llm",
                "metadata": {"prompt_template": "stock of {product_ids}", "output_key": "inventory_check"},
            },
            {
                "id": "validation_error_handler",
                "type": "aggregator",
                "metadata": {"source_keys": ["validation_result"]},
            },
            {
                "id": "aggregator",
                "type": "aggregator",
                "metadata": {"source_keys": ["validation_result", "inventory_check"], "output_key": "final_output"},
            },
        ],
        "edges": [
            {"from": "input", "to": "validate_order"},
            {"from": "validate_order", "to": "validation_router"},
            {"from": "validation_router", "to": ["check_inventory", "validation_error_handler"], "condition": "intent"},
            {"from": "check_inventory", "to": "aggregator"},
        ],
        "sources": [{"id": "judge", "kind": "llm", "config": {"provider": "scripted", "responses": [validate]}}],
    }
    ow = OpenWorkflow(state=":memory:")
    ow.load(spec)
    res = ow.workflow("Order Pipeline").execute(inputs={"user_input": "2 mice", "product_ids": "P-1, P-2"})
    assert res.status == "completed", res.error
    assert res.outputs["intent"] == "proceed"
    assert res.outputs["final_output"] == {"validation_result": "valid", "inventory_check": "stock of P-1, P-2"}
    assert res.metrics["nodes_executed"] == [
        "input",
        "validate_order",
        "validation_router",
        "check_inventory",
        "aggregator",
    ]
    assert res.metrics["tokens_used"] > 11
    # the error branch: the first route wins ("invalid" also contains "valid")
    spec["sources"][0]["config"]["responses"] = [{"content": "invalid order"}]
    bad = OpenWorkflow(state=":memory:")
    bad.load(spec)
    res = bad.workflow("Order Pipeline").execute(inputs={"user_input": "?"})
    assert res.outputs["intent"] == "error"
    assert res.metrics["nodes_executed"][-1] == "validation_error_handler"
    assert res.outputs["final_output"] == {"validation_result": "invalid order"}
