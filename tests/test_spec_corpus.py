"""Every manifest of the OpenWorkflow spec is a test (tests/spec_corpus/README.md).

Each vendored manifest is loaded with the stubs of what it references, in one ``load_many``
batch, and must load with exactly the warnings ``expected.yaml`` lists, or fail with exactly the
diagnostics it lists (``[CODE, line]`` in the manifest's own file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from owf_magics import ManifestError, OpenWorkflow
from owf_magics.manifest.refs import installed_version, matches

CORPUS = Path(__file__).resolve().parent / "spec_corpus"
MANIFESTS = CORPUS / "manifests"
STUBS = sorted((CORPUS / "stubs").rglob("*.yaml"))
EXPECTED: dict[str, dict[str, Any]] = yaml.safe_load((CORPUS / "expected.yaml").read_text(encoding="utf-8"))[
    "manifests"
]


def _files(name: str, entry: dict[str, Any]) -> list[Path]:
    excluded = set(entry.get("exclude_stubs", []))
    assert excluded <= {s.name for s in STUBS}, f"unknown stubs in exclude_stubs: {excluded}"
    companions = [MANIFESTS / w for w in entry.get("with", [])]
    assert all(c.exists() for c in companions), f"unknown files in with: {entry['with']}"
    return [*(s for s in STUBS if s.name not in excluded), *companions, MANIFESTS / name]


def _pairs(diags: list[Any], file: Path) -> list[tuple[str, int | None]]:
    return sorted((d.code, d.line) for d in diags if d.file == str(file))


def _expected(pairs: list[list[Any]]) -> list[tuple[str, int]]:
    return sorted((code, line) for code, line in pairs)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_spec_manifest(name: str) -> None:
    entry = EXPECTED[name]
    assert ("ok" in entry) != ("errors" in entry), f"{name}: give exactly one of 'ok' or 'errors'"
    files = _files(name, entry)
    target = files[-1]
    ow = OpenWorkflow(state=":memory:")
    if "errors" in entry:
        with pytest.raises(ManifestError) as info:
            ow.load_many(files)
        others = [d.format() for d in info.value.diagnostics if d.file != str(target)]
        assert not others, f"the stubs or companions of {name} have errors: {others}"
        assert _pairs(info.value.diagnostics, target) == _expected(entry["errors"]), info.value.message
        return
    try:
        ow.load_many(files)
    except ManifestError as exc:  # pragma: no cover - shown on failure only
        pytest.fail(f"{name} should load:\n{exc.message}")
    wanted = _expected(entry["ok"])
    cond = entry.get("if_installed")
    if cond:
        found = installed_version(cond["framework"])
        if found is not None and not matches(found, cond["range"]):
            wanted = sorted([*wanted, tuple(cond["warning"])])
    assert _pairs(ow.warnings, target) == wanted, [w.format() for w in ow.warnings if w.file == str(target)]


def test_expected_lists_every_manifest_and_nothing_else() -> None:
    on_disk = {p.name for p in MANIFESTS.iterdir() if p.suffix in (".yaml", ".json")}
    assert on_disk == set(EXPECTED), {
        "not in expected.yaml": sorted(on_disk - set(EXPECTED)),
        "in expected.yaml, not in manifests/": sorted(set(EXPECTED) - on_disk),
    }


def test_skipped_blocks_are_not_vendored() -> None:
    skipped = yaml.safe_load((CORPUS / "skipped.yaml").read_text(encoding="utf-8"))
    names = {entry["block"] for entry in skipped["skipped"]}
    vendored = {p.stem for p in MANIFESTS.iterdir()}
    assert not names & vendored
    assert all(entry["reason"] for entry in skipped["skipped"])
    for note in skipped["notes"]:
        assert (MANIFESTS / note["file"]).exists(), note


def test_stubs_load_together_without_warnings() -> None:
    ow = OpenWorkflow(state=":memory:")
    items = ow.load_many(STUBS)
    assert len(items) == len(STUBS)
    assert ow.warnings == []
    agents = [i for i in items if i.kind == "agent"]
    assert agents and all(a.model.model.provider == "echo" for a in agents)


def test_order_processing_pipeline() -> None:
    """workflow-logic-steps.md's complete example: every step planned natively, every block a group."""
    name = "workflow-logic-steps__25.yaml"
    ow = OpenWorkflow(state=":memory:")
    ow.load_many(_files(name, EXPECTED[name]))
    wf = ow.workflow("Order Processing Pipeline")
    plan = wf.plan()
    steps = set(wf.graph.nodes)
    assert len(steps) == 18
    assert set(plan) == steps
    assert {plan[s].backend for s in steps} == {"native"}
    groups = {(g.owner, g.kind, g.label): set(g.members) for g in wf.graph.groups}
    assert groups[("fetch_order", "try", "try")] == {"get_order_details"}
    assert groups[("fetch_order", "catch", "catch")] == {"log_fetch_error"}
    assert {label for owner, kind, label in groups if owner == "validate_and_process" and kind == "branch"} == {
        "inventory",
        "payment",
        "shipping",
    }
    assert groups[("check_inventory_status", "then", "then")] == {"fulfill_items"}
    assert groups[("check_inventory_status", "else", "else")] == {"route_backorder"}
    assert groups[("fulfill_items", "loop", "loop")] == {"ship_item"}
    assert {label for owner, kind, label in groups if owner == "route_backorder" and kind == "case"} == {
        "partial",
        "hold",
        "cancel",
    }
    assert groups[("check_if_escalation_needed", "then", "then")] == {"escalate_to_agent"}
    assert plan["get_order_details"].connector == "connector:acme/orders@1.0.0"
    assert plan["escalate_to_agent"].agent == "agent:acme/fulfillment-specialist@1.0.0"
