"""Providers through LangChain's registries (manifest/providers.py): any provider init_chat_model
knows is accepted, a missing package is UNAVAILABLE naming it, and the OpenAI-compatible ones
(grok, azure, openai_compatible) and a registry provider (azure_openai) answer from a local
chat-completions server on 127.0.0.1 with exact usage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from owf_magics import OpenWorkflow
from owf_magics.agents.providers import make_model
from owf_magics.errors import ManifestError, UnavailableError
from owf_magics.manifest.models import ModelSpec
from owf_magics.manifest.providers import CHAT_MODULES, chat_module, known_chat_provider, package_of
from tests import chat_server
from tests.local_http import serve

pytest.importorskip("langchain_openai")


def flow(config: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "ask",
        "version": "1.0.0",
        "variables": [{"id": "q", "type": "string"}, {"id": "answer", "type": "string", "default": ""}],
        "input": ["q"],
        "output": ["answer"],
        "nodes": [
            {
                "id": "llm",
                "type": "LLM",
                "name": "Ask",
                "config": {"model": "some-model", "max_retries": 0, **config},
                "messages": [{"type": "text", "role": "user", "text": "{{@q}}"}],
                "output": {"answer": {"type": "string", "description": "the answer"}},
            },
            {
                "id": "keep",
                "type": "UPDATE_VARIABLE",
                "name": "Keep",
                "config": {"type": "update", "variable_id": "answer"},
                "value": "{{llm.answer}}",
            },
        ],
    }


@pytest.mark.parametrize(
    ("provider", "package"),
    [("bedrock", "langchain-aws"), ("mistralai", "langchain-mistralai"), ("cohere", "langchain-cohere")],
)
def test_an_uninstalled_provider_names_its_package(provider: str, package: str) -> None:
    assert known_chat_provider(provider)
    with pytest.raises(UnavailableError) as err:
        make_model(ModelSpec(provider=provider, id="m"))
    assert err.value.details["package"] == package
    assert err.value.details["suggestion"] == f"pip install {package}"
    ow = OpenWorkflow(state=":memory:")
    ow.load(flow({"provider": provider}))  # accepted at load: LangChain knows it
    res = ow.workflow("ask").execute(inputs={"q": "hi"})
    assert res.status == "failed"
    error = res.steps["llm"].error
    assert (error.code, error.details["package"]) == ("UNAVAILABLE", package)


def test_every_registry_provider_maps_to_its_package() -> None:
    assert package_of(CHAT_MODULES["bedrock_converse"]) == "langchain-aws"
    assert package_of("langchain_azure_ai.chat_models") == "langchain-azure-ai"
    from langchain.chat_models import base

    live = getattr(base, "_BUILTIN_PROVIDERS", {})
    for provider, entry in live.items():  # the installed langchain's registry agrees with ours
        assert chat_module(provider) is not None
        assert package_of(str(chat_module(provider))) == package_of(entry[0])


def test_an_unknown_provider_is_refused_at_load_and_unavailable_at_run() -> None:
    with pytest.raises(ManifestError) as err:
        OpenWorkflow(state=":memory:").load(flow({"provider": "nobody"}))
    assert [d.code for d in err.value.diagnostics] == ["UNKNOWN_PROVIDER"]
    with pytest.raises(UnavailableError) as unavailable:
        make_model(ModelSpec(provider="nobody", id="m"))
    assert "package" not in unavailable.value.details


@pytest.mark.parametrize("backend", ["native", "langchain"])
@pytest.mark.parametrize("provider", ["grok", "azure", "openai_compatible", "openai"])
def test_openai_compatible_providers_answer_through_a_base_url(provider: str, backend: str) -> None:
    chat_server.REQUESTS.clear()
    with serve(chat_server.ChatHandler) as base:
        ow = OpenWorkflow(state=":memory:")
        ow.load(flow({"provider": provider, "base_url": f"{base}/v1", "api_key": f"key-{provider}"}))
        res = ow.workflow("ask").execute(inputs={"q": "hello"}, prefer_backend=backend)
    assert res.status == "completed", res.error
    assert res.outputs == {"answer": "plain"}
    (row,) = res.usage.to_dict("records")
    assert (row["provider"], row["prompt_tokens"], row["completion_tokens"], bool(row["estimated"])) == (
        provider,
        17,
        4,
        False,
    )
    (req,) = chat_server.REQUESTS
    assert req["path"] == "/v1/chat/completions"
    assert req["auth"] == f"Bearer key-{provider}"
    assert req["body"]["model"] == "some-model"
    assert req["body"]["messages"][-1]["content"] == "hello"


def test_grok_defaults_to_its_endpoint_and_a_compatible_provider_needs_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XAI_API_KEY", raising=False)
    with pytest.raises(UnavailableError) as err:
        make_model(ModelSpec(provider="grok", id="grok-4"))
    assert "XAI_API_KEY" in err.value.details["suggestion"]
    grok = make_model(ModelSpec(provider="grok", id="grok-4", providerConfig={"api_key": "k"}))
    assert grok.chat.openai_api_base == "https://api.x.ai/v1"  # its endpoint unless base_url says otherwise
    with pytest.raises(UnavailableError) as err:
        make_model(ModelSpec(provider="azure", id="gpt-4o", providerConfig={"api_key": "k"}))
    assert "base_url" in err.value.details["suggestion"]
    # without a key, an openai_compatible endpoint (a local server) is still called
    chat_server.REQUESTS.clear()
    with serve(chat_server.ChatHandler) as base:
        ow = OpenWorkflow(state=":memory:")
        ow.load(flow({"provider": "openai_compatible", "base_url": base}))
        assert ow.workflow("ask").execute(inputs={"q": "x"}).status == "completed"
    assert chat_server.REQUESTS[0]["path"] == "/chat/completions"


def test_a_registry_provider_goes_through_init_chat_model() -> None:
    """azure_openai is init_chat_model's (AzureChatOpenAI): its deployment path on the local server."""
    chat_server.REQUESTS.clear()
    with serve(chat_server.ChatHandler) as base:
        config = {
            "provider": "azure_openai",
            "api_key": "az-key",
            "provider_config": {"azure_endpoint": base, "api_version": "2024-10-21", "azure_deployment": "dep1"},
        }
        ow = OpenWorkflow(state=":memory:")
        ow.load(flow(config))
        res = ow.workflow("ask").execute(inputs={"q": "hello"})
    assert res.status == "completed", res.error
    (row,) = res.usage.to_dict("records")
    assert (row["prompt_tokens"], row["completion_tokens"]) == (17, 4)
    (req,) = chat_server.REQUESTS
    assert req["path"].startswith("/openai/deployments/dep1/chat/completions")


def test_validate_check_backends_names_a_missing_provider_package(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from owf_magics.cli import main

    bedrock = tmp_path / "bedrock.yaml"
    bedrock.write_text("type: agent\nname: rock\nmodel: {provider: bedrock, id: anthropic.claude-3}\n")
    compatible = tmp_path / "local.yaml"
    compatible.write_text("type: agent\nname: loc\nmodel: {provider: openai_compatible, id: m}\n")
    assert main(["validate", str(bedrock)]) == 0  # LangChain knows it: loading accepts it
    capsys.readouterr()
    assert main(["validate", str(bedrock), "--check-backends"]) == 1
    out = capsys.readouterr().out
    assert "PROVIDER_UNAVAILABLE" in out and "pip install langchain-aws" in out and "agent:local/rock@1.0.0" in out
    assert main(["validate", str(compatible), "--check-backends"]) == 0
