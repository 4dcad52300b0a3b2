"""OpenFlow's TEXT_EMBEDDING and VECTOR_* nodes (called as ``function`` handlers of the converted
flow's ``openflow/ops`` connector), with the same semantics on every store.

- Embeddings (`embeddings.py`): ``provider: local`` (the default) is a deterministic offline
  embedder (feature hashing, 256 dimensions); ``openai``, the OpenAI-compatible providers and any
  provider of LangChain's ``init_embeddings``.
- Stores (`vector_stores.py`): ``provider: local`` is an HNSW index of USearch (docs/decisions.md)
  in ``config.path`` (default ``.owf/vectors``), one per ``index_name``/``namespace``,
  ``index.usearch`` plus ``records.json``; ``chroma`` (embedded, persistent), ``pinecone`` and
  ``weaviate`` through LangChain's VectorStore interface. Cosine similarity, scores ``1 - distance``.

A vector node embeds text (``search_text``, an update without values) with ``config.embedding``
(an embedding config as TEXT_EMBEDDING's; default the offline embedder at the index's dimensions).
"""

from __future__ import annotations

from typing import Any

from owf_magics.connectors.embeddings import DEFAULT_DIMENSIONS, Embedder, embed, make_embedder
from owf_magics.connectors.vector_stores import DEFAULT_PATH, VectorIndex, open_store, provider_of

__all__ = [
    "DEFAULT_DIMENSIONS",
    "DEFAULT_PATH",
    "VectorIndex",
    "embed",
    "text_embedding",
    "vector_delete",
    "vector_insert",
    "vector_search",
    "vector_update",
]


def text_embedding(config: Any = None, input: Any = None) -> dict[str, Any]:
    """TEXT_EMBEDDING: ``input`` with ``text``, ``texts`` or ``items`` ({id, text, metadata})."""
    config = dict(config or {})
    embedder = make_embedder(config)
    data = input or {}
    items: list[dict[str, Any]] = []
    if isinstance(data.get("items"), list):
        items = [dict(i) for i in data["items"] if isinstance(i, dict)]
    elif isinstance(data.get("texts"), list):
        items = [{"id": f"text_{i}", "text": t} for i, t in enumerate(data["texts"])]
    elif data.get("text") is not None:
        items = [{"id": "text_0", "text": data["text"]}]
    texts = [str(i.get("text", "")) for i in items]
    vectors = embedder.documents(texts)
    out: list[dict[str, Any]] = [
        {"id": str(i.get("id")), "text": text, "embedding": vec, "metadata": i.get("metadata") or {}}
        for i, text, vec in zip(items, texts, vectors, strict=True)
    ]
    tokens = embedder.tokens(texts)
    usage: dict[str, Any] = {"prompt_tokens": tokens, "total_tokens": tokens}
    if embedder.estimated:
        usage["estimated"] = True
    result: dict[str, Any] = {"embeddings": out, "usage": usage, "provider": embedder.provider}
    if embedder.model:
        result["model"] = embedder.model
    if len(out) == 1:
        result["embedding"] = out[0]["embedding"]
    return result


def _embeddings(data: dict[str, Any], single: str, many: str) -> list[dict[str, Any]]:
    items: list[Any] = []
    if isinstance(data.get(many), list):
        items = list(data[many])
    elif isinstance(data.get(single), dict):
        items = [data[single]]
    source = data.get("source")
    if not items and isinstance(source, dict):  # a TEXT_EMBEDDING node's output
        items = [
            {"id": e["id"], "values": e["embedding"], "metadata": {**(e.get("metadata") or {}), "text": e.get("text")}}
            for e in source.get("embeddings") or []
        ]
    return [i for i in items if isinstance(i, dict)]


def _query_embedder(config: dict[str, Any], dims: int | None) -> Embedder:
    """``config.embedding``, else the offline embedder at the index's dimensions."""
    spec = config.get("embedding")
    if isinstance(spec, dict):
        return make_embedder(spec)
    return make_embedder({"provider": "local", "dimensions": dims or config.get("dimensions") or DEFAULT_DIMENSIONS})


def _text_of(item: dict[str, Any]) -> str:
    metadata = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
    return str(item.get("text") or (metadata or {}).get("text") or "")


