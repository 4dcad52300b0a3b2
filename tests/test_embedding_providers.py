"""Embedding providers for TEXT_EMBEDDING and vector search: OpenAI and the OpenAI-compatible ones
(nvidia, azure, openai_compatible) against a local server speaking the embeddings API on
127.0.0.1; a provider of init_embeddings whose package is missing is UNAVAILABLE naming it."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any

import pytest

from owf_magics import OpenWorkflow
from owf_magics.connectors.vector_store import embed, text_embedding
from owf_magics.errors import UnavailableError
from tests.local_http import JSONHandler, serve

pytest.importorskip("langchain_openai")
pytest.importorskip("usearch")

FLOWS = Path(__file__).parent / "openflow"
REQUESTS: list[dict[str, Any]] = []
DIMS = 64


class EmbeddingsHandler(JSONHandler):
    """OpenAI's embeddings API: each input's vector is the offline embedder's at DIMS (so search
    works), as floats or base64 float32 as the client asks; usage counts the inputs' words."""

    def do_POST(self) -> None:
        body = self.read_json()
        REQUESTS.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for i, text in enumerate(texts):
            vec = embed(str(text), int(body.get("dimensions") or DIMS))
            value: Any = vec
            if body.get("encoding_format") == "base64":
                value = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": value})
        words = sum(len(str(t).split()) for t in texts)
        self.send_json(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": words, "total_tokens": words},
            }
        )


def embedding_config(provider: str, base: str) -> dict[str, Any]:
    return {"provider": provider, "model": "embed-test", "base_url": base, "api_key": "ek", "dimensions": DIMS}


@pytest.mark.parametrize("provider", ["openai", "nvidia", "azure", "openai_compatible"])
def test_text_embedding_through_a_local_embeddings_server(provider: str) -> None:
    REQUESTS.clear()
    with serve(EmbeddingsHandler) as base:
        out = text_embedding(embedding_config(provider, f"{base}/v1"), {"texts": ["night owls", "sour dough"]})
    assert [e["id"] for e in out["embeddings"]] == ["text_0", "text_1"]
    for got, text in zip(out["embeddings"], ["night owls", "sour dough"], strict=True):
        assert got["embedding"] == pytest.approx(embed(text, DIMS), abs=1e-6)
    assert (out["provider"], out["model"], out["usage"]["estimated"]) == (provider, "embed-test", True)
    (req,) = REQUESTS
    assert req["path"] == "/v1/embeddings" and req["auth"] == "Bearer ek"
    assert req["body"]["input"] == ["night owls", "sour dough"]  # strings, not token ids (no tiktoken)
    assert (req["body"]["model"], req["body"]["dimensions"]) == ("embed-test", DIMS)


@pytest.mark.parametrize("store", ["local", "chroma"])
def test_a_flow_embeds_stores_and_searches_with_openai_embeddings(tmp_path: Path, store: str) -> None:
    if store == "chroma":
        pytest.importorskip("langchain_chroma")
    REQUESTS.clear()
    docs = [
        {"id": "owls", "text": "Owls hunt small mammals at night"},
        {"id": "bread", "text": "Bread rises when yeast ferments sugar"},
    ]
    with serve(EmbeddingsHandler) as base:
        emb = embedding_config("openai", f"{base}/v1")
        flow = json.loads((FLOWS / "vector_rag.json").read_text())
        flow["nodes"][0]["config"] = emb
        for node in flow["nodes"][1:3]:
            node["config"].update({"provider": store, "embedding": emb})
        ow = OpenWorkflow(state=":memory:")
        ow.load(flow)
        res = ow.workflow("vector_rag").execute(
            inputs={"docs": docs, "query": "yeast and sugar", "store": str(tmp_path)}
        )
    assert res.status == "completed", res.error
    assert res.outputs["best"] == "bread"
    assert len(res.steps["search"].output["query_vector"]) == DIMS
    inputs = [r["body"]["input"] for r in REQUESTS]
    assert inputs == [[d["text"] for d in docs], ["yeast and sugar"]]  # documents once, then the query


def test_an_embedding_provider_without_its_package_names_it() -> None:
    with pytest.raises(UnavailableError) as err:
        text_embedding({"provider": "cohere", "model": "embed-english-v3.0"}, {"text": "x"})
    assert (err.value.details["package"], err.value.details["suggestion"]) == (
        "langchain-cohere",
        "pip install langchain-cohere",
    )
    with pytest.raises(UnavailableError) as unknown:
        text_embedding({"provider": "nobody"}, {"text": "x"})
    assert "package" not in unknown.value.details
