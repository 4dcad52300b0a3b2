"""The stores behind OpenFlow's VECTOR_* nodes, one interface for all (`Store`):

- ``local`` (``default``, ``usearch``): the embedded USearch index of `vector_store.VectorIndex`
  (no LangChain needed);
- ``chroma``: Chroma, embedded, persistent in ``config.path`` (default ``.owf/chroma``), through
  ``langchain-chroma``; a collection per ``index_name``/``namespace``, cosine space;
- ``pinecone`` (``langchain-pinecone``: ``api_key`` or ``PINECONE_API_KEY``, ``index_name``,
  ``namespace``, optional ``host``) and ``weaviate`` (``langchain-weaviate``: ``url``, ``api_key``
  or ``WEAVIATE_API_KEY``, ``index_name``) when configured.

Every store but ``local`` goes through LangChain's ``VectorStore`` interface (``add_texts``,
``get_by_ids``, ``delete``, ``similarity_search_with_relevance_scores``). The nodes hand it vectors
they already have (a TEXT_EMBEDDING output): `Vectors`, the store's LangChain ``Embeddings``,
answers with those and embeds anything else with the node's embedder, so nothing is embedded
twice and a store never falls back on a default model of its own (Chroma's would download ONNX
weights). Scores are the store's relevance, cosine ``1 - distance`` on the local store and Chroma.
"""

from __future__ import annotations

import json
import os
import re
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from owf_magics.connectors.embeddings import DEFAULT_DIMENSIONS, Embedder
from owf_magics.errors import UnavailableError
from owf_magics.manifest.providers import VECTOR_STORES, installed, package_of

_guard = threading.Lock()
_locks: dict[str, threading.Lock] = {}
_clients: dict[str, Any] = {}
DEFAULT_PATH = ".owf/vectors"
QUERY = "\x00owf-query-vector"  # the text `Vectors` answers with the search vector


class Store(Protocol):
    @property
    def dims(self) -> int | None: ...  # the index's dimensions, when the store knows them
    @property
    def size(self) -> int | None: ...  # how many records, when the store knows it cheaply

    def upsert(self, items: list[dict[str, Any]]) -> None: ...
    def get(self, ids: list[str]) -> dict[str, dict[str, Any]]: ...
    def delete(self, ids: list[str]) -> list[str]: ...
    def search(self, vector: list[float], k: int) -> list[dict[str, Any]]: ...


def provider_of(config: Mapping[str, Any]) -> str:
    provider = str(config.get("provider") or "local").lower()
    if provider not in VECTOR_STORES:
        raise UnavailableError(
            f"vector store '{provider}' is not available in this engine",
            details={"provider": provider, "suggestion": f"use one of {', '.join(VECTOR_STORES)}"},
        )
    return provider


def _lock(key: str) -> threading.Lock:
    with _guard:
        return _locks.setdefault(key, threading.Lock())


def _names(config: Mapping[str, Any]) -> tuple[str, str]:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(config.get("index_name") or "default"))
    namespace = re.sub(r"[^A-Za-z0-9_.-]", "_", str(config.get("namespace") or "_"))
    return name, namespace


@contextmanager
def open_store(config: Mapping[str, Any], embedder: Embedder) -> Iterator[Store]:
    """The node's store, used under a per-index lock of this process (saved on exit)."""
    provider = provider_of(config)
    if provider in ("local", "default", "usearch"):
        name, namespace = _names(config)
        key = str(Path(str(config.get("path") or DEFAULT_PATH)).resolve() / name / namespace)
        if not installed("usearch"):
            raise UnavailableError(
                "the embedded vector store needs the usearch package",
                details={"provider": provider, "package": "usearch", "suggestion": "pip install 'owf-magics[vectors]'"},
            )
        with _lock(key):
            store = LocalStore(VectorIndex(dict(config)), bool(config.get("dimensions")))
            yield store
            if store.changed:
                store.index.save()
        return
    module = VECTOR_STORES[provider]
    if module and not installed(module):
        package = package_of(module)
        raise UnavailableError(
            f"vector store '{provider}' needs the {package} package",
            details={"provider": provider, "package": package, "suggestion": f"pip install {package}"},
        )
    vectors = _vectors_class()(embedder)
    name, namespace = _names(config)
    with _lock(f"{provider}:{config.get('path')}:{config.get('url')}:{name}:{namespace}"):
        if provider == "chroma":
            yield ChromaStore(_chroma(config, vectors), vectors)
        elif provider == "pinecone":
            yield PineconeStore(_pinecone(config, vectors), vectors, config.get("namespace"))
        else:
            client, weaviate_store = _weaviate(config, vectors)
            try:
                yield LangChainStore(weaviate_store, vectors)
            finally:
                client.close()