def vector_insert(config: Any = None, input: Any = None) -> dict[str, Any]:
    """VECTOR_INSERT: ``embedding``, ``embeddings`` ({id, values, metadata}) or ``source`` (a TEXT_EMBEDDING
    output); an item without ``values`` is embedded from its ``text`` (or ``metadata.text``)."""
    config = dict(config or {})
    provider_of(config)
    items = _embeddings(input or {}, "embedding", "embeddings")
    embedder = _query_embedder(config, None)
    missing = [i for i in items if i.get("values") is None]
    for item, vector in zip(missing, embedder.documents([_text_of(i) for i in missing]), strict=True):
        item["values"] = vector
    rows = [{**i, "id": str(i.get("id")), "text": _text_of(i)} for i in items]
    with open_store(config, embedder) as store:
        store.upsert(rows)
    return {"inserted_count": len(rows), "ids": [r["id"] for r in rows], "index_name": config.get("index_name")}


def vector_update(config: Any = None, input: Any = None) -> dict[str, Any]:
    """VECTOR_UPDATE: ``update`` or ``updates`` ({id, values, metadata}); values kept when absent
    (re-embedded from the text on a store that does not return its vectors); unknown ids skipped."""
    config = dict(config or {})
    provider_of(config)
    items = _embeddings(input or {}, "update", "updates")
    embedder = _query_embedder(config, None)
    updated: list[str] = []
    with open_store(config, embedder) as store:
        old = store.get([str(i.get("id")) for i in items])
        rows = []
        for item in items:
            vid = str(item.get("id"))
            if vid not in old:
                continue
            before = old[vid]
            metadata = {**(before.get("metadata") or {}), **(item.get("metadata") or {})}
            text = str(metadata.get("text") or before.get("text") or "")
            values = item.get("values") or before.get("values") or embedder.query(text)
            rows.append({"id": vid, "values": values, "metadata": metadata, "text": text})
            updated.append(vid)
        store.upsert(rows)
    return {"updated_count": len(updated), "ids": updated}


def vector_delete(config: Any = None, input: Any = None) -> dict[str, Any]:
    """VECTOR_DELETE: ``ids``; the ids that were there."""
    config = dict(config or {})
    provider_of(config)
    ids = [str(i) for i in (input or {}).get("ids") or []]
    with open_store(config, _query_embedder(config, None)) as store:
        deleted = store.delete(ids)
    return {"deleted_count": len(deleted), "ids": deleted}


def vector_search(config: Any = None, input: Any = None) -> dict[str, Any]:
    """VECTOR_SEARCH: ``search_vector`` (values, or an object with ``values``/``embedding``) or
    ``search_text`` (embedded with ``config.embedding``); ``top_k``, ``similarity_threshold``,
    ``filter`` (metadata equality, applied to the nearest ``max(top_k * 20, 200)`` on a
    LangChain store, to every record on the local one)."""
    config = dict(config or {})
    provider_of(config)
    data = input or {}
    vector = data.get("search_vector")
    if isinstance(vector, dict):
        vector = vector.get("values") or vector.get("embedding")
    top_k = int(config.get("top_k") or data.get("top_k") or 10)
    wanted = config.get("filter") if isinstance(config.get("filter"), dict) else {}
    embedder = _query_embedder(config, None)
    with open_store(config, embedder) as store:
        if vector is None:
            if data.get("search_text") is None:
                raise ValueError("VECTOR_SEARCH needs input.search_vector or input.search_text")
            query = _query_embedder(config, store.dims) if store.dims else embedder
            vector = query.query(str(data["search_text"]))
        # with a filter: every record when the store says how many, else a wide neighbourhood
        k = top_k if not wanted else store.size if store.size is not None else max(top_k * 20, 200)
        matches = store.search([float(v) for v in vector], k) if k else []
    matches = [m for m in matches if all(m["metadata"].get(f) == v for f, v in wanted.items())][:top_k]
    threshold = config.get("similarity_threshold")
    if isinstance(threshold, int | float):
        matches = [m for m in matches if m["score"] >= threshold]
    scores = [m["score"] for m in matches]
    return {
        "results": matches,
        "query_vector": [float(v) for v in vector],
        "search_metadata": {
            "total_matches": len(matches),
            "max_score": max(scores, default=0),
            "min_score": min(scores, default=0),
        },
    }
