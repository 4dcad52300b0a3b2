"""User LangChain callback handlers on the langchain backend: passed to the backend, or named in
the agent's ``execution.config.callbacks``; they see every chat-model and tool event."""

from __future__ import annotations

from owf_magics import OpenWorkflow
from owf_magics.backends.langchain import LangChainBackend
from tests.agent_fixtures import MATH, Recorder

EXPECTED = ["chat_model_start", "llm_end", "tool_start:calculator_add", "tool_end", "chat_model_start", "llm_end"]


def test_backend_callbacks_see_model_and_tool_events() -> None:
    Recorder.seen.clear()
    ow = OpenWorkflow(state=":memory:")
    ow.register_backend("langchain", LangChainBackend(callbacks=[Recorder()]))
    ow.load(MATH)
    res = ow.load_agent("mathbot").execute("2+3", backend="langchain")
    assert res.output == "The sum is 5"
    assert Recorder.seen == EXPECTED


def test_config_callbacks_name_importable_classes() -> None:
    Recorder.seen.clear()
    ow = OpenWorkflow(state=":memory:")
    ow.load(
        MATH.replace(
            "toolset: [connector:t/calculator@1.0.0]",
            "toolset: [connector:t/calculator@1.0.0]\n"
            "execution: {config: {callbacks: [tests.agent_fixtures.Recorder]}}",
        )
    )
    res = ow.load_agent("mathbot").execute("2+3", backend="langchain")
    assert res.output == "The sum is 5" and Recorder.seen == EXPECTED
    ow.load(
        MATH.replace("name: mathbot", "name: broken").replace(
            "toolset: [connector:t/calculator@1.0.0]",
            "toolset: [connector:t/calculator@1.0.0]\nexecution: {config: {callbacks: [no.such.Handler]}}",
        )
    )
    bad = ow.load_agent("broken").execute("2+3", backend="langchain")
    assert bad.status == "failed" and bad.error.code == "VALIDATION" and "no.such.Handler" in bad.error.message
