"""A local chat-completions server for provider tests: answers a request that offers tools and has
no tool result yet with a call to the first tool offered (or the forced one), then answers with
the tool's result as JSON; records every request and its path. Exact usage in every answer."""

from __future__ import annotations

import json
from typing import Any

from tests.local_http import JSONHandler

REQUESTS: list[dict[str, Any]] = []
USAGE = {"prompt_tokens": 17, "completion_tokens": 4, "total_tokens": 21}


class ChatHandler(JSONHandler):
    #: answer without a tool call even when tools are offered (a model ignoring tool_choice)
    never_calls = False

    def do_POST(self) -> None:
        body = self.read_json()
        REQUESTS.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        tools = body.get("tools") or []
        done = [m for m in body["messages"] if m["role"] == "tool"]
        if tools and not done and not self.never_calls and body.get("tool_choice") != "none":
            name = tools[0]["function"]["name"]
            call = {"id": "call_1", "type": "function", "function": {"name": name, "arguments": '{"a": 2, "b": 3}'}}
            message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        else:
            answer = done[-1]["content"] if done else "plain"
            message = {"role": "assistant", "content": json.dumps({"answer": str(answer)})}
            finish = "stop"
        self.send_json(
            {
                "id": f"c{len(REQUESTS)}",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": USAGE,
            }
        )
