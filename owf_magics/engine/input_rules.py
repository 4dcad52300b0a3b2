"""An input's declared rules, checked with its type and ``enum`` before anything runs (OpenFlow's
variable ``validation``, which `formats.openflow` maps onto the workflow's inputs).

Rules: ``pattern``, ``minLength``/``maxLength`` (characters of a string, items of an array),
``minimum``/``maximum``, ``format``; ``items`` (a schema every array item must satisfy) and
``properties`` (a schema per object property; ``required: true`` on a property, or a JSON-Schema
``required: [names]`` list next to ``properties``, makes it mandatory). A schema inside ``items``
or ``properties`` has the same keys plus ``type``. A ``file`` value must name an existing regular
file inside the registry's ``files_root`` (the working directory by default) once ``..`` and
symbolic links are resolved; the input then holds the resolved absolute path.

Every problem is a `Violation` naming the input, the rule and where in the value it is.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

#: The Python types of each declared type (``file`` is a path string, checked on disk).
TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "number": (int, float),
    "integer": int,
    "boolean": bool,
    "array": list,
    "object": dict,
    "file": str,
    "null": type(None),
}

#: How deep `items`/`properties` schemas are followed (a schema is data from a manifest).
MAX_DEPTH = 32


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: the input, the rule (``minLength``, ``items.type``...), where in the value."""

    input: str
    rule: str
    message: str
    where: str  # the input's name, or e.g. ``tags[2]``, ``person.name``

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input, "rule": self.rule, "message": self.message, "where": self.where}


def _format_ok(fmt: str, value: str) -> bool:
    if fmt == "email":
        return EMAIL.match(value) is not None
    if fmt in ("url", "uri"):
        parsed = urlparse(value)
        return parsed.scheme in ("http", "https", "ftp", "ws", "wss", "file") and bool(parsed.netloc or parsed.path)
    if fmt == "date":
        try:
            datetime.date.fromisoformat(value)
        except ValueError:
            return False
        return True
    if fmt == "uuid":
        try:
            uuid.UUID(value)
        except ValueError:
            return False
        return True
    if fmt == "base64":
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
        return True
    return True  # formats we do not know are not checked (as JSON Schema does)


def _get(spec: Any, key: str) -> Any:
    return spec.get(key) if isinstance(spec, Mapping) else getattr(spec, key, None)


def type_ok(declared: str | None, value: Any) -> bool:
    """Whether `value` has the declared type (any value for an undeclared or unknown type)."""
    expected = TYPES.get(declared or "")
    if expected is None:
        return True
    if declared in ("number", "integer") and isinstance(value, bool):
        return False
    return isinstance(value, expected)


def resolve_file(value: str, files_root: str | os.PathLike[str] | None) -> tuple[str | None, str | None]:
    """``(resolved path, None)`` for an existing file inside the root, else ``(None, why)``.

    The path (relative to the root, or absolute) is resolved first, ``..`` and links included,
    so neither a ``../`` nor a link pointing out of the root gets past the check.
    """
    root = Path(files_root if files_root is not None else os.getcwd()).resolve()
    try:
        path = (root / value).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a link loop, a NUL byte
        return None, f"cannot be resolved ({type(exc).__name__})"
    if not path.is_relative_to(root):
        return None, f"resolves outside the files root {str(root)!r}"
    if not path.is_file():
        return None, "does not exist" if not path.exists() else "is not a regular file"
    return str(path), None


def check_value(
    name: str,
    where: str,
    spec: Any,
    value: Any,
    out: list[Violation],
    *,
    files_root: str | os.PathLike[str] | None = None,
    prefix: str = "",
    typed: bool = False,
    depth: int = 0,
) -> None:
    """Append what is wrong with `value` for `spec` (an `InputSpec` or a schema mapping) to `out`.

    `typed`: also check ``type`` and ``enum`` (the top-level input's are checked by the caller).
    `prefix` is the rule path so far (``items.``, ``properties.name.``).
    """
    if value is None or depth > MAX_DEPTH:
        return
    label = f"input '{name}'" if where == name else f"input '{name}' at {where}"
    declared = _get(spec, "type")
    if typed:
        if isinstance(declared, str) and not type_ok(declared, value):
            got = type(value).__name__
            out.append(Violation(name, f"{prefix}type", f"{label} must be {declared}, got {got}", where))
            return
        enum = _get(spec, "enum")
        if isinstance(enum, list) and value not in enum:
            out.append(Violation(name, f"{prefix}enum", f"{label} must be one of {enum}, got {value!r}", where))
    if declared == "file" and isinstance(value, str):
        _, why = resolve_file(value, files_root)
        if why is not None:
            out.append(Violation(name, f"{prefix}file", f"{label}: file {value!r} {why}", where))
    if isinstance(value, str | list):
        unit = "characters" if isinstance(value, str) else "items"
        low, high = _get(spec, "minLength"), _get(spec, "maxLength")
        if isinstance(low, int) and len(value) < low:
            out.append(Violation(name, f"{prefix}minLength", f"{label} must have at least {low} {unit}", where))
        if isinstance(high, int) and len(value) > high:
            out.append(Violation(name, f"{prefix}maxLength", f"{label} must have at most {high} {unit}", where))
    if isinstance(value, str):
        pattern = _get(spec, "pattern")
        if isinstance(pattern, str):
            try:
                matched = re.search(pattern, value) is not None
            except re.error:
                matched = True  # an invalid pattern is reported at load
            if not matched:
                out.append(Violation(name, f"{prefix}pattern", f"{label} must match the pattern {pattern!r}", where))
        fmt = _get(spec, "format")
        if isinstance(fmt, str) and not _format_ok(fmt, value):
            out.append(Violation(name, f"{prefix}format", f"{label} is not a valid {fmt}", where))
    if isinstance(value, int | float) and not isinstance(value, bool):
        low, high = _get(spec, "minimum"), _get(spec, "maximum")
        if isinstance(low, int | float) and value < low:
            out.append(Violation(name, f"{prefix}minimum", f"{label} must be at least {low:g}", where))
        if isinstance(high, int | float) and value > high:
            out.append(Violation(name, f"{prefix}maximum", f"{label} must be at most {high:g}", where))
    items = _get(spec, "items")
    if isinstance(value, list) and isinstance(items, Mapping):
        for i, item in enumerate(value):
            check_value(
                name, f"{where}[{i}]", items, item, out, files_root=files_root, prefix=f"{prefix}items.",
                typed=True, depth=depth + 1,
            )  # fmt: skip
    props = _get(spec, "properties")
    if isinstance(value, dict) and isinstance(props, Mapping):
        listed = _get(spec, "required") if isinstance(spec, Mapping) else None
        required = set(listed) if isinstance(listed, list) else set()
        for key, sub in props.items():
            rule = f"{prefix}properties.{key}."
            if key not in value:
                if key in required or (isinstance(sub, Mapping) and sub.get("required") is True):
                    message = f"{label} is missing the required property '{key}'"
                    out.append(Violation(name, f"{rule}required", message, where))
                continue
            if isinstance(sub, Mapping):
                check_value(
                    name, f"{where}.{key}", sub, value[key], out, files_root=files_root, prefix=rule,
                    typed=True, depth=depth + 1,
                )  # fmt: skip


def rule_problems(name: str, spec: Any, value: Any, files_root: str | os.PathLike[str] | None = None) -> list[str]:
    """What is wrong with `value` for the input's rules (nothing for a None value), as sentences."""
    out: list[Violation] = []
    check_value(name, name, spec, value, out, files_root=files_root)
    return [v.message for v in out]
