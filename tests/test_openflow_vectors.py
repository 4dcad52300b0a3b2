"""OpenFlow's embedding and vector nodes on the embedded default store (USearch, in a directory
the test owns) with the offline embedder; node retry and timeout mapping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from owf_magics import OpenWorkflow
from owf_magics.connectors.vector_store import embed, vector_delete, vector_insert, vector_search, vector_update

pytest.importorskip("usearch")

FLOWS = Path(__file__).parent / "openflow"
DOCS = [
    {"id": "owls", "text": "Owls hunt small mammals at night", "metadata": {"topic": "birds"}},
    {"id": "tides", "text": "Tides follow the moon around the earth"},
    {"id": "bread", "text": "Bread rises when yeast ferments sugar"},
]


def test_the_offline_embedder_is_deterministic_and_normalised() -> None:
    a, b = embed("night owls"), embed("night owls")
    assert a == b and len(a) == 256
    assert abs(sum(v * v for v in a) - 1.0) < 1e-9
    near = sum(x * y for x, y in zip(a, embed("owls at night"), strict=True))
    far = sum(x * y for x, y in zip(a, embed("yeast ferments sugar"), strict=True))
    assert near > 0.5 > far


@pytest.mark.parametrize("backend", ["native", "langchain"])
@pytest.mark.parametrize(("query", "first"), [("what do owls hunt at night?", "owls"), ("yeast and sugar", "bread")])
def test_a_vector_search_returns_the_inserted_document_first(
    tmp_path: Path, backend: str, query: str, first: str
) -> None:
    ow = OpenWorkflow(state=":memory:")
    ow.load(str(FLOWS / "vector_rag.json"))
    res = ow.workflow("vector_rag").execute(
        inputs={"docs": DOCS, "query": query, "store": str(tmp_path)}, prefer_backend=backend
    )
    assert res.status == "completed", res.error
    assert res.outputs["best"] == first
    assert sorted(res.outputs["ranking"]) == ["bread", "owls", "tides"]
    assert res.steps["store_docs"].output["inserted_count"] == 3
    hit = res.steps["search"].output["results"][0]
    assert hit["metadata"]["text"] == next(d["text"] for d in DOCS if d["id"] == first)


def test_the_store_persists_updates_and_deletes(tmp_path: Path) -> None:
    config: dict[str, Any] = {
        "provider": "local",
        "index_name": "kb",
        "namespace": "n1",
        "path": str(tmp_path),
        "dimensions": 8,
    }
    vector_insert(
        config,
        {
            "embeddings": [
                {"id": "a", "values": [1, 0, 0, 0, 0, 0, 0, 0], "metadata": {"k": 1}},
                {"id": "b", "values": [0, 1, 0, 0, 0, 0, 0, 0]},
            ]
        },
    )
    assert [m["id"] for m in vector_search(config, {"search_vector": [0.9, 0.1, 0, 0, 0, 0, 0, 0]})["results"]] == [
        "a",
        "b",
    ]
    assert vector_update(config, {"update": {"id": "a", "values": [0, 0, 1, 0, 0, 0, 0, 0], "metadata": {"k": 2}}})[
        "ids"
    ] == ["a"]
    found = vector_search(config, {"search_vector": {"values": [0, 0, 1, 0, 0, 0, 0, 0]}, "top_k": 1})["results"]
    assert [(m["id"], m["metadata"]) for m in found] == [("a", {"k": 2})]
    assert vector_delete(config, {"ids": ["a", "zzz"]})["ids"] == ["a"]
    assert [m["id"] for m in vector_search(config, {"search_vector": [1, 0, 0, 0, 0, 0, 0, 0]})["results"]] == ["b"]
    other = dict(config, namespace="n2")
    assert vector_search(other, {"search_vector": [1, 0, 0, 0, 0, 0, 0, 0]})["results"] == []


def test_a_hosted_vector_provider_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    flow = (
        (FLOWS / "vector_rag.json")
        .read_text()
        .replace('"provider": "local", "index_name"', '"provider": "pinecone", "index_name"', 1)
    )
    path = tmp_path / "pine.json"
    path.write_text(flow)
    ow = OpenWorkflow(state=":memory:")
    ow.load(str(path))
    res = ow.workflow("vector_rag").execute(inputs={"docs": DOCS, "query": "owls", "store": str(tmp_path)})
    assert res.status == "failed"
    assert res.steps["store_docs"].error.code == "UNAVAILABLE"


def test_node_retry_and_timeout_map_to_the_step() -> None:
    flow = {
        "name": "retrying",
        "version": "1.0.0",
        "variables": [{"id": "x", "type": "string", "default": "not a list"}],
        "output": ["x"],
        "nodes": [
            {
                "id": "boom",
                "type": "UPDATE_VARIABLE",
                "name": "append to a string fails",
                "timeout": 5000,
                "retry": {"max_attempts": 3, "backoff": "fixed", "base_delay": 1, "max_delay": 5},
                "config": {"type": "append", "variable_id": "x"},
                "value": "y",
            }
        ],
    }
    ow = OpenWorkflow(state=":memory:")
    ow.load(flow)
    step = ow.workflow("retrying").manifest.steps[0]
    assert (step.timeout, step.retry.maxAttempts, step.retry.backoff, step.retry.initialDelay) == (
        5.0,
        3,
        "fixed",
        0.001,
    )
    res = ow.workflow("retrying").execute()
    assert res.status == "failed"
    assert res.steps["boom"].attempts == 3


def test_convert_round_trip_of_the_vector_flow(tmp_path: Path) -> None:
    from owf_magics.formats.convert import convert_file

    inputs = {"docs": DOCS, "query": "moon and tides", "store": str(tmp_path / "a")}
    direct = OpenWorkflow(state=":memory:")
    direct.load(str(FLOWS / "vector_rag.json"))
    converted = OpenWorkflow(state=":memory:")
    converted.load(convert_file(FLOWS / "vector_rag.json"))
    first = direct.workflow("vector_rag").execute(inputs=inputs).outputs
    again = converted.workflow("vector_rag").execute(inputs=dict(inputs, store=str(tmp_path / "b"))).outputs
    assert first == again and first["best"] == "tides"
