"""Embedding models for OpenFlow's TEXT_EMBEDDING and VECTOR_SEARCH nodes.

``provider: local`` (the default) is the deterministic offline embedder of `vector_store.embed`.
``openai`` and the OpenAI-compatible providers (``nvidia``, ``azure``/``microsoft``,
``openai_compatible``; a base URL, ``manifest/providers.py``) use ``langchain-openai``'s
``OpenAIEmbeddings``; any other provider LangChain's ``init_embeddings`` knows goes through it.
A provider whose package is missing is UNAVAILABLE naming the package.

Hosted embeddings send the texts as strings (``check_embedding_ctx_length`` off: the token check
would fetch tiktoken's tables from the network) and their token usage is estimated (LangChain's
embeddings interface does not return the provider's count).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from owf_magics.errors import UnavailableError
from owf_magics.manifest import providers as registry

DEFAULT_DIMENSIONS = 256


def embed(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """The offline embedding of `text`: feature hashing of words and character trigrams with
    BLAKE2b, signed, L2-normalised (the same text gives the same vector on every machine, and texts
    sharing words are close)."""
    vec = [0.0] * dimensions
    words = re.findall(r"\w+", str(text).lower())
    features = words + [w[i : i + 3] for w in words if len(w) > 3 for i in range(len(w) - 2)]
    for feature in features:
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        slot = int.from_bytes(digest[:4], "little") % dimensions
        vec[slot] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


class Embedder:
    """Texts to vectors: ``documents(texts)``, ``query(text)``; ``tokens(texts)`` their usage."""

    def __init__(self, provider: str, model: str | None, dims: int | None, fn: Callable[[list[str]], Any]) -> None:
        self.provider, self.model, self.dims = provider, model, dims
        self._fn = fn
        self.estimated = provider not in registry.LOCAL_EMBEDDINGS

    def documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return [[float(v) for v in vec] for vec in self._fn(texts)]

    def query(self, text: str) -> list[float]:
        return self.documents([text])[0]

    def tokens(self, texts: list[str]) -> int:
        if self.estimated:  # about four characters a token, as the agents' estimate
            return sum(max(1, math.ceil(len(t) / 4)) for t in texts if t)
        return sum(len(re.findall(r"\w+", t)) for t in texts)


def _unavailable(provider: str, message: str, package: str | None = None, **details: Any) -> UnavailableError:
    info: dict[str, Any] = {"provider": provider, **details}
    if package:
        info["package"] = package
        info["suggestion"] = f"pip install {package}"
    return UnavailableError(message, details=info)


def make_embedder(config: Mapping[str, Any] | None) -> Embedder:
    """The embedder for a node's config: ``provider``, ``model``, ``dimensions``, ``base_url``,
    ``api_key``, ``provider_config`` (passed to the LangChain class)."""
    config = dict(config or {})
    provider = str(config.get("provider") or "local").lower()
    dims = int(config["dimensions"]) if config.get("dimensions") else None
    if provider in registry.LOCAL_EMBEDDINGS:
        size = dims or DEFAULT_DIMENSIONS
        return Embedder(provider, config.get("model"), size, lambda texts: [embed(t, size) for t in texts])
    module = registry.embedding_module(provider)
    if module is None:
        raise _unavailable(
            provider,
            f"embedding provider '{provider}' is not one LangChain's init_embeddings knows",
            suggestion="use provider local, openai, openai_compatible (with base_url) or one of init_embeddings",
        )
    package = registry.package_of(module)
    if not registry.installed(module):
        raise _unavailable(provider, f"embedding provider '{provider}' needs the {package} package", package)
    model = str(config.get("model") or "")
    extra = dict(config.get("provider_config") or {}) if isinstance(config.get("provider_config"), Mapping) else {}
    for key in ("base_url", "api_key", "max_retries"):
        if key in config:
            extra[key] = config[key]
    if provider == "openai" or provider in registry.COMPATIBLE_EMBEDDINGS:
        lc = _openai(provider, model, dims, extra)
    else:
        if not registry.installed("langchain"):
            raise _unavailable(provider, f"embedding provider '{provider}' needs the langchain package", "langchain")
        from langchain.embeddings import init_embeddings

        try:
            lc = init_embeddings(model, provider=provider, **extra)
        except ImportError as exc:
            raise _unavailable(
                provider, f"embedding provider '{provider}' needs the {package} package", package
            ) from exc
        except Exception as exc:  # the provider's own checks (a missing key or setting)
            raise _unavailable(provider, f"embedding provider '{provider}' could not be configured: {exc}") from exc
    return Embedder(provider, model, dims, lc.embed_documents)


def _openai(provider: str, model: str, dims: int | None, extra: dict[str, Any]) -> Any:
    from langchain_openai import OpenAIEmbeddings

    if provider in registry.COMPATIBLE_EMBEDDINGS:
        base_url = registry.compatible_params(provider, extra, registry.COMPATIBLE_EMBEDDINGS)
        if not base_url:
            raise _unavailable(provider, f"embedding provider '{provider}' needs a base URL", suggestion="set base_url")
        extra["base_url"] = base_url
        env = registry.COMPATIBLE_KEYS.get(provider)
        key = extra.get("api_key") or (os.environ.get(env) if env else None)
        if not key and provider != "openai_compatible":
            raise _unavailable(provider, f"embedding provider '{provider}' needs an API key", suggestion=f"set {env}")
        extra["api_key"] = key or os.environ.get("OPENAI_API_KEY") or "unused"
    elif not (extra.get("api_key") or os.environ.get("OPENAI_API_KEY")):
        raise _unavailable(provider, "embedding provider 'openai' needs an API key", suggestion="set OPENAI_API_KEY")
    params: dict[str, Any] = {"model": model or "text-embedding-3-small", "check_embedding_ctx_length": False}
    if dims:
        params["dimensions"] = dims
    return OpenAIEmbeddings(**params, **extra)
