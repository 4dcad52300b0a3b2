"""A one-tool agent with a scripted model (two turns, exact usage), shared by the agent tests."""

from __future__ import annotations

from typing import ClassVar

MATH = """
type: connector
name: calculator
namespace: t
version: 1.0.0
kind: sdk
actions:
  - name: add
    description: Add two numbers
    input: {type: object, properties: {a: {type: number}, b: {type: number}}, required: [a, b]}
    handler: {function: owf_magics.demo_tools.calculator_add}
---
type: agent
name: mathbot
namespace: t
version: 1.0.0
toolset: [connector:t/calculator@1.0.0]
personality: {systemPrompt: You add numbers with the tool.}
model:
  provider: scripted
  id: scripted-math
  pricing: {prompt: 0.5, completion: 1.5}
  responses:
    - tool_calls: [{name: calculator_add, args: {a: 2, b: 3}}]
      usage: {prompt_tokens: 30, completion_tokens: 12}
    - content: "The sum is 5"
      usage: {prompt_tokens: 55, completion_tokens: 6}
"""

WORKFLOW = """
---
type: workflow
name: ask-math
inputs: {q: {type: string}}
steps:
  - {id: ask, type: agent, agent: agent:t/mathbot@1.0.0, input: "{{ inputs.q }}"}
outputs:
  answer: {value: "{{ steps.ask.output }}"}
"""


def recorder_class() -> type:
    """A LangChain callback handler recording the chat-model and tool events it receives."""
    from langchain_core.callbacks import BaseCallbackHandler

    class Recorder(BaseCallbackHandler):
        seen: ClassVar[list[str]] = []

        def on_chat_model_start(self, serialized, messages, **kwargs):  # type: ignore[no-untyped-def]
            Recorder.seen.append("chat_model_start")

        def on_llm_end(self, response, **kwargs):  # type: ignore[no-untyped-def]
            Recorder.seen.append("llm_end")

        def on_tool_start(self, serialized, input_str, **kwargs):  # type: ignore[no-untyped-def]
            Recorder.seen.append(f"tool_start:{serialized.get('name')}")

        def on_tool_end(self, output, **kwargs):  # type: ignore[no-untyped-def]
            Recorder.seen.append("tool_end")

    return Recorder


Recorder = recorder_class()
