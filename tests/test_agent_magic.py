"""``%%agent`` in a real IPython shell: a session's second cell sends the first exchange again,
another session does not; ``%agent history S`` shows it; the history is in the run store."""

from __future__ import annotations

from pathlib import Path

import pytest
from IPython.utils.capture import capture_output

from owf_magics import OpenWorkflow
from tests.ipython_shell import magic_shell
from tests.local_http import JSONHandler, serve

pytest.importorskip("langchain_openai")

REQUESTS: list[dict] = []


class Handler(JSONHandler):
    def do_POST(self) -> None:
        body = self.read_json()
        REQUESTS.append(body)
        n = len(REQUESTS)
        self.send_json(
            {
                "id": f"c{n}",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": f"reply {n}"}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
            }
        )


@pytest.fixture
def shell(tmp_path: Path):
    REQUESTS.clear()
    with magic_shell(state=str(tmp_path / "runs.db")) as ip, serve(Handler) as base:
        ip.run_cell(
            "%%workflow\n"
            "type: agent\nname: chat\nmodel:\n  provider: openai\n  id: gpt-test\n"
            f"  providerConfig: {{base_url: '{base}/v1', api_key: sk-local, max_retries: 0}}\n"
        )
        yield ip


def _user_texts(body: dict) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in body["messages"]]


def test_a_session_continues_and_another_starts_fresh(shell, tmp_path: Path) -> None:
    with capture_output() as cap:
        first = shell.run_cell("%%agent chat --session s1 -o r1\nHello there")
    assert first.success, first.error_in_exec
    shown = cap.outputs[0].data
    assert "reply 1" in shown["text/plain"] and "chat: 10+2 tokens" in shown["text/plain"]
    assert "session s1" in shown["text/html"]
    assert shell.user_ns["r1"].output == "reply 1"
    second = shell.run_cell("%%agent chat --session s1\nAnd again")
    assert second.success
    assert _user_texts(REQUESTS[1]) == [("user", "Hello there"), ("assistant", "reply 1"), ("user", "And again")]
    other = shell.run_cell("%%agent chat --session s2\nSomething else")
    assert other.success
    assert _user_texts(REQUESTS[2]) == [("user", "Something else")]
    with capture_output() as cap:
        shell.run_line_magic("agent", "history s1")
    assert cap.stdout.splitlines() == [
        "user: Hello there",
        "assistant: reply 1",
        "user: And again",
        "assistant: reply 2",
    ]
    # kept in the run store: a new registry on the same file (a restarted kernel) sees it
    ow = OpenWorkflow(state=str(tmp_path / "runs.db"))
    assert [m["content"] for m in ow.store.get_messages("s1")][:2] == ["Hello there", "reply 1"]


def test_an_unknown_agent_fails_the_cell(shell) -> None:
    with capture_output():
        result = shell.run_cell("%%agent nobody\nhi")
    assert not result.success
