"""DOCUMENT_SPLITTER and CONVERSATION_MEMORY (formats/openflow/nodes.py): chunking by size,
overlap and separators; a document read from a file; memory operations kept per execution."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from owf_magics import OpenWorkflow
from owf_magics.formats.openflow.nodes import conversation_memory, split_text


def test_chunks_respect_size_and_share_the_overlap() -> None:
    text = " ".join(f"w{i}" for i in range(40))
    chunks = split_text(text, chunk_size=20, chunk_overlap=8)
    assert all(len(c) <= 20 for c in chunks)
    assert " ".join(chunks).split()[0] == "w0" and chunks[-1].endswith("w39")
    for a, b in itertools.pairwise(chunks):
        shared = [w for w in b.split() if w in a.split()]
        assert shared and len(" ".join(shared)) <= 8  # consecutive chunks share at most the overlap
    plain = split_text(text, chunk_size=20, chunk_overlap=0)
    assert not set(plain[0].split()) & set(plain[1].split())


def test_paragraphs_are_cut_before_lines_and_a_custom_separator_is_used() -> None:
    text = "alpha beta.\n\ngamma delta epsilon.\n\nzeta"
    assert split_text(text, chunk_size=22, chunk_overlap=0) == ["alpha beta.", "gamma delta epsilon.", "zeta"]
    assert split_text("a|b|c|d", chunk_size=4, chunk_overlap=0, separators=["|"]) == ["a|b|", "c|d"]


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        split_text("x", chunk_size=10, chunk_overlap=10)


@pytest.mark.parametrize("backend", ["native", "langchain"])
def test_a_document_file_is_split_in_a_flow(tmp_path: Path, backend: str) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("first paragraph here.\n\nsecond paragraph is here too.", encoding="utf-8")
    flow: dict[str, Any] = {
        "name": "split_file",
        "version": "1.0.0",
        "variables": [{"id": "path", "type": "string"}, {"id": "parts", "type": "array", "default": []}],
        "input": ["path"],
        "output": ["parts"],
        "nodes": [
            {"id": "s", "type": "DOCUMENT_SPLITTER", "document": "{{@path}}", "config": {"chunk_size": 30}},
            {
                "id": "u",
                "type": "UPDATE_VARIABLE",
                "config": {"type": "extract", "variable_id": "parts", "field_path": "text"},
                "value": "{{s.chunks}}",
            },
        ],
    }
    ow = OpenWorkflow(state=":memory:")
    ow.load(json.dumps(flow))
    res = ow.workflow("split_file").execute(inputs={"path": str(doc)}, prefer_backend=backend)
    assert res.status == "completed", res.error
    assert res.outputs["parts"] == ["first paragraph here.", "second paragraph is here too."]
    missing = ow.workflow("split_file").execute(inputs={"path": str(tmp_path / "none.txt")})
    assert missing.status == "failed"


def test_memory_operations() -> None:
    msgs = [{"role": "user", "content": str(i)} for i in range(4)]
    assert conversation_memory("slice", msgs, config={"slice_start": 1, "slice_end": 3})["messages"] == msgs[1:3]
    assert conversation_memory("clear", msgs)["message_count"] == 0
    saved = conversation_memory("serialize", msgs)["serialized"]
    back = conversation_memory("deserialize", [], {"serialized": saved})
    assert back["messages"] == msgs and back["deserialized"] is True
    loaded = conversation_memory("load", None, {"messages": msgs[:1]})
    assert loaded["message_count"] == 1
    with pytest.raises(ValueError):
        conversation_memory("deserialize", [], {"serialized": "{}"})


@pytest.mark.parametrize("backend", ["native", "langchain"])
def test_condition_output_has_the_matched_branchs_results(backend: str) -> None:
    def update(nid: str, var: str, value: Any) -> dict[str, Any]:
        return {"id": nid, "type": "UPDATE_VARIABLE", "config": {"type": "update", "variable_id": var}, "value": value}

    flow: dict[str, Any] = {
        "name": "cond_results",
        "version": "1.0.0",
        "variables": [
            {"id": "x", "type": "number"},
            {"id": "seen", "type": "any", "default": None},
            {"id": "inside", "type": "string", "default": ""},
        ],
        "input": ["x"],
        "output": ["seen", "inside"],
        "nodes": [
            {
                "id": "c",
                "type": "CONDITION",
                "input": {"switch_value": "{{@x}}"},
                "branches": {
                    "big": {
                        "condition": "greater_than",
                        "value": 10,
                        "nodes": [update("a", "inside", "big")],
                    },
                    "default": {"nodes": [update("b", "inside", "small")]},
                },
            },
            update("r", "seen", "{{c}}"),
        ],
    }
    ow = OpenWorkflow(state=":memory:")
    ow.load(json.dumps(flow))
    big = ow.workflow("cond_results").execute(inputs={"x": 11}, prefer_backend=backend)
    assert big.status == "completed", big.error
    assert big.outputs["inside"] == "big"
    seen = big.outputs["seen"]
    assert seen["matched_branch"] == "big" and seen["switch_value"] == 11
    assert list(seen["results"]) == ["a"] and seen["results"]["a"]["new_value"] == "big"
    small = ow.workflow("cond_results").execute(inputs={"x": 1}, prefer_backend=backend).outputs
    assert small["seen"]["matched_branch"] == "default" and small["seen"]["results"]["b"]["new_value"] == "small"
    assert small["inside"] == "small"


@pytest.mark.parametrize("backend", ["native", "langchain"])
def test_builtin_get_variable_reads_the_flows_variable(backend: str) -> None:
    ow = OpenWorkflow(state=":memory:")
    ow.load(str(Path(__file__).parent / "openflow" / "builtin_tools.json"))
    res = ow.workflow("builtin_tools").execute(inputs={"city": "Lyon"}, prefer_backend=backend)
    done = {e["tool"]: e["result"] for e in res.events if e["type"] == "agent.tool.completed"}
    assert done["get_variable"]["value"] == "Lyon"
    assert done["set_variable"]["success"] is True
    assert res.outputs["country"] == "France"


def session_flow() -> str:
    return json.dumps(
        {
            "name": "chat_memory",
            "version": "1.0.0",
            "variables": [
                {"id": "sid", "type": "string"},
                {"id": "said", "type": "string"},
                {"id": "history", "type": "array", "default": []},
            ],
            "input": ["sid", "said"],
            "output": ["history"],
            "nodes": [
                {
                    "id": "m",
                    "type": "CONVERSATION_MEMORY",
                    "config": {
                        "operation": "append",
                        "variable_id": "history",
                        "session_id": "{{@sid}}",
                        "max_messages": 3,
                    },
                    "input": {"role": "user", "content": "{{@said}}"},
                }
            ],
        }
    )


@pytest.mark.parametrize("backend", ["native", "langchain"])
def test_memory_with_a_session_id_is_kept_in_the_run_store_across_runs(tmp_path: Path, backend: str) -> None:
    state = str(tmp_path / "runs.db")
    ow = OpenWorkflow(state=state)
    ow.load(session_flow())
    run = ow.workflow("chat_memory")
    assert run.execute(inputs={"sid": "s1", "said": "a"}, prefer_backend=backend).outputs["history"] == [
        {"role": "user", "content": "a"}
    ]
    run.execute(inputs={"sid": "s2", "said": "other"}, prefer_backend=backend)
    run.execute(inputs={"sid": "s1", "said": "b"}, prefer_backend=backend)
    ow.close()
    again = OpenWorkflow(state=state)  # a new registry on the same store sees the session
    again.load(session_flow())
    out = again.workflow("chat_memory").execute(inputs={"sid": "s1", "said": "c"}, prefer_backend=backend).outputs
    assert [m["content"] for m in out["history"]] == ["a", "b", "c"]
    out = again.workflow("chat_memory").execute(inputs={"sid": "s1", "said": "d"}, prefer_backend=backend).outputs
    assert [m["content"] for m in out["history"]] == ["b", "c", "d"]  # max_messages keeps the last three
    assert [m["content"] for m in again.store.get_messages("openflow:s1")] == ["b", "c", "d"]
    again.close()