class VectorIndex:
    """One persistent index (see the module docstring). Use under `locked`."""

    def __init__(self, config: dict[str, Any]) -> None:
        from usearch.index import Index

        name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(config.get("index_name") or "default"))
        namespace = re.sub(r"[^A-Za-z0-9_.-]", "_", str(config.get("namespace") or "_"))
        self.dir = Path(str(config.get("path") or DEFAULT_PATH)) / name / namespace
        self.dims = int(config.get("dimensions") or DEFAULT_DIMENSIONS)
        self.records: dict[str, dict[str, Any]] = {}
        self.next_key = 1
        meta = self.dir / "records.json"
        if meta.exists():
            saved = json.loads(meta.read_text(encoding="utf-8"))
            self.records, self.next_key, self.dims = saved["records"], saved["next_key"], saved["dimensions"]
        self.index = Index(ndim=self.dims, metric="cos")
        if (self.dir / "index.usearch").exists():
            self.index.load(str(self.dir / "index.usearch"))

    def resize(self, dims: int) -> None:
        """An empty index for vectors of `dims` values."""
        from usearch.index import Index

        self.dims = dims
        self.index = Index(ndim=dims, metric="cos")

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.index.save(str(self.dir / "index.usearch"))
        payload = {"records": self.records, "next_key": self.next_key, "dimensions": self.dims}
        (self.dir / "records.json").write_text(json.dumps(payload), encoding="utf-8")

    def _vector(self, values: Any) -> Any:
        import numpy as np

        arr = np.asarray(values, dtype=np.float32)
        if arr.shape != (self.dims,):
            raise ValueError(f"a vector of this index has {self.dims} values, got {arr.size}")
        return arr

    def upsert(self, vid: str, values: Any, metadata: Any) -> None:
        vector = self._vector(values)
        old = self.records.get(vid)
        if old is not None:
            self.index.remove(old["key"])
        key = self.next_key
        self.next_key += 1
        self.index.add(key, vector)
        self.records[vid] = {"key": key, "metadata": metadata or {}, "values": [float(v) for v in vector]}

    def delete(self, vid: str) -> bool:
        old = self.records.pop(vid, None)
        if old is not None:
            self.index.remove(old["key"])
        return old is not None

    def search(self, values: Any, top_k: int) -> list[dict[str, Any]]:
        if not self.records:
            return []
        found = self.index.search(self._vector(values), min(top_k, len(self.records)))
        by_key = {r["key"]: (vid, r) for vid, r in self.records.items()}
        out = []
        for key, distance in zip(found.keys.tolist(), found.distances.tolist(), strict=False):
            if key in by_key:
                vid, rec = by_key[key]
                out.append(
                    {
                        "id": vid,
                        "score": round(1.0 - float(distance), 6),
                        "metadata": rec["metadata"],
                        "values": rec["values"],
                    }
                )
        return out


