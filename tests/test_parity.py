"""Parity: every corpus workflow gives identical outputs, statuses and token totals on native,
on the langchain backend, and with the two mixed step by step."""

from __future__ import annotations

import pytest
import yaml

from owf_magics import OpenWorkflow
from owf_magics.testing import assert_same_run, corpus_files, corpus_workflows, load_corpus, run_snapshot

pytest.importorskip("langgraph")

OW = load_corpus()
NAMES = corpus_workflows(OW)


def test_the_corpus_covers_every_step_kind():
    kinds = {e.type for name in NAMES for e in OW.workflow(name).plan().entries.values()}
    assert {"action", "agent", "transform", "if", "switch", "forEach", "parallel", "try", "workflow"} <= kinds
    assert len(NAMES) >= 8


@pytest.mark.parametrize("name", NAMES)
def test_native_and_langchain_runs_are_identical(name):
    wf = OW.workflow(name)
    native = wf.execute()
    lc = wf.execute(prefer_backend="langchain")
    assert_same_run(native, lc, label=name)
    pinned = {sid for sid, e in wf.plan().entries.items() if e.source == "step"}
    assert {r["backend"] for r in lc.trace_rows if r["step_id"] not in pinned} <= {"langchain"}
    assert run_snapshot(native)["status"] == ("failed" if name == "parity-failing" else "completed")


def _alternate(doc: dict) -> dict:
    """Pin every other top-level step of every workflow to the langchain backend."""
    for wf in doc.get("workflows", []):
        for i, step in enumerate(wf["steps"]):
            if i % 2 == 0 and "execution" not in step:
                step["execution"] = {"backend": "langchain", "runtime": "python"}
    return doc


def test_mixed_runs_are_identical_to_native():
    mixed = OpenWorkflow(state=":memory:")
    mixed.load_many([_alternate(yaml.safe_load(p.read_text())) for p in corpus_files()])
    for name in NAMES:
        native = OW.workflow(name).execute()
        both = mixed.workflow(name).execute()
        assert_same_run(native, both, label=f"{name} (mixed)")
        backends = {r["backend"] for r in both.trace_rows}
        assert "langchain" in backends, name


def test_the_specs_mixed_example_is_one_run_with_one_trace():
    r = OW.workflow("parity-mixed-backends").execute()
    assert r.status == "completed"
    assert r.outputs["summary"] == "3 orders, 60 in total"
    assert r.outputs["stored"] == {"table": "reports", "stored": {"summary": "3 orders, 60 in total"}, "ok": True}
    rows = [(row["run_id"], row["step_id"], row["backend"], row["backend_source"]) for row in r.trace_rows]
    assert rows == [
        (r.run_id, "fetch_data", "native", "step"),
        (r.run_id, "analyze_with_ai", "langchain", "step"),
        (r.run_id, "store_results", "native", "step"),
    ]
    events = [e for e in r.events if e["type"] == "step.execution.completed"]
    assert [(e["step_id"], e["execution"]["backend"]) for e in events] == [
        ("fetch_data", "native"),
        ("analyze_with_ai", "langchain"),
        ("store_results", "native"),
    ]
    info = {b: OW.backend_registry.info(b) for b in ("native", "langchain")}
    for e in events:
        assert e["execution"]["adapter_version"] == info[e["execution"]["backend"]].version
        assert e["run_id"] == r.run_id
    assert events[1]["execution"]["token_usage"] == {"prompt_tokens": 150, "completion_tokens": 80, "total_tokens": 230}
    assert "token_usage" not in events[0]["execution"]
    assert r.total_tokens == 230
