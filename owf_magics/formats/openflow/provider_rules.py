"""The load-time checks of an OpenFlow node's providers and tool selection (called by the
validator): an LLM node's ``tools.tool_selection`` (``auto`` | ``manual``; ``manual`` needs
``available_tools``), a vector node's store and a TEXT_EMBEDDING node's embedding provider."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from owf_magics.manifest.providers import VECTOR_STORES, known_embedding_provider

TOOL_SELECTION = ("auto", "manual")

#: (code, message, the mapping holding the problem, its key or None)
Problem = tuple[str, str, Any, str | None]


def llm_tools(node: Mapping[str, Any]) -> list[Problem]:
    config = node.get("config")
    tools = config.get("tools", node.get("tools")) if isinstance(config, Mapping) else node.get("tools")
    if not isinstance(tools, Mapping) or "tool_selection" not in tools:
        return []
    selection = tools["tool_selection"]
    if selection not in TOOL_SELECTION:
        return [("INVALID_VALUE", f"tool_selection {selection!r} is not one of auto, manual", tools, "tool_selection")]
    available = tools.get("available_tools")
    if selection == "manual" and not (isinstance(available, list) and available):
        return [
            (
                "MISSING_REQUIRED_FIELD",
                "tool_selection 'manual' needs 'available_tools' (the tools the model must choose from)",
                tools,
                "tool_selection",
            )
        ]
    return []


def vector_provider(node: Mapping[str, Any]) -> list[Problem]:
    config = node.get("config")
    if not isinstance(config, Mapping) or "provider" not in config:
        return []  # the missing field is reported by the validator
    provider = config["provider"]
    if isinstance(provider, str) and "{{" in provider:
        return []  # known at run time
    if node.get("type") == "TEXT_EMBEDDING":
        if isinstance(provider, str) and known_embedding_provider(provider.lower()):
            return []
        what = "an embedding provider LangChain's init_embeddings knows (or local, nvidia, azure, openai_compatible)"
    else:
        if isinstance(provider, str) and provider.lower() in VECTOR_STORES:
            return []
        what = f"a vector store of this engine ({', '.join(VECTOR_STORES)})"
    return [("UNKNOWN_PROVIDER", f"provider {provider!r} is not {what}", config, "provider")]
