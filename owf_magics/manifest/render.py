"""Rendering templates against a run's scope, in Jinja2's sandbox.

A value that is exactly one ``{{ expression }}`` keeps the expression's type; text around an
expression renders to a string. Plain paths (``{{ steps.a.output.x }}``) are looked up directly,
without Jinja. Compiled templates are cached by text, so each distinct template compiles once.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from owf_magics.errors import OWFError
from owf_magics.manifest.templates import TemplateInfo, analyse, environment

_MISSING = object()


class TemplateError(OWFError):
    """A template failed while rendering (an undefined name, a bad operation)."""

    default_code = "VALIDATION"


class _Compiled:
    """A compiled template called with a scope, without Jinja's per-call context set-up.

    Jinja builds each call's context from the template's globals, a ChainMap it iterates twice in
    Python (about 35 µs a call, ten times the expression itself); the globals are flattened here
    once, and each call copies them into the scope the way Jinja's ``new_context`` does.
    """

    __slots__ = ("blocks", "context", "env", "flat", "name", "root")

    def __init__(self, template: Any) -> None:
        self.env = template.environment
        self.context = self.env.context_class
        self.flat = dict(template.globals)
        self.name = template.name
        self.blocks = template.blocks
        self.root = template.root_render_func

    def expression(self, scope: Mapping[str, Any]) -> Any:
        """The value of a compiled expression (what ``TemplateExpression.__call__`` returns)."""
        ctx = self.context(self.env, {**self.flat, **scope}, self.name, self.blocks, globals=self.flat)
        for _ in self.root(ctx):
            pass
        return ctx.vars["result"]

    def render(self, scope: Mapping[str, Any]) -> str:
        """The rendered text (what ``Template.render`` returns)."""
        ctx = self.context(self.env, {**self.flat, **scope}, self.name, self.blocks, globals=self.flat)
        text: str = self.env.concat(self.root(ctx))
        return text


@lru_cache(maxsize=16384)
def _compiled_expression(source: str) -> _Compiled:
    return _Compiled(environment().compile_expression(source, undefined_to_none=False)._template)


@lru_cache(maxsize=16384)
def _compiled_template(source: str) -> _Compiled:
    return _Compiled(environment().from_string(source))


def _lookup(scope: Mapping[str, Any], path: tuple[str | int, ...]) -> Any:
    node: Any = scope
    for part in path:
        if isinstance(node, Mapping):
            if part not in node:
                return _MISSING
            node = node[part]
        elif isinstance(node, list | tuple) and isinstance(part, int):
            if not -len(node) <= part < len(node):
                return _MISSING
            node = node[part]
        else:
            return _MISSING
    return node


def _path_text(path: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(path))


def render_string(text: str, scope: Mapping[str, Any]) -> Any:
    """Render one string; a lone ``{{ expression }}`` keeps its type."""
    info: TemplateInfo = analyse(text)
    if not info.is_template:
        return text
    if info.error:
        raise TemplateError(f"template does not parse: {info.error}", details={"template": text})
    try:
        if info.simple_paths is not None:
            values = []
            for path in info.simple_paths:
                value = _lookup(scope, path)
                if value is _MISSING:
                    raise TemplateError(
                        f"'{_path_text(path)}' is undefined",
                        details={"template": text, "path": _path_text(path)},
                    )
                values.append(value)
            if info.single:
                return values[0]
            return _substitute(text, values)
        if info.single:
            inner = info.jinja.strip()[2:-2]
            return _compiled_expression(inner).expression(scope)
        return _compiled_template(info.jinja).render(scope)
    except TemplateError:
        raise
    except Exception as exc:  # jinja raises many kinds; all are the template's fault
        raise TemplateError(f"template failed: {type(exc).__name__}: {exc}", details={"template": text}) from exc


def _substitute(text: str, values: list[Any]) -> str:
    from owf_magics.manifest.templates import SIMPLE_RE

    it = iter(values)
    return SIMPLE_RE.sub(lambda _m: _to_text(next(it)), text)


def _to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        import json

        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


def render(value: Any, scope: Mapping[str, Any]) -> Any:
    """Render every string inside a JSON-like value."""
    if isinstance(value, str):
        return render_string(value, scope)
    if isinstance(value, dict):
        return {k: render(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, scope) for v in value]
    return value


def truthy(value: Any) -> bool:
    """How a condition's value decides: text 'false'/'0'/'' and empty collections are false."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no", "none", "null")
    return bool(value)


def redact(value: Any, secrets: Mapping[str, str]) -> Any:
    """Replace every secret value inside `value` with ``***``."""
    needles = [s for s in secrets.values() if isinstance(s, str) and len(s) >= 3]
    if not needles:
        return value
    return _redact(value, sorted(needles, key=len, reverse=True))


def _redact(value: Any, needles: list[str]) -> Any:
    if isinstance(value, str):
        for n in needles:
            if n in value:
                value = value.replace(n, "***")
        return value
    if isinstance(value, dict):
        return {k: _redact(v, needles) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v, needles) for v in value]
    return value
