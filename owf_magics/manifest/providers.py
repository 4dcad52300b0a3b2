"""Which model and embedding providers a manifest may name, and the package each one needs.

Chat models go through LangChain's ``init_chat_model`` and embeddings through ``init_embeddings``:
every provider their registries know is accepted (``bedrock``, ``mistralai``, ``groq``...). The
tables below are those registries as of langchain 1.5 (provider -> module that holds the class),
so loading a manifest imports no LangChain; a provider missing from them is looked up in the
installed langchain's own registry before it is called unknown.

Besides them, OpenAI-compatible endpoints are reached through a base URL with the OpenAI client
(``langchain-openai``): ``grok`` (default base URL ``https://api.x.ai/v1``), ``azure`` (an Azure
OpenAI resource's v1 endpoint, ``https://RESOURCE.openai.azure.com/openai/v1/``), ``nvidia``
embeddings (``https://integrate.api.nvidia.com/v1``) and ``openai_compatible`` (any server
speaking chat-completions or embeddings: vLLM, Ollama's /v1, LM Studio, a local test server).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from typing import Any

#: providers that run offline in the engine itself
OFFLINE = ("echo", "scripted")

#: init_chat_model's registry: provider -> module holding the chat model class
CHAT_MODULES: dict[str, str] = {
    "anthropic": "langchain_anthropic",
    "anthropic_bedrock": "langchain_aws",
    "azure_ai": "langchain_azure_ai",
    "azure_openai": "langchain_openai",
    "baseten": "langchain_baseten",
    "bedrock": "langchain_aws",
    "bedrock_converse": "langchain_aws",
    "bedrock_mantle_anthropic": "langchain_aws",
    "bedrock_mantle_openai": "langchain_aws",
    "cohere": "langchain_cohere",
    "deepseek": "langchain_deepseek",
    "fireworks": "langchain_fireworks",
    "google_anthropic_vertex": "langchain_google_vertexai",
    "google_genai": "langchain_google_genai",
    "google_vertexai": "langchain_google_vertexai",
    "groq": "langchain_groq",
    "huggingface": "langchain_huggingface",
    "ibm": "langchain_ibm",
    "langsmith": "langchain_openai",
    "litellm": "langchain_litellm",
    "meta": "langchain_meta",
    "mistralai": "langchain_mistralai",
    "nvidia": "langchain_nvidia_ai_endpoints",
    "ollama": "langchain_ollama",
    "openai": "langchain_openai",
    "openrouter": "langchain_openrouter",
    "perplexity": "langchain_perplexity",
    "together": "langchain_together",
    "upstage": "langchain_upstage",
    "xai": "langchain_xai",
}

#: init_embeddings' registry: provider -> module holding the embeddings class
EMBEDDING_MODULES: dict[str, str] = {
    "azure_ai": "langchain_azure_ai",
    "azure_openai": "langchain_openai",
    "bedrock": "langchain_aws",
    "cohere": "langchain_cohere",
    "google_genai": "langchain_google_genai",
    "google_vertexai": "langchain_google_vertexai",
    "huggingface": "langchain_huggingface",
    "mistralai": "langchain_mistralai",
    "ollama": "langchain_ollama",
    "openai": "langchain_openai",
}

#: OpenAI-compatible providers reached through a base URL (None: the manifest must give one)
COMPATIBLE: dict[str, str | None] = {
    "grok": "https://api.x.ai/v1",
    "azure": None,
    "openai_compatible": None,
}
#: the same for embeddings (Nvidia's and Microsoft's endpoints speak OpenAI's embeddings API)
COMPATIBLE_EMBEDDINGS: dict[str, str | None] = {
    "nvidia": "https://integrate.api.nvidia.com/v1",
    "azure": None,
    "microsoft": None,
    "openai_compatible": None,
}
#: the environment variable holding each compatible provider's key, when it has a usual one
COMPATIBLE_KEYS = {"grok": "XAI_API_KEY", "nvidia": "NVIDIA_API_KEY", "azure": "AZURE_OPENAI_API_KEY"}
COMPATIBLE_KEYS["microsoft"] = COMPATIBLE_KEYS["azure"]


def package_of(module: str) -> str:
    """The pip package that provides `module` (``langchain_aws.x`` -> ``langchain-aws``)."""
    return module.split(".", 1)[0].replace("_", "-")


@functools.cache
def _live(kind: str) -> dict[str, str]:
    """The installed langchain's registry (``chat`` or ``embeddings``), {} without langchain."""
    name = "langchain.chat_models.base" if kind == "chat" else "langchain.embeddings.base"
    if importlib.util.find_spec("langchain") is None:
        return {}
    try:
        table = getattr(importlib.import_module(name), "_BUILTIN_PROVIDERS", None)
    except ImportError:
        return {}
    if not isinstance(table, dict):
        return {}
    return {str(k): str(v[0]) for k, v in table.items() if isinstance(v, tuple) and v}


def chat_module(provider: str) -> str | None:
    """The module a chat provider needs: OpenAI's for the compatible ones, None when unknown."""
    if provider in COMPATIBLE:
        return "langchain_openai"
    return CHAT_MODULES.get(provider) or _live("chat").get(provider)


def embedding_module(provider: str) -> str | None:
    """The module an embedding provider needs (see `chat_module`)."""
    if provider in COMPATIBLE_EMBEDDINGS:
        return "langchain_openai"
    return EMBEDDING_MODULES.get(provider) or _live("embeddings").get(provider)


def known_chat_provider(provider: str) -> bool:
    return provider in OFFLINE or chat_module(provider) is not None


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module.split(".", 1)[0]) is not None
    except (ImportError, ValueError):
        return False


def compatible_params(provider: str, config: dict[str, Any], table: dict[str, str | None]) -> str | None:
    """The base URL of a compatible provider: ``base_url`` (or ``endpoint``/``azure_endpoint``) in
    `config` (popped), else the provider's default; None when neither is given."""
    url = config.pop("base_url", None) or config.pop("endpoint", None) or config.pop("azure_endpoint", None)
    return str(url) if url else table.get(provider)


#: the offline embedder's names (connectors/vector_store.py)
LOCAL_EMBEDDINGS = ("local", "default", "usearch", "hashing")
#: vector stores: the embedded default (USearch, no LangChain) and LangChain VectorStores -> module
VECTOR_STORES: dict[str, str | None] = {
    "local": None,
    "default": None,
    "usearch": None,
    "chroma": "langchain_chroma",
    "pinecone": "langchain_pinecone",
    "weaviate": "langchain_weaviate",
}


def known_embedding_provider(provider: str) -> bool:
    return provider in LOCAL_EMBEDDINGS or embedding_module(provider) is not None
