"""Streamed text: a local chat-completions server sends a sentence a word at a time; the callback
sees ``agent.message.delta`` events as they arrive and `agent.stream()` yields the same deltas."""

from __future__ import annotations

import json
import threading
import time

import pytest

from owf_magics import OpenWorkflow
from tests.local_http import JSONHandler, serve

pytest.importorskip("langchain_openai")

SENTENCE = "The quick brown fox jumps over the lazy dog"
PAUSE = 0.05  # between words: the first words are out well before the last


class Handler(JSONHandler):
    def do_POST(self) -> None:
        body = self.read_json()
        assert body.get("stream") is True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        words = SENTENCE.split(" ")
        pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
        base = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": body["model"]}
        for i, piece in enumerate(pieces):
            delta = {"content": piece, **({"role": "assistant"} if i == 0 else {})}
            self.wfile.write(f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': delta}]})}\n\n".encode())
            self.wfile.flush()
            time.sleep(PAUSE)
        end = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        usage = {**base, "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18}}
        for chunk in (end, usage):
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")


@pytest.fixture(scope="module")
def base_url():
    with serve(Handler) as base:
        yield f"{base}/v1"


def _ow(base_url: str) -> OpenWorkflow:
    ow = OpenWorkflow(state=":memory:")
    ow.load(
        f"""
type: agent
name: talker
model:
  provider: openai
  id: gpt-test
  providerConfig: {{base_url: "{base_url}", api_key: "sk-local", streaming: true, max_retries: 0}}
"""
    )
    return ow


@pytest.mark.parametrize("backend", ["native", "langchain"])
def test_deltas_arrive_while_the_model_talks(base_url: str, backend: str) -> None:
    ow = _ow(base_url)
    seen: list[tuple[float, dict]] = []
    lock = threading.Lock()

    def callback(event: dict) -> None:
        with lock:
            seen.append((time.perf_counter(), event))

    res = ow.load_agent("talker").execute("Say it", backend=backend, callback=callback)
    assert res.status == "completed", res.error
    assert res.output == SENTENCE
    deltas = [(t, e) for t, e in seen if e["type"] == "agent.message.delta"]
    assert len(deltas) >= 5
    assert "".join(e["delta"] for _, e in deltas) == SENTENCE
    assert all(e["step_id"] == "agent" and e["agent"] == "talker" for _, e in deltas)
    done = next(t for t, e in seen if e["type"] == "step.execution.completed")
    first = deltas[0][0]
    assert done - first > 5 * PAUSE  # the first words were seen well before the step completed
    # deltas are delivered, not stored (storeDeltas is off by default)
    assert not any(e["type"] == "agent.message.delta" for e in res.events)
    turn = next(e for _, e in seen if e["type"] == "agent.turn.completed")
    assert (turn["prompt_tokens"], turn["completion_tokens"]) == (9, 9)


def test_stream_yields_the_same_deltas(base_url: str) -> None:
    chunks = list(_ow(base_url).load_agent("talker").stream("Say it"))
    *deltas, final = chunks
    assert len(deltas) >= 5 and "".join(c["delta"] for c in deltas) == SENTENCE
    assert final["done"] is True and final["output"] == SENTENCE and final["result"].status == "completed"
