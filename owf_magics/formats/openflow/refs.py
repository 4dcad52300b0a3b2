"""OpenFlow references (``{{@var}}``, ``{{node_id.path}}``, a loop's ``{{current}}``) as Jinja
expressions over the OpenWorkflow run (``inputs``, ``steps``, ``item``, ``index``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

REF = re.compile(r"\{\{\s*(@?[A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z0-9_]+)*)\s*\}\}")
WHOLE = re.compile(r"^\s*\{\{\s*@?[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*\s*\}\}\s*$")


def refs_in(value: Any) -> list[tuple[str, list[str]]]:
    """Every reference in a JSON-like value: (name with its ``@``, path parts)."""
    out: list[tuple[str, list[str]]] = []
    if isinstance(value, str):
        for m in REF.finditer(value):
            out.append((m.group(1), [p for p in m.group(2).split(".") if p]))
    elif isinstance(value, dict):
        for v in value.values():
            out.extend(refs_in(v))
    elif isinstance(value, list):
        for v in value:
            out.extend(refs_in(v))
    return out


def path_expr(base: str, parts: list[str]) -> str:
    return base + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in parts)


@dataclass
class Scope:
    """What a reference can name at one point of the flow."""

    variables: dict[str, str]  # variable id -> Jinja expression of its current value
    node_expr: Callable[[str, list[str]], str | None]  # node id, path -> expression (None: unknown)
    loop_keys: list[str] = field(default_factory=list)  # each_key of the enclosing loops, innermost last

    def child(self, loop_key: str | None = None) -> Scope:
        keys = [*self.loop_keys, loop_key] if loop_key else list(self.loop_keys)
        return Scope(dict(self.variables), self.node_expr, keys)

    def expr(self, name: str, parts: list[str]) -> str | None:
        bare = name.lstrip("@")
        if self.loop_keys:
            key = self.loop_keys[-1]
            if bare == key:
                return path_expr("item", parts)
            if bare == f"{key}_index":
                return "index"
        if not name.startswith("@"):
            found = self.node_expr(bare, parts)
            if found is not None:
                return found
        if bare in self.variables:
            return path_expr(f"({self.variables[bare]})", parts)
        return None

    def translate(self, value: Any) -> Any:
        """A JSON-like value with every reference rewritten (unknown ones left as they are, the
        validator reports them). A string that is one reference keeps the value's type."""
        if isinstance(value, str):
            if WHOLE.match(value):
                m = REF.search(value)
                assert m is not None
                found = self.expr(m.group(1), [p for p in m.group(2).split(".") if p])
                return value if found is None else "{{ " + found + " }}"

            def sub(m: re.Match[str]) -> str:
                found = self.expr(m.group(1), [p for p in m.group(2).split(".") if p])
                return m.group(0) if found is None else "{{ " + found + " }}"

            return REF.sub(sub, value)
        if isinstance(value, dict):
            return {k: self.translate(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.translate(v) for v in value]
        return value
