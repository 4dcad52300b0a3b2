"""JSON Schema checks on jsonschema-rs: metaschema problems at load, input validation per call."""

from __future__ import annotations

import datetime
import subprocess
import sys

import pytest

from owf_magics import ManifestError, OpenWorkflow
from owf_magics.manifest.schemas import plain, schema_problem, schema_validator


def test_a_valid_schema_has_no_problem():
    assert schema_problem({"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}) is None


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        ({"type": "objekt"}, ("type",)),
        ({"properties": {"a": {"minimum": "x"}}}, ("properties", "a", "minimum")),
        ({"type": "object", "required": "x"}, ("required",)),
    ],
)
def test_a_broken_schema_names_where(schema, path):
    problem = schema_problem(schema)
    assert problem is not None and problem.path == path and problem.message


def test_a_remote_ref_is_never_fetched():
    problem = schema_problem({"$ref": "http://127.0.0.1:9/schema.json"})
    assert problem is not None and "$ref" in problem.message


def test_errors_come_with_path_and_keyword():
    v = schema_validator({"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x", "y"]})
    issues = list(v.iter_errors({"x": "s"}))
    assert {(i.path, i.validator) for i in issues} == {(("x",), "type"), ((), "required")}
    assert list(v.iter_errors({"x": 1, "y": None})) == []


def test_values_outside_json_are_read_as_json():
    v = schema_validator({"type": "object", "properties": {"d": {"type": "string"}, "t": {"type": "array"}}})
    assert v.is_valid({"d": datetime.date(2026, 1, 1), "t": (1, 2)})
    assert plain({1: (datetime.date(2026, 1, 1),)}) == {"1": ["2026-01-01"]}


def test_a_validator_is_compiled_once_per_schema_object():
    schema = {"type": "string"}
    assert schema_validator(schema) is schema_validator(schema)


def test_a_loaded_schema_of_positioned_lists_checks_and_validates():
    ow = OpenWorkflow(state=False)
    ow.load(
        "connector: {name: c, kind: sdk}\n"
        "actions:\n"
        "  - name: a\n"
        "    input: {type: object, required: [x], properties: {x: {type: integer}}}\n"
        "    handler: {function: tests.handlers.echo}\n"
    )
    with pytest.raises(ManifestError) as err:
        ow.load("connector: {name: d, kind: sdk}\nactions:\n  - name: a\n    input: {type: object, required: x}\n")
    assert [d.code for d in err.value.diagnostics] == ["INVALID_SCHEMA"]


def test_loading_a_schema_does_not_import_jsonschema():
    code = (
        "import sys\nfrom owf_magics import OpenWorkflow\n"
        "OpenWorkflow(state=False).load('connector: {name: c, kind: sdk}\\nactions:\\n"
        "  - {name: a, input: {type: object, properties: {x: {type: string, format: uri}}}}\\n')\n"
        "print('jsonschema' in sys.modules, 'rfc3987_syntax' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
