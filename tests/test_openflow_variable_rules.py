"""OpenFlow variable rules for arrays, objects and files: each broken rule refuses the run before
any node runs, naming the variable, the rule and the flow file's line (issue 25, item 1)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from owf_magics import OpenWorkflow
from owf_magics.errors import OWFError

FLOW = Path(__file__).parent / "openflow" / "variable_rules.yaml"
TEXT = FLOW.read_text().splitlines()


def line_of(fragment: str) -> int:
    return next(i for i, text in enumerate(TEXT, 1) if fragment in text)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "notes.txt").write_text("alpha beta gamma")
    (tmp_path / "outside.txt").write_text("secret")
    return root


def good(**changes: Any) -> dict[str, Any]:
    return {"tags": ["ab", "cd"], "person": {"name": "Ada", "age": 36}, "doc": "notes.txt"} | changes


def refused(root: Path, backend: str = "native", **changes: Any) -> dict[str, Any]:
    ow = OpenWorkflow(state=":memory:", files_root=root)
    ow.load(FLOW)
    started: list[str] = []
    with pytest.raises(OWFError) as info:
        ow.workflow("variable_rules").execute(
            inputs=good(**changes), prefer_backend=backend, callback=lambda e: started.append(e["type"])
        )
    assert info.value.code == "VALIDATION"
    assert started == []  # not even run.started: no node ran
    (violation,) = info.value.details["violations"]
    assert violation["file"].endswith("variable_rules.yaml")
    assert f"variable_rules.yaml:{violation['line']}: " in info.value.message
    return dict(violation)


@pytest.mark.parametrize("backend", ["native", "langchain"])
def test_the_valid_inputs_run_and_the_file_is_read_from_the_root(root: Path, backend: str) -> None:
    ow = OpenWorkflow(state=":memory:", files_root=root)
    ow.load(FLOW)
    res = ow.workflow("variable_rules").execute(inputs=good(), prefer_backend=backend)
    assert res.status == "completed"
    assert res.outputs == {"summary": "notes.txt"}
    assert res.steps["split"].output["chunks"][0]["text"] == "alpha beta gamma"


@pytest.mark.parametrize(
    ("changes", "rule", "where", "line"),
    [
        ({"tags": []}, "minLength", "tags", "minLength: 1"),
        ({"tags": ["ab", "cd", "ef", "gh"]}, "maxLength", "tags", "maxLength: 3"),
        ({"tags": ["ab", 7]}, "items.type", "tags[1]", "items: {type: string"),
        ({"tags": ["ab", "c"]}, "items.minLength", "tags[1]", "items: {type: string"),
        ({"person": {"age": 3}}, "properties.name.required", "person", "name: {type: string}"),
        ({"person": {"name": "Ada", "age": "old"}}, "properties.age.type", "person.age", "age: {type: number"),
        ({"person": {"name": "Ada", "age": -1}}, "properties.age.minimum", "person.age", "age: {type: number"),
        ({"person": {"name": "Ada", "emails": ["x"]}}, "properties.emails.items.format", "person.emails[0]", "emails:"),
        ({"person": "Ada"}, "type", "person", "type: object"),
    ],
)
def test_a_broken_array_or_object_rule_is_refused_with_the_rule_and_its_line(
    root: Path, changes: dict[str, Any], rule: str, where: str, line: str
) -> None:
    v = refused(root, **changes)
    assert (v["input"], v["rule"], v["where"], v["line"]) == (next(iter(changes)), rule, where, line_of(line))


@pytest.mark.parametrize(
    "doc",
    [
        "missing.txt",  # does not exist
        "sub",  # a directory, not a file
        "../outside.txt",  # reached through `..`, outside the root
        "sub/../../outside.txt",
        "OUTSIDE_ABSOLUTE",  # an absolute path outside the root
        "LINK",  # a link inside the root to a file outside it
    ],
)
def test_a_file_that_is_missing_or_outside_the_root_is_refused(root: Path, doc: str) -> None:
    outside = root.parent / "outside.txt"
    if doc == "OUTSIDE_ABSOLUTE":
        doc = str(outside)
    elif doc == "LINK":
        (root / "link.txt").symlink_to(outside)
        doc = "link.txt"
    v = refused(root, doc=doc)
    assert (v["input"], v["rule"], v["line"]) == ("doc", "file", line_of("type: file"))


def test_dot_dot_and_links_that_stay_inside_the_root_are_resolved_first(root: Path) -> None:
    (root / "sub" / "link.txt").symlink_to(root / "notes.txt")
    ow = OpenWorkflow(state=":memory:", files_root=root)
    ow.load(FLOW)
    for doc in ("sub/../notes.txt", "sub/link.txt", str(root / "notes.txt")):
        res = ow.workflow("variable_rules").execute(inputs=good(doc=doc))
        assert res.status == "completed", doc
        assert res.steps["split"].output["filename"] == "notes.txt"  # the resolved file


def test_the_files_root_defaults_to_the_working_directory(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ow = OpenWorkflow(state=":memory:")
    ow.load(FLOW)
    monkeypatch.chdir(root)
    assert ow.workflow("variable_rules").execute(inputs=good()).status == "completed"
    monkeypatch.chdir(root / "sub")
    with pytest.raises(OWFError) as info:
        ow.workflow("variable_rules").execute(inputs=good())
    assert info.value.details["violations"][0]["rule"] == "file"
    assert os.getcwd() == str(root / "sub")


def test_every_violation_is_reported_at_once(root: Path) -> None:
    ow = OpenWorkflow(state=":memory:", files_root=root)
    ow.load(FLOW)
    with pytest.raises(OWFError) as info:
        ow.workflow("variable_rules").execute(inputs={"tags": [], "person": {}, "doc": "nope"})
    rules = [(v["input"], v["rule"]) for v in info.value.details["violations"]]
    assert rules == [("tags", "minLength"), ("person", "properties.name.required"), ("doc", "file")]


def test_a_json_schema_required_list_and_a_required_property_flag_both_count(root: Path) -> None:
    flow = {
        "name": "obj",
        "version": "1.0.0",
        "variables": [
            {
                "id": "p",
                "type": "object",
                "validation": {"properties": {"a": {"type": "string", "required": True}, "b": {"type": "string"}}},
            }
        ],
        "input": ["p"],
        "output": ["p"],
        "nodes": [],
    }
    ow = OpenWorkflow(state=":memory:")
    ow.load(flow)
    assert ow.workflow("obj").execute(inputs={"p": {"a": "x"}}).outputs == {"p": {"a": "x"}}
    with pytest.raises(OWFError) as info:
        ow.workflow("obj").execute(inputs={"p": {"b": "x"}})
    assert [v["rule"] for v in info.value.details["violations"]] == ["properties.a.required"]
