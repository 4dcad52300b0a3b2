"""AgentFlow sources as service resources and credentials at rest (issue 24), on two real `owf serve`
processes sharing one SQLite store and one OWF_SECRET_KEY:

- a source with an API key is created on one server and used, by id, by an AgentFlow spec
  published and run on the other, against a chat-completions server on 127.0.0.1 that receives
  the key; the key is in no list or read response, and nowhere in the database files read as bytes;
- a published manifest with a literal credential is stored encrypted (and gets the warning);
- a queue's bandwidth is read and adjusted while the servers run;
- `owf keys rotate` re-encrypts everything under a new key, which alone then opens it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from owf_magics.errors import ManifestError
from owf_magics.runs.crypto import Keyring, generate_key
from owf_magics.runs.store import SQLiteRunStore
from owf_magics.service.auth import Principal
from owf_magics.service.errors import ApiError
from owf_magics.service.published import Published
from tests.conftest import ROOT
from tests.local_http import JSONHandler, serve
from tests.service_server import ALL_SCOPES, start, token

pytest.importorskip("fastapi")
pytest.importorskip("langchain_openai")

API_KEY = "sk-test-4f1d9c2b7a6e5d3c1b0a"
NEW_KEY = "sk-test-rotated-9e8d7c6b5a4f"
LITERAL = "tok-literal-2c4e6a8b0d1f3e5a"
SCOPES = f"{ALL_SCOPES} workflows:write sources:read sources:write metrics:read"
SEEN: list[dict[str, Any]] = []


class ChatCompletions(JSONHandler):
    def do_POST(self) -> None:
        body = self.read_json()
        SEEN.append({"authorization": self.headers.get("Authorization"), "body": body})
        self.send_json(
            {
                "id": "c1",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "bonjour"}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
            }
        )


SPEC = {
    "id": "translator",
    "version": "1.0.0",
    "nodes": [
        {"id": "start", "type": "input"},
        {"id": "talk", "type": "llm", "metadata": {"source": "gpt", "config": {"prompt_template": "Say {user_input}"}}},
        {"id": "done", "type": "aggregator"},
    ],
    "edges": [{"from": "start", "to": "talk"}, {"from": "talk", "to": "done"}],
    "queues": [{"id": "q1", "from": "start", "to": "talk", "bandwidth": {"max_messages_per_second": 100}}],
    "start_node": "start",
}

LITERAL_MANIFEST = f"""
connectors:
  - name: crm
    auth: {{type: bearer, token: "{LITERAL}"}}
    actions:
      - name: find
        handler: {{http: {{url: "http://127.0.0.1:9/find", method: GET}}}}
workflows:
  - name: crm-lookup
    version: 1.0.0
    steps: [{{id: a, type: transform, expression: "x"}}]
