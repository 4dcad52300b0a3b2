"""AgentFlow's error classes as the project's codes, in the unified error format (docs/formats.md,
"AgentFlow error classes"; issue 25, item 7)."""

from __future__ import annotations

import copy
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from owf_magics import OpenWorkflow
from owf_magics.agents.limits import ManualClock
from owf_magics.errors import ManifestError, OWFError
from tests.test_agentflow import SPEC, spec_file


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nobody listens once it is closed


def test_validation_error_is_a_manifest_error_with_lines(tmp_path: Path) -> None:
    spec = copy.deepcopy(SPEC)
    spec["nodes"][1]["type"] = "teleport"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec, indent=2))
    with pytest.raises(ManifestError) as info:
        OpenWorkflow(state=":memory:").load(path)
    assert info.value.code == "VALIDATION" and info.value.diagnostics[0].line


def test_node_execution_error_is_a_failed_step_in_the_unified_format(tmp_path: Path) -> None:
    spec = json.loads(spec_file(tmp_path).read_text())
    spec["nodes"][4]["metadata"]["config"]["query"] = "SELECT nothing FROM nowhere"
    ow = OpenWorkflow(state=":memory:")
    ow.load(spec)
    res = ow.workflow("support-flow").execute(inputs={"user_input": "hi"})
    assert res.status == "failed"
    body: Any = res.error_body
    assert set(body) == {"status", "message", "details"} and body["status"] == "error"
    assert body["details"]["code"] == "BACKEND_ERROR" and body["details"]["step"] == "db"


def test_source_connection_error_is_unavailable(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    spec = copy.deepcopy(SPEC)
    spec["sources"][2]["config"] = {"connection_string": f"postgresql://nobody@127.0.0.1:{closed_port()}/shop"}
    spec["nodes"][4]["metadata"]["config"]["query"] = "SELECT 1 AS one WHERE %s IS NOT NULL"
    ow = OpenWorkflow(state=":memory:")
    ow.load(spec)
    res = ow.workflow("support-flow").execute(inputs={"user_input": "hi"})
    body: Any = res.error_body
    assert res.status == "failed" and body["details"]["code"] == "UNAVAILABLE"
    assert body["details"]["error"] == "SourceConnectionError" and body["details"]["step"] == "db"


def test_queue_rate_limit_exceeded(tmp_path: Path) -> None:
    queue = {"id": "q1", "from": "router", "to": "llm", "bandwidth": {"max_requests_per_minute": 1}, "on_limit": "fail"}
    ow = OpenWorkflow(state=":memory:")
    ow.rate_limiter.clock = ManualClock()
    ow.load(spec_file(tmp_path, queues=[queue]))
    wf = ow.workflow("support-flow")
    assert wf.execute(inputs={"user_input": "one"}).status == "completed"
    res = wf.execute(inputs={"user_input": "two"})
    body: Any = res.error_body
    assert res.status == "failed" and body["status"] == "error"
    assert body["details"]["error"] == "QueueRateLimitExceeded" and body["details"]["step"] == "queue__q1"
    assert res.steps["llm"].status != "success"  # the node behind the queue never ran


def test_workflow_not_found_names_the_loaded_ones(tmp_path: Path) -> None:
    ow = OpenWorkflow(state=":memory:")
    ow.load(spec_file(tmp_path))
    with pytest.raises(OWFError) as info:
        ow.workflow("support-flo")
    assert info.value.code == "VALIDATION" and "support-flow" in info.value.message
