"""OpenFlow's vector nodes with the same semantics on every store: the embedded USearch default
and Chroma (embedded, persistent, through LangChain's VectorStore interface) for real; a store
whose package is missing is UNAVAILABLE naming it. Nothing downloads a model: Chroma always gets
our embeddings (its default ONNX embedder would fetch weights into ~/.cache/chroma)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from owf_magics import OpenWorkflow
from owf_magics.connectors.vector_store import vector_delete, vector_insert, vector_search, vector_update
from owf_magics.errors import UnavailableError
from tests.local_http import serve

FLOWS = Path(__file__).parent / "openflow"
DOCS = [
    {"id": "owls", "text": "Owls hunt small mammals at night", "metadata": {"topic": "birds"}},
    {"id": "tides", "text": "Tides follow the moon around the earth"},
    {"id": "bread", "text": "Bread rises when yeast ferments sugar"},
]


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


STORES = [
    "local",
    pytest.param("chroma", marks=pytest.mark.skipif(not _has("langchain_chroma"), reason="no langchain-chroma")),
    pytest.param("pinecone", marks=pytest.mark.skipif(not _has("langchain_pinecone"), reason="no langchain-pinecone")),
]


@pytest.fixture(scope="module")
def pinecone_host() -> Iterator[str]:
    """A local server speaking Pinecone's data-plane API (tests/pinecone_server.py)."""
    from tests.pinecone_server import STORE, PineconeHandler

    STORE.clear()
    with serve(PineconeHandler) as base:
        yield base