"""


def store_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.glob("runs.db*")))


@pytest.fixture(scope="module")
def chat():
    with serve(ChatCompletions) as base:
        yield base


def test_a_source_key_is_used_by_a_published_spec_on_another_server_and_never_shown(tmp_path, chat):
    key = generate_key()
    env = {"OWF_SECRET_KEY": key}
    a = start(tmp_path, env=env, name="a")
    b = start(tmp_path, env=env, name="b")
    SEEN.clear()
    try:
        with a.client(token(scope=SCOPES)) as ca, b.client(token(scope=SCOPES)) as cb:
            config = {"provider": "openai", "model": "gpt-test", "base_url": f"{chat}/v1", "api_key": API_KEY}
            created = ca.post("/sources", json={"id": "gpt", "kind": "llm", "config": {**config, "max_retries": 0}})
            assert created.status_code == 201, created.text
            assert created.json()["config"]["api_key"] == "***"
            assert created.json()["config"]["model"] == "gpt-test"
            assert ca.post("/sources", json={"id": "gpt", "kind": "llm", "config": {}}).status_code == 409
            listed, one = cb.get("/sources"), cb.get("/sources/gpt")
            assert [s["id"] for s in listed.json()] == ["gpt"] and one.json()["config"]["api_key"] == "***"
            assert API_KEY not in listed.text + one.text + created.text

            published = cb.post("/workflows", json={"manifest": json.dumps(SPEC)})
            assert published.status_code == 201, published.text
            run = ca.post("/workflows/execute", json={"workflow": "translator", "inputs": {"user_input": "hello"}})
            assert run.status_code == 200, run.text
            assert run.json()["status"] == "completed", run.text
            assert run.json()["outputs"]["final_output"]["text"] == "bonjour"
            assert SEEN[-1]["authorization"] == f"Bearer {API_KEY}"
            assert SEEN[-1]["body"]["messages"][-1]["content"] == "Say hello"
            detail = cb.get(f"/runs/{run.json()['execution_id']}")
            assert API_KEY not in run.text + detail.text

            # a credential sent back as *** keeps the stored one; a new key reaches the next run
            kept = cb.put("/sources/gpt", json={"kind": "llm", "config": {**config, "api_key": "***"}})
            assert kept.status_code == 200 and kept.json()["config"]["api_key"] == "***"
            assert ca.post("/workflows/execute", json={"workflow": "translator"}).json()["status"] == "completed"
            assert SEEN[-1]["authorization"] == f"Bearer {API_KEY}"
            cb.put("/sources/gpt", json={"kind": "llm", "config": {**config, "api_key": NEW_KEY}})
            assert ca.post("/workflows/execute", json={"workflow": "translator"}).json()["status"] == "completed"
            assert SEEN[-1]["authorization"] == f"Bearer {NEW_KEY}"
            # three runs on server a, 6 tokens each (the server's usage): counted under the workflow
            got = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(ca.get("/metrics").text)
                for s in family.samples
            }
            assert got[("owf_tokens_total", (("workflow", "translator"),))] == 18
            assert got[("owf_runs_total", (("status", "completed"), ("workflow", "translator")))] == 3

            # another tenant sees none of it
            with a.client(token(tenant="globex", scope=SCOPES)) as other:
                assert other.get("/sources").json() == [] and other.get("/sources/gpt").status_code == 404
                assert other.delete("/sources/gpt").status_code == 404

            # a literal credential in a published manifest: a warning, and stored encrypted
            lit = ca.post("/workflows", json={"manifest": LITERAL_MANIFEST})
            assert lit.status_code == 201
            assert [w["code"] for w in lit.json()["warnings"]] == ["LITERAL_CREDENTIAL"]
            assert lit.json()["warnings"][0]["line"] == 4

            # queues: read, adjust while running (every worker), and the next messages wait for it
            (queue,) = cb.get("/queues").json()
            assert (queue["workflow"], queue["id"], queue["bandwidth"]) == (
                "translator",
                "q1",
                {"max_messages_per_second": 100},
            )
            assert cb.post("/workflows/execute", json={"workflow": "translator"}).status_code == 200  # warm (imports)
            slow = {"bandwidth": {"max_messages_per_second": 1}}
            adjusted = ca.put("/queues/translator/q1", json=slow)
            assert adjusted.status_code == 200 and adjusted.json()["adjusted"] is True
            assert cb.get("/queues/translator/q1").json()["bandwidth"] == {"max_messages_per_second": 1}
            assert cb.put("/queues/translator/nope", json=slow).status_code == 404
            waits = []
            for _ in range(2):
                r = cb.post("/workflows/execute", json={"workflow": "translator"}).json()
                steps = cb.get(f"/runs/{r['execution_id']}").json()["steps"]
                waits.append(steps["queue__q1"]["output"]["waited_s"])
            assert waits[1] > 0.3, waits  # one message a second: the second one waited its turn
            assert cb.get("/queues/translator/q1").json()["waiting"] == 0  # both passed
            depth = [
                s
                for family in text_string_to_metric_families(cb.get("/metrics").text)
                for s in family.samples
                if s.name == "owf_agentflow_queue_waiting"
            ]
            assert [(s.labels, s.value) for s in depth] == [
                ({"tenant": "acme", "workflow": "translator", "queue": "q1"}, 0)
            ]
    finally:
        a.stop()
        b.stop()
    raw = store_bytes(tmp_path)
    assert b"translator" in raw  # the files are the store
    for secret in (API_KEY, NEW_KEY, LITERAL):
        assert secret.encode() not in raw, secret

    # rotate to a new key: the old one may go, the new one alone opens everything
    new = generate_key()
    environ = {**os.environ, "OWF_SECRET_KEY": f"{new},{key}", "PYTHONPATH": str(ROOT)}
    rotate = [sys.executable, "-m", "owf_magics.cli", "keys", "rotate", "--state", str(tmp_path / "runs.db")]
    done = subprocess.run(rotate, env=environ, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "re-encrypted 3 " in done.stdout  # two snapshots and one source
    with SQLiteRunStore(tmp_path / "runs.db") as store, pytest.raises(Exception, match="no key in OWF_SECRET_KEY"):
        Keyring([key]).open(store.get_sources("acme")[0].credentials)
    c = start(tmp_path, env={"OWF_SECRET_KEY": new}, name="c")
    try:
        with c.client(token(scope=SCOPES)) as cc:
            r = cc.post("/workflows/execute", json={"workflow": "translator"})
            assert r.json()["status"] == "completed", r.text
            assert SEEN[-1]["authorization"] == f"Bearer {NEW_KEY}"
    finally:
        c.stop()
    wrong = {**environ, "OWF_SECRET_KEY": generate_key()}
    refused = subprocess.run(rotate, env=wrong, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2 and "no key in OWF_SECRET_KEY opens" in refused.stderr


def test_without_a_key_credentials_are_refused_not_stored_in_clear(tmp_path):
    with SQLiteRunStore(tmp_path / "runs.db") as store:
        published = Published(store, allow_handlers=False, keyring=Keyring([]))
        who = Principal("alice", "acme", frozenset())
        with pytest.raises(ApiError) as exc:
            published.publish(who, LITERAL_MANIFEST)
        assert exc.value.status == 422 and "OWF_SECRET_KEY" in exc.value.message
        assert store.definitions("acme") == []
        answer = published.publish(who, "name: plain\nversion: 1.0.0\nsteps: [{id: a, type: transform, expression: x}]")
        assert answer["workflows"] == [{"name": "plain", "version": "1.0.0"}]
        with pytest.raises(ManifestError):
            published.publish(who, json.dumps({**SPEC, "id": "needs-gpt"}))  # source 'gpt' is not stored
    assert LITERAL.encode() not in store_bytes(tmp_path)
