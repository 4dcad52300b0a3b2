"""``owf validate --check-backends`` for model providers: an agent whose ``model.provider`` needs a
package that is not installed (``bedrock`` -> ``langchain-aws``), or that no registry knows, is a
problem before anything runs (manifest/providers.py)."""

from __future__ import annotations

from typing import Any

from owf_magics.manifest import providers as registry
from owf_magics.manifest.catalog import Loaded


def provider_problems(item: Loaded[Any]) -> list[dict[str, Any]]:
    """``PROVIDER_UNAVAILABLE`` problems of one loaded manifest (none for non-agents)."""
    spec = getattr(item.model, "model", None)
    provider = getattr(spec, "provider", None)
    if not isinstance(provider, str) or provider in registry.OFFLINE:
        return []
    where = {"ref": item.ref, "step_id": None, "file": item.file, "line": None}
    module = registry.chat_module(provider)
    if module is None:
        return [
            {
                "code": "PROVIDER_UNAVAILABLE",
                "message": f"model provider '{provider}' of {item.ref} is not one LangChain's init_chat_model knows",
                "hint": "name a provider of init_chat_model, or openai_compatible with providerConfig.base_url",
                **where,
            }
        ]
    missing = [m for m in (module, "langchain") if not registry.installed(m)]
    if module == "langchain_openai":
        missing = [m for m in missing if m != "langchain"]  # OpenAI and compatible ones do not need it
    if not missing:
        return []
    packages = [registry.package_of(m) for m in missing]
    return [
        {
            "code": "PROVIDER_UNAVAILABLE",
            "message": f"model provider '{provider}' of {item.ref} needs {', '.join(packages)}",
            "hint": f"pip install {' '.join(packages)}",
            **where,
        }
    ]
