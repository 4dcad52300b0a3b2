"""JSON Schema checks for connector inputs and outputs and agent outputs, on ``jsonschema-rs``.

A schema is checked against its draft's metaschema when a manifest loads, and compiled once
(cached per schema object) when an action's input is validated. The compiled Rust validator
imports in a few milliseconds where ``jsonschema`` pulls its format machinery (a lark grammar
from ``rfc3987_syntax``, 0.7 s); see docs/decisions.md. Remote ``$ref``s are never fetched.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

__all__ = ["SchemaIssue", "plain", "schema_problem", "schema_validator"]

#: The types a JSON Schema `type` may name.
TYPES = ("array", "boolean", "integer", "null", "number", "object", "string")


class SchemaIssue(NamedTuple):
    """One way a value (or a schema) breaks a schema: where, what, and the keyword that failed."""

    path: tuple[str | int, ...]
    message: str
    validator: str


def plain(value: Any) -> Any:
    """`value` in the JSON types the validator reads: mappings as dicts with string keys, lists and
    tuples (and the loader's positioned subclasses) as lists, any other object as its text."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return str(value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def schema_problem(schema: Any) -> SchemaIssue | None:
    """The first problem of a schema (its metaschema, its patterns and references), or None.

    The issue's path is inside the schema; its message is ours, not the library's wording.
    """
    import jsonschema_rs

    schema = plain(schema)
    try:
        jsonschema_rs.meta.validate(schema)
        jsonschema_rs.validator_for(schema, validate_formats=False, offline=True)
    except jsonschema_rs.ReferencingError as exc:
        return SchemaIssue((), f"a $ref cannot be resolved without fetching it ({exc})", "$ref")
    except jsonschema_rs.ValidationError as exc:
        path = tuple(exc.instance_path)
        keyword = str(path[-1]) if path else ""
        if keyword == "type":
            message = f"{_short(exc.instance)} is not a JSON Schema type (one of {', '.join(TYPES)})"
            return SchemaIssue(path, message, exc.kind.name)
        if "retriev" in exc.message.lower() or "resolv" in exc.message.lower():
            message = "a $ref cannot be resolved (remote schemas are not fetched)"
            keyword = "$ref"
        elif keyword:
            message = f"{_short(exc.instance)} is not a valid value of '{keyword}'"
        else:
            message = "the schema does not follow its JSON Schema draft"
        return SchemaIssue(path, f"{message} ({exc.message.splitlines()[0]})", exc.kind.name)
    return None


class _Compiled:
    """A compiled validator that reports issues in the order of their paths."""

    __slots__ = ("_validator",)

    def __init__(self, schema: Mapping[str, Any]) -> None:
        import jsonschema_rs

        self._validator = jsonschema_rs.validator_for(plain(schema), validate_formats=False, offline=True)

    def is_valid(self, data: Any) -> bool:
        try:
            return bool(self._validator.is_valid(data))
        except ValueError:  # a value outside the JSON types (a tuple key, an object): read it as JSON
            return bool(self._validator.is_valid(plain(data)))

    def iter_errors(self, data: Any) -> Iterator[SchemaIssue]:
        if self.is_valid(data):
            return
        try:
            errors = list(self._validator.iter_errors(data))
        except ValueError:
            errors = list(self._validator.iter_errors(plain(data)))
        for err in errors:
            yield SchemaIssue(tuple(err.instance_path), err.message, err.kind.name)


_compiled: dict[int, tuple[Mapping[str, Any], _Compiled]] = {}


def schema_validator(schema: Mapping[str, Any]) -> _Compiled:
    """The compiled validator of `schema`, built once per schema object (schemas belong to loaded,
    immutable manifests)."""
    hit = _compiled.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    if len(_compiled) > 4096:
        _compiled.clear()
    validator = _Compiled(schema)
    _compiled[id(schema)] = (schema, validator)
    return validator
