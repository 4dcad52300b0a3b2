"""The embedded vector store and the offline embedder behind OpenFlow's TEXT_EMBEDDING and VECTOR_*
nodes (called as ``function`` handlers of the converted flow's ``openflow/ops`` connector).

- `embed`: a deterministic offline embedder (feature hashing of words and character trigrams
  with BLAKE2b, signed, L2-normalised): the same text gives the same vector on every machine, and
  texts sharing words are close. It is the default ``provider: local``.
- `VectorIndex`: one index per ``index_name``/``namespace`` in a directory (``config.path``, default
  ``.owf/vectors``), an HNSW index of USearch (docs/decisions.md) in ``index.usearch`` plus
  ``records.json`` (string ids, metadata, values). Cosine similarity; scores are ``1 - distance``.

Hosted providers (Pinecone, OpenAI embeddings) are not wired yet: they fail with UNAVAILABLE.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from pathlib import Path
from typing import Any

from owf_magics.errors import UnavailableError

DEFAULT_DIMENSIONS = 256
DEFAULT_PATH = ".owf/vectors"
LOCAL = ("local", "default", "usearch")
_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


def embed(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """The offline embedding of `text` (see the module docstring)."""
    vec = [0.0] * dimensions
    words = re.findall(r"\w+", str(text).lower())
    features = words + [w[i : i + 3] for w in words if len(w) > 3 for i in range(len(w) - 2)]
    for feature in features:
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        slot = int.from_bytes(digest[:4], "little") % dimensions
        vec[slot] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def _provider(config: Any) -> str:
    provider = str((config or {}).get("provider") or "local").lower()
    if provider not in LOCAL:
        raise UnavailableError(
            f"vector/embedding provider '{provider}' is not available in this engine",
            details={
                "provider": provider,
                "suggestion": "use provider: local (the embedded store and offline embedder)",
            },
        )
    return provider


def text_embedding(config: Any = None, input: Any = None) -> dict[str, Any]:
    """TEXT_EMBEDDING: ``input`` with ``text``, ``texts`` or ``items`` ({id, text, metadata})."""
    config = config or {}
    _provider(config)
    dims = int(config.get("dimensions") or DEFAULT_DIMENSIONS)
    data = input or {}
    items: list[dict[str, Any]] = []
    if isinstance(data.get("items"), list):
        items = [dict(i) for i in data["items"] if isinstance(i, dict)]
    elif isinstance(data.get("texts"), list):
        items = [{"id": f"text_{i}", "text": t} for i, t in enumerate(data["texts"])]
    elif data.get("text") is not None:
        items = [{"id": "text_0", "text": data["text"]}]
    out: list[dict[str, Any]] = [
        {
            "id": str(i.get("id")),
            "text": str(i.get("text", "")),
            "embedding": embed(str(i.get("text", "")), dims),
            "metadata": i.get("metadata") or {},
        }
        for i in items
    ]
    tokens = sum(len(re.findall(r"\w+", str(e["text"]))) for e in out)
    result: dict[str, Any] = {"embeddings": out, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    if len(out) == 1:
        result["embedding"] = out[0]["embedding"]
    return result


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


def _locked(config: dict[str, Any]) -> threading.Lock:
    key = str(
        Path(str(config.get("path") or DEFAULT_PATH)).resolve()
        / str(config.get("index_name"))
        / str(config.get("namespace"))
    )
    with _guard:
        return _locks.setdefault(key, threading.Lock())


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


def vector_insert(config: Any = None, input: Any = None) -> dict[str, Any]:
    """VECTOR_INSERT: ``embedding``, ``embeddings`` ({id, values, metadata}) or ``source`` (a TEXT_EMBEDDING output)."""
    config = dict(config or {})
    _provider(config)
    items = _embeddings(input or {}, "embedding", "embeddings")
    with _locked(config):
        index = VectorIndex(config)
        for item in items:
            index.upsert(str(item.get("id")), item.get("values"), item.get("metadata"))
        index.save()
    return {
        "inserted_count": len(items),
        "ids": [str(i.get("id")) for i in items],
        "index_name": config.get("index_name"),
    }


def vector_update(config: Any = None, input: Any = None) -> dict[str, Any]:
    """VECTOR_UPDATE: ``update`` or ``updates`` ({id, values, metadata}); values kept when absent."""
    config = dict(config or {})
    _provider(config)
    items = _embeddings(input or {}, "update", "updates")
    updated = []
    with _locked(config):
        index = VectorIndex(config)
        for item in items:
            vid = str(item.get("id"))
            old = index.records.get(vid)
            if old is None:
                continue
            metadata = {**old["metadata"], **(item.get("metadata") or {})}
            index.upsert(vid, item.get("values") or old["values"], metadata)
            updated.append(vid)
        index.save()
    return {"updated_count": len(updated), "ids": updated}


def vector_delete(config: Any = None, input: Any = None) -> dict[str, Any]:
    """VECTOR_DELETE: ``ids``."""
    config = dict(config or {})
    _provider(config)
    ids = [str(i) for i in (input or {}).get("ids") or []]
    with _locked(config):
        index = VectorIndex(config)
        deleted = [vid for vid in ids if index.delete(vid)]
        index.save()
    return {"deleted_count": len(deleted), "ids": deleted}


def vector_search(config: Any = None, input: Any = None) -> dict[str, Any]:
    """VECTOR_SEARCH: ``search_vector`` (values, or an object with ``values``/``embedding``) or
    ``search_text`` (embedded offline); ``top_k``, ``similarity_threshold``, ``filter`` (metadata equality)."""
    config = dict(config or {})
    _provider(config)
    data = input or {}
    vector = data.get("search_vector")
    if isinstance(vector, dict):
        vector = vector.get("values") or vector.get("embedding")
    with _locked(config):
        index = VectorIndex(config)
        if vector is None:
            if data.get("search_text") is None:
                raise ValueError("VECTOR_SEARCH needs input.search_vector or input.search_text")
            vector = embed(str(data["search_text"]), index.dims)
        top_k = int(config.get("top_k") or data.get("top_k") or 10)
        matches = index.search(vector, top_k if not config.get("filter") else len(index.records))
    wanted = config.get("filter") if isinstance(config.get("filter"), dict) else {}
    matches = [m for m in matches if all(m["metadata"].get(k) == v for k, v in wanted.items())][:top_k]
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