class LocalStore:
    def __init__(self, index: Any, fixed: bool) -> None:
        self.index = index
        self.fixed = fixed  # config.dimensions given
        self.changed = False
        self.dims: int | None = index.dims

    @property
    def size(self) -> int | None:
        return len(self.index.records)

    def upsert(self, items: list[dict[str, Any]]) -> None:
        if items and not self.index.records and not self.fixed:  # an empty index takes the vectors' size
            self.index.resize(len(items[0]["values"]))
            self.dims = self.index.dims
        self.changed = self.changed or bool(items)
        for item in items:
            self.index.upsert(str(item["id"]), item["values"], item.get("metadata"))

    def get(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        return {i: dict(self.index.records[i]) for i in ids if i in self.index.records}

    def delete(self, ids: list[str]) -> list[str]:
        deleted = [i for i in ids if self.index.delete(i)]
        self.changed = self.changed or bool(deleted)
        return deleted

    def search(self, vector: list[float], k: int) -> list[dict[str, Any]]:
        return list(self.index.search(vector, max(1, k)))


def _vectors_class() -> Any:
    from langchain_core.embeddings import Embeddings

    class Vectors(Embeddings):
        """A store's embeddings: the vectors the node already has (by text), else the embedder's."""

        def __init__(self, embedder: Embedder) -> None:
            self.embedder = embedder
            self.known: dict[str, list[list[float]]] = {}

        def give(self, text: str, vector: list[float]) -> None:
            self.known.setdefault(text, []).append([float(v) for v in vector])

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            out: list[list[float] | None] = [self.known[t].pop(0) if self.known.get(t) else None for t in texts]
            missing = [t for t, v in zip(texts, out, strict=True) if v is None]
            fresh = iter(self.embedder.documents(missing))
            return [v if v is not None else next(fresh) for v in out]

        def embed_query(self, text: str) -> list[float]:
            return self.embed_documents([text])[0]

    return Vectors


def _clean(metadata: Any) -> dict[str, Any]:
    """Metadata a store accepts: scalars kept, None dropped, anything else as JSON text."""
    out: dict[str, Any] = {}
    for k, v in (metadata or {}).items():
        if v is None:
            continue
        out[str(k)] = v if isinstance(v, str | int | float | bool) else json.dumps(v, sort_keys=True)
    return out


class LangChainStore:
    """A LangChain ``VectorStore`` under the nodes' semantics (see the module docstring)."""

    def __init__(self, store: Any, vectors: Any, with_values: bool = False) -> None:
        self.store, self.vectors, self.with_values = store, vectors, with_values
        self.dims: int | None = None
        self.size: int | None = None

    def upsert(self, items: list[dict[str, Any]]) -> None:
        if not items:
            return
        texts, metadatas, ids = [], [], []
        for item in items:
            metadata = _clean(item.get("metadata"))
            text = str(item.get("text") or metadata.get("text") or "")
            if item.get("values") is not None:
                self.vectors.give(text, item["values"])
            texts.append(text)
            metadatas.append(metadata)
            ids.append(str(item["id"]))
        self.store.delete(ids)  # an upsert on every store (some add duplicates)
        self.store.add_texts(texts, metadatas=metadatas, ids=ids)

    def get(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        return {
            str(d.id): {"metadata": dict(d.metadata), "values": None, "text": d.page_content}
            for d in self.store.get_by_ids(ids)
        }

    def delete(self, ids: list[str]) -> list[str]:
        found = [i for i in ids if i in self.get(ids)]
        if found:
            self.store.delete(found)
        return found

    def search(self, vector: list[float], k: int) -> list[dict[str, Any]]:
        self.vectors.give(QUERY, vector)
        # cosine relevance is 1 - distance, below 0 for opposed vectors (as on the local store)
        warnings.filterwarnings("ignore", "Relevance scores must be between 0 and 1", UserWarning)
        hits = self.store.similarity_search_with_relevance_scores(QUERY, k=max(1, k))
        values = self.get([str(d.id) for d, _ in hits]) if self.with_values and hits else {}
        out = []
        for doc, score in hits:
            metadata = dict(doc.metadata)
            if doc.page_content and "text" not in metadata:
                metadata["text"] = doc.page_content
            vid = str(doc.id if doc.id is not None else metadata.get("id"))
            out.append(
                {
                    "id": vid,
                    "score": round(float(score), 6),
                    "metadata": metadata,
                    "values": values.get(vid, {}).get("values"),
                }
            )
        return out


class ChromaStore(LangChainStore):
    """Chroma through ``langchain-chroma``, whose ``get`` returns the stored vectors too."""

    def __init__(self, store: Any, vectors: Any) -> None:
        super().__init__(store, vectors, with_values=True)

    def get(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        got = self.store.get(ids=ids, include=["embeddings", "metadatas", "documents"])
        rows = zip(got["ids"], got["embeddings"], got["metadatas"], got["documents"], strict=False)
        return {i: {"metadata": dict(m or {}), "values": [float(x) for x in v], "text": d} for i, v, m, d in rows}


class PineconeStore(LangChainStore):
    """Pinecone through ``langchain-pinecone``, which has no ``get_by_ids`` (records are fetched
    from its index) and scales cosine to ``(cos + 1) / 2`` (scores are turned back into cosine)."""

    def __init__(self, store: Any, vectors: Any, namespace: Any) -> None:
        super().__init__(store, vectors, with_values=True)
        self.namespace = str(namespace) if namespace else None

    def get(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        found = self.store.index.fetch(ids=ids, namespace=self.namespace).vectors or {}
        out = {}
        for vid, record in found.items():
            metadata = dict(record.metadata or {})
            out[str(vid)] = {
                "metadata": metadata,
                "values": [float(x) for x in record.values],
                "text": metadata.get("text"),
            }
        return out

    def search(self, vector: list[float], k: int) -> list[dict[str, Any]]:
        hits = super().search(vector, k)
        for hit in hits:
            hit["score"] = round(2 * hit["score"] - 1, 6)
        return hits


def _chroma(config: Mapping[str, Any], vectors: Any) -> Any:
    import chromadb
    from chromadb.config import Settings
    from langchain_chroma import Chroma

    # langchain-chroma makes its collections without a Chroma embedding function (we embed), which
    # chromadb calls "legacy" and warns about on every load: the warning is not the user's concern
    warnings.filterwarnings("ignore", "legacy embedding function config", DeprecationWarning)
    path = str(Path(str(config.get("path") or ".owf/chroma")).resolve())
    with _guard:
        client = _clients.get(path)
        if client is None:
            client = _clients[path] = chromadb.PersistentClient(
                path=path, settings=Settings(anonymized_telemetry=False)
            )
    name, namespace = _names(config)
    collection = f"{name}__{namespace}".strip("._-") or "default"
    collection = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", collection).ljust(3, "0")[:512]
    return Chroma(
        collection_name=collection,
        embedding_function=vectors,
        client=client,
        collection_configuration={"hnsw": {"space": "cosine"}},
    )


def _key(config: Mapping[str, Any], env: str, provider: str) -> str:
    key = config.get("api_key") or os.environ.get(env)
    if not key:
        raise UnavailableError(
            f"vector store '{provider}' needs an API key",
            details={"provider": provider, "suggestion": f"set {env}, or config.api_key"},
        )
    return str(key)


def _pinecone(config: Mapping[str, Any], vectors: Any) -> Any:
    from langchain_pinecone import PineconeVectorStore

    params: dict[str, Any] = {"pinecone_api_key": _key(config, "PINECONE_API_KEY", "pinecone")}
    if config.get("host"):
        params["host"] = str(config["host"])
    return PineconeVectorStore(
        index_name=str(config.get("index_name")),
        embedding=vectors,
        namespace=str(config["namespace"]) if config.get("namespace") else None,
        text_key="text",
        **params,
    )


def _weaviate(config: Mapping[str, Any], vectors: Any) -> tuple[Any, Any]:
    import weaviate
    from langchain_weaviate import WeaviateVectorStore

    url = config.get("url") or os.environ.get("WEAVIATE_URL")
    if not url:
        raise UnavailableError(
            "vector store 'weaviate' needs a URL",
            details={"provider": "weaviate", "suggestion": "set config.url or WEAVIATE_URL"},
        )
    auth = weaviate.classes.init.Auth.api_key(_key(config, "WEAVIATE_API_KEY", "weaviate"))
    client = weaviate.connect_to_weaviate_cloud(cluster_url=str(url), auth_credentials=auth)
    name, namespace = _names(config)
    index = re.sub(r"[^A-Za-z0-9_]", "_", name + ("" if namespace == "_" else f"_{namespace}"))
    index = index[:1].upper() + index[1:]  # a Weaviate class name
    return client, WeaviateVectorStore(client=client, index_name=index, text_key="text", embedding=vectors)
