"""Pydantic validation errors as diagnostics: the field path, its file:line, what was expected and the fix."""

from __future__ import annotations

import re
import types
import typing
from typing import Any, Union

from pydantic import BaseModel, ValidationError

from owf_magics.errors import Diagnostic, DiagnosticBag, did_you_mean, format_path
from owf_magics.manifest.loader import position_of
from owf_magics.manifest.models import STEP_TYPES
from owf_magics.manifest.normalize import RawManifest

Path = tuple[str | int, ...]

_FRIENDLY = {
    "Workflow": "a workflow",
    "Agent": "an agent",
    "Connector": "a connector",
    "Bundle": "a bundle",
    "Action": "a connector action",
    "ActionStep": "an action step",
    "AgentStep": "an agent step",
    "WorkflowStep": "a sub-workflow step",
    "IfStep": "an if step",
    "SwitchStep": "a switch step",
    "ForEachStep": "a forEach step",
    "ParallelStep": "a parallel step",
    "WaitStep": "a wait step",
    "TryStep": "a try step",
    "TransformStep": "a transform step",
    "HandoffStep": "a handoff step",
    "ModelSpec": "model",
    "Execution": "execution",
    "RetryPolicy": "retry",
    "Handler": "handler",
    "HttpHandler": "handler.http",
}


# ------------------------------------------------------------------------------------------------
# pydantic errors → diagnostics


