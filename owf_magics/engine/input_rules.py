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


#: The keys of an input (or schema) that `check_value` reads.
RULE_KEYS = (
    "type", "enum", "pattern", "format", "minLength", "maxLength", "minimum", "maximum", "items", "properties",
    "required",
)  # fmt: skip


_RULES: dict[int, tuple[Any, dict[str, Any]]] = {}  # id(InputSpec) -> (the spec, its rules)


def rules_of(spec: Any) -> dict[str, Any]:
    """The rules an `InputSpec` (or a schema mapping) sets, as a plain dict (unset ones left out);
    an `InputSpec`'s are worked out once (loaded models do not change)."""
    if isinstance(spec, dict):
        return spec
    found = _RULES.get(id(spec))
    if found is not None and found[0] is spec:
        return found[1]
    out = {k: v for k in RULE_KEYS if (v := getattr(spec, k, None)) is not None}
    out.pop("required", None)  # an input's `required` is whether it must be given, checked elsewhere
    if len(_RULES) > 10_000:  # many registries come and go (tests, services): start afresh
        _RULES.clear()
    _RULES[id(spec)] = (spec, out)
    return out


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
    rules = rules_of(spec)
    if value is None or not rules or depth > MAX_DEPTH:
        return
    if len(rules) == 1 and "type" in rules and rules["type"] != "file" and (not typed or type_ok(rules["type"], value)):
        return  # only a type, and it is right (or not asked)

    def add(rule: str, problem: str) -> None:  # made per call, used only on a violation
        label = f"input '{name}'" if where == name else f"input '{name}' at {where}"
        out.append(Violation(name, prefix + rule, f"{label}{problem}", where))

    get = rules.get
    declared = get("type")
    if typed:
        if isinstance(declared, str) and not type_ok(declared, value):
            add("type", f" must be {declared}, got {type(value).__name__}")
            return
        enum = get("enum")
        if isinstance(enum, list) and value not in enum:
            add("enum", f" must be one of {enum}, got {value!r}")
    if declared == "file" and isinstance(value, str):
        why = resolve_file(value, files_root)[1]
        if why is not None:
            add("file", f": file {value!r} {why}")
    if isinstance(value, (str, list)):
        unit = "characters" if isinstance(value, str) else "items"
        low, high = get("minLength"), get("maxLength")
        if isinstance(low, int) and len(value) < low:
            add("minLength", f" must have at least {low} {unit}")
        if isinstance(high, int) and len(value) > high:
            add("maxLength", f" must have at most {high} {unit}")
    if isinstance(value, str):
        pattern = get("pattern")
        if isinstance(pattern, str):
            try:
                matched = re.search(pattern, value) is not None
            except re.error:
                matched = True  # an invalid pattern is reported at load
            if not matched:
                add("pattern", f" must match the pattern {pattern!r}")
        fmt = get("format")
        if isinstance(fmt, str) and not _format_ok(fmt, value):
            add("format", f" is not a valid {fmt}")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = get("minimum"), get("maximum")
        if isinstance(low, int | float) and value < low:
            add("minimum", f" must be at least {low:g}")
        if isinstance(high, int | float) and value > high:
            add("maximum", f" must be at most {high:g}")
    items = get("items")
    if isinstance(value, list) and isinstance(items, dict):
        if items.keys() == {"type"} and items["type"] != "file" and all(type_ok(items["type"], v) for v in value):
            return  # the common case: typed items, all fine (a list has no properties to check)
        for i, item in enumerate(value):
            check_value(
                name, f"{where}[{i}]", items, item, out, files_root=files_root, prefix=f"{prefix}items.",
                typed=True, depth=depth + 1,
            )  # fmt: skip
    props = get("properties")
    if isinstance(value, dict) and isinstance(props, dict):
        listed = get("required")
        required = set(listed) if isinstance(listed, list) else set()
        for key, sub in props.items():
            rule = f"{prefix}properties.{key}."
            if key not in value:
                if key in required or (isinstance(sub, dict) and sub.get("required") is True):
                    add(f"properties.{key}.required", f" is missing the required property '{key}'")
                continue
            if isinstance(sub, dict):
                check_value(
                    name, f"{where}.{key}", sub, value[key], out, files_root=files_root, prefix=rule,
                    typed=True, depth=depth + 1,
                )  # fmt: skip


def rule_problems(name: str, spec: Any, value: Any, files_root: str | os.PathLike[str] | None = None) -> list[str]:
    """What is wrong with `value` for the input's rules (nothing for a None value), as sentences."""
    out: list[Violation] = []
    check_value(name, name, spec, value, out, files_root=files_root)
    return [v.message for v in out]