def store_config(store: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """What a node's config adds for `store` (the Pinecone server's host and key)."""
    if store != "pinecone":
        return {}
    from tests.pinecone_server import API_KEY

    return {"host": request.getfixturevalue("pinecone_host"), "api_key": API_KEY}


def rag_flow(provider: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    flow = json.loads((FLOWS / "vector_rag.json").read_text())
    for node in flow["nodes"]:
        if node["type"] in ("VECTOR_INSERT", "VECTOR_SEARCH"):
            node["config"].update({"provider": provider, **(extra or {})})
    return flow


SEARCH_ONLY = {
    "name": "search_only",
    "version": "1.0.0",
    "variables": [
        {"id": "query", "type": "string"},
        {"id": "store", "type": "string"},
        {"id": "best", "type": "string", "default": ""},
    ],
    "input": ["query", "store"],
    "output": ["best"],
    "nodes": [
        {
            "id": "search",
            "type": "VECTOR_SEARCH",
            "name": "Search",
            "config": {"provider": "chroma", "index_name": "kb", "path": "{{@store}}", "top_k": 3},
            "input": {"search_text": "{{@query}}"},
        },
        {
            "id": "top",
            "type": "UPDATE_VARIABLE",
            "name": "Best",
            "config": {"type": "update", "variable_id": "best"},
            "value": "{{search.results.0.id}}",
        },
    ],
}


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("backend", ["native", "langchain"])
def test_insert_then_search_returns_the_inserted_document_first(
    tmp_path: Path, store: str, backend: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    ow = OpenWorkflow(state=":memory:")
    ow.load(rag_flow(store, {**store_config(store, request), "namespace": f"{backend}-{tmp_path.name}"}))
    res = ow.workflow("vector_rag").execute(
        inputs={"docs": DOCS, "query": "what do owls hunt at night?", "store": str(tmp_path / "db")},
        prefer_backend=backend,
    )
    assert res.status == "completed", res.error
    assert res.outputs["best"] == "owls"
    assert sorted(res.outputs["ranking"]) == ["bread", "owls", "tides"]
    hit = res.steps["search"].output["results"][0]
    assert hit["metadata"] == {"topic": "birds", "text": DOCS[0]["text"]}
    assert len(hit["values"]) == 256 and 0.0 < hit["score"] <= 1.0
    assert not (tmp_path / "home" / ".cache").exists()  # no model was downloaded


@pytest.mark.skipif(not _has("langchain_chroma"), reason="no langchain-chroma")
def test_chroma_answers_again_from_a_new_process_on_the_same_directory(tmp_path: Path) -> None:
    db = tmp_path / "db"
    ow = OpenWorkflow(state=":memory:")
    ow.load(rag_flow("chroma"))
    first = ow.workflow("vector_rag").execute(inputs={"docs": DOCS, "query": "yeast and sugar", "store": str(db)})
    assert first.outputs["best"] == "bread"
    flow = tmp_path / "search.json"
    flow.write_text(json.dumps(SEARCH_ONLY))
    script = (
        "import json, sys\n"
        "from owf_magics import OpenWorkflow\n"
        "ow = OpenWorkflow(state=':memory:')\n"
        "ow.load(sys.argv[1])\n"
        "res = ow.workflow('search_only').execute(inputs={'query': sys.argv[3], 'store': sys.argv[2]})\n"
        "print(json.dumps({'status': res.status, 'best': res.outputs.get('best'),\n"
        "                  'ids': [m['id'] for m in res.steps['search'].output['results']]}))\n"
    )
    env = {"HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", script, str(flow), str(db), "what do owls hunt at night?"],
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
        env=env,
        cwd=Path(__file__).parent.parent,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert answer["status"] == "completed"
    assert answer["best"] == "owls"
    assert sorted(answer["ids"]) == ["bread", "owls", "tides"]
    assert not (tmp_path / "home" / ".cache").exists()


@pytest.mark.parametrize("store", STORES)
def test_the_same_semantics_on_every_store(tmp_path: Path, store: str, request: pytest.FixtureRequest) -> None:
    """Upsert, search with scores, update (metadata merged, values kept or replaced), delete
    (the ids that were there), filters, thresholds and namespaces, on each store."""
    config: dict[str, Any] = {
        "provider": store,
        "index_name": "kb",
        "namespace": "n1",
        "path": str(tmp_path),
        "dimensions": 8,
        **store_config(store, request),
    }
    one = [1.0, 0, 0, 0, 0, 0, 0, 0]
    inserted = vector_insert(
        config,
        {
            "embeddings": [
                {"id": "a", "values": one, "metadata": {"k": 1, "text": "alpha"}},
                {"id": "b", "values": [0, 1, 0, 0, 0, 0, 0, 0], "metadata": {"k": 2}},
            ]
        },
    )
    assert (inserted["inserted_count"], inserted["ids"]) == (2, ["a", "b"])
    found = vector_search(config, {"search_vector": [0.9, 0.1, 0, 0, 0, 0, 0, 0]})
    assert [m["id"] for m in found["results"]] == ["a", "b"]
    assert found["results"][0]["score"] == pytest.approx(0.99388, abs=1e-4)  # cos(a, query), in float32
    assert found["results"][0]["metadata"] == {"k": 1, "text": "alpha"}
    assert found["results"][0]["values"] == one
    assert found["search_metadata"]["total_matches"] == 2

    only = vector_search(dict(config, filter={"k": 2}), {"search_vector": one})
    assert [m["id"] for m in only["results"]] == ["b"]
    close = vector_search(dict(config, similarity_threshold=0.5), {"search_vector": one})
    assert [m["id"] for m in close["results"]] == ["a"]

    updated = vector_update(config, {"updates": [{"id": "a", "metadata": {"k": 3}}, {"id": "zzz", "metadata": {}}]})
    assert updated["ids"] == ["a"]
    kept = vector_search(config, {"search_vector": {"values": one}, "top_k": 1})["results"]
    assert [(m["id"], m["metadata"], m["values"]) for m in kept] == [("a", {"k": 3, "text": "alpha"}, one)]
    vector_update(config, {"update": {"id": "a", "values": [0, 0, 1, 0, 0, 0, 0, 0]}})
    moved = vector_search(config, {"search_vector": [0, 0, 1, 0, 0, 0, 0, 0], "top_k": 1})["results"]
    assert [(m["id"], m["score"]) for m in moved] == [("a", 1.0)]

    assert vector_delete(config, {"ids": ["a", "zzz"]}) == {"deleted_count": 1, "ids": ["a"]}
    assert [m["id"] for m in vector_search(config, {"search_vector": one})["results"]] == ["b"]
    assert vector_search(dict(config, namespace="n2"), {"search_vector": one})["results"] == []


@pytest.mark.parametrize(("store", "package"), [("pinecone", "langchain-pinecone"), ("weaviate", "langchain-weaviate")])
def test_a_store_whose_package_is_missing_names_it(tmp_path: Path, store: str, package: str) -> None:
    if _has(package.replace("-", "_")):
        pytest.skip(f"{package} is installed")
    with pytest.raises(UnavailableError) as err:
        vector_insert({"provider": store, "index_name": "kb"}, {"embeddings": [{"id": "a", "values": [1.0]}]})
    assert (err.value.details["package"], err.value.details["suggestion"]) == (package, f"pip install {package}")


def test_an_unknown_store_is_refused_at_load() -> None:
    from owf_magics.errors import ManifestError

    with pytest.raises(ManifestError) as err:
        OpenWorkflow(state=":memory:").load(rag_flow("faiss"))
    assert [d.code for d in err.value.diagnostics] == ["UNKNOWN_PROVIDER", "UNKNOWN_PROVIDER"]