def _candidates(annotation: Any) -> list[type[BaseModel]]:
    """The model classes an annotation may hold (through Optional, list, dict, Union, Annotated)."""
    out: list[type[BaseModel]] = []
    stack = [annotation]
    while stack:
        a = stack.pop()
        if isinstance(a, type) and issubclass(a, BaseModel):
            out.append(a)
            continue
        origin = typing.get_origin(a)
        if origin is typing.Annotated:
            stack.append(typing.get_args(a)[0])
        elif origin in (Union, types.UnionType, list, dict, tuple):
            stack.extend(typing.get_args(a))
    return out


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that owns the last element of `loc` (union tags are followed)."""
    current: list[type[BaseModel]] = [root]
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if isinstance(part, str) and part in STEP_TYPES and any(STEP_TYPES[part] in _expand(c) for c in current):
            current = [STEP_TYPES[part]]
            continue
        nxt: list[type[BaseModel]] = []
        for cls in current:
            fld = cls.model_fields.get(part) or next((f for f in cls.model_fields.values() if f.alias == part), None)
            if fld is not None:
                nxt.extend(_candidates(fld.annotation))
        if not nxt:  # a dict key, or a union member name pydantic put in the location
            by_name = [c for c in _all_candidates(current) if c.__name__ == part]
            nxt = by_name or current
        current = nxt
    return current[0] if len(current) == 1 else (current[0] if current else None)


def _expand(cls: type[BaseModel]) -> list[type[BaseModel]]:
    return [cls]


def _all_candidates(current: list[type[BaseModel]]) -> list[type[BaseModel]]:
    out = list(current)
    for cls in current:
        for f in cls.model_fields.values():
            out.extend(_candidates(f.annotation))
    return out


def _field_names(cls: type[BaseModel] | None) -> list[str]:
    if cls is None:
        return []
    return [f.alias or name for name, f in cls.model_fields.items()]


def _data_path(data: Any, loc: tuple[Any, ...], missing: bool = True) -> Path:
    """Follow `loc` through the data, dropping the union tags pydantic inserts."""
    out: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        if (
            isinstance(node, dict)
            and i > 0
            and isinstance(loc[i - 1], int)
            and part in STEP_TYPES
            and node.get("type") == part
        ):
            continue  # a step's union tag, even when a field has the same name (agent, action, workflow)
        in_dict = isinstance(node, dict) and isinstance(part, str) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            out.append(part)
            node = node[part]
        elif i == len(loc) - 1 and isinstance(node, dict) and missing:
            out.append(part)  # a missing field: name it
        # else: a union tag or member name; skip
    return tuple(out)


def step_id_at(data: Any, path: Path) -> str | None:
    """The id of the innermost step along `path`."""
    found: str | None = None
    node = data
    for i, part in enumerate(path):
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(node, dict) and isinstance(part, int) and isinstance(node.get("id"), str) and i > 0:
            found = node["id"]
    return found


class Reporter:
    """Makes diagnostics with file, line, path and step for one raw manifest."""

    def __init__(self, raw: RawManifest, bag: DiagnosticBag) -> None:
        self.raw = raw
        self.bag = bag

    def __call__(
        self,
        code: str,
        message: str,
        path: Path = (),
        *,
        hint: str | None = None,
        step_id: str | None = None,
        severity: str = "error",
        line_delta: int = 0,
    ) -> None:
        pos = position_of(self.raw.data, path)
        pos = pos if pos and pos[0] else None  # (0, 0): data given as Python objects has no position
        self.bag.add(
            Diagnostic(
                code,
                message,
                path=format_path(self.raw.prefix + path),
                file=self.raw.file,
                line=(pos[0] + line_delta) if pos else None,
                column=pos[1] if pos else None,
                step_id=step_id if step_id is not None else step_id_at(self.raw.data, path),
                hint=hint,
                severity=severity,  # type: ignore[arg-type]
            )
        )


def describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the text {value!r}" if len(value) < 40 else "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def pydantic_diagnostics(exc: ValidationError, raw: RawManifest, cls: type[BaseModel], bag: DiagnosticBag) -> None:
    report = Reporter(raw, bag)
    seen: dict[Path, list[Any]] = {}
    for err in exc.errors(include_url=False):
        path = _data_path(raw.data, tuple(err["loc"]), err["type"] == "missing")
        seen.setdefault(path, []).append(err)
    for path in [p for p in seen if any(len(q) > len(p) and q[: len(p)] == p for q in seen)]:
        del seen[path]  # a union member that failed on the shape, beside one that got further: report that one
    for path, errs in seen.items():
        err = errs[0]
        typ = err["type"]
        loc = tuple(err["loc"])
        owner = _model_at(cls, loc) if loc else cls
        what = _FRIENDLY.get(owner.__name__, f"'{owner.__name__}'") if owner else "this block"
        field = str(path[-1]) if path else ""
        if typ == "extra_forbidden":
            names = _field_names(owner)
            best = did_you_mean(field, names)
            hint = (
                f"did you mean '{best}'?"
                if best
                else (f"allowed fields: {', '.join(sorted(names))}" if names else None)
            )
            report("UNKNOWN_FIELD", f"'{field}' is not a field of {what}", path, hint=hint)
        elif typ == "missing":
            report("MISSING_REQUIRED_FIELD", f"{what} needs '{field}'", path, hint=f"add '{field}: ...'")
        elif typ == "union_tag_invalid":
            tag = str(err.get("ctx", {}).get("tag", err.get("input")))
            best = did_you_mean(tag, STEP_TYPES)
            report(
                "INVALID_VALUE",
                f"'{tag}' is not a step type",
                path + ("type",),
                hint=f"did you mean '{best}'?" if best else f"use one of: {', '.join(STEP_TYPES)}",
            )
        elif typ == "union_tag_not_found":
            report(
                "MISSING_REQUIRED_FIELD",
                "the step has no 'type' and none can be inferred from its fields",
                path,
                hint=f"add 'type:' (one of {', '.join(STEP_TYPES)})",
            )
        elif typ == "literal_error":
            expected = err.get("ctx", {}).get("expected", "")
            got = err.get("input")
            options = re.findall(r"'([^']*)'", str(expected))
            best = did_you_mean(str(got), options) if isinstance(got, str) else None
            report(
                "INVALID_VALUE",
                f"'{field}' must be {expected}, found {describe(got)}",
                path,
                hint=f"did you mean '{best}'?" if best else None,
            )
        elif typ.endswith(("_type", "_parsing")) or typ in ("model_attributes_type", "is_instance_of"):
            expected = sorted({e["type"].removesuffix("_type").removesuffix("_parsing") for e in errs})
            wording = {
                "model": "a mapping",
                "dict": "a mapping",
                "list": "a list",
                "string": "text",
                "int": "an integer",
                "float": "a number",
                "bool": "true or false",
                "model_attributes": "a mapping",
            }
            wanted = " or ".join(dict.fromkeys(wording.get(e, e) for e in expected))
            hint = None
            if field == "version" and isinstance(err.get("input"), int | float):
                hint = f'quote it: version: "{err.get("input")}"'
            report("INVALID_TYPE", f"'{field}' must be {wanted}, found {describe(err.get('input'))}", path, hint=hint)
        else:
            report("INVALID_VALUE", f"'{field}': {err['msg']}", path)
