"""Rendering templates against a run's scope, in Jinja2's sandbox.

A value that is exactly one ``{{ expression }}`` keeps the expression's type; text around an
expression renders to a string. Plain paths (``{{ steps.a.output.x }}``) are looked up directly,
without Jinja. Compiled templates are cached by text, so each distinct template compiles once.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from owf_magics.manifest import redaction
from owf_magics.manifest.budget import TemplateError, TemplateLimitError, check_string, start, stop
from owf_magics.manifest.secrets import EnvView, Secret, SecretMap, SecretUseError, reveal
from owf_magics.manifest.templates import TemplateInfo, analyse, environment

__all__ = ["SecretUseError", "TemplateError", "TemplateLimitError", "redact", "render", "render_string", "truthy"]

_MISSING = object()


class _Compiled:
    """A compiled template called with a scope, without Jinja's per-call context set-up.

    Jinja builds each call's context from the template's globals, a ChainMap it iterates twice in
    Python (about 35 µs a call, ten times the expression itself); the globals are flattened here
    once, and each call copies them into the scope the way Jinja's ``new_context`` does.
    """

    __slots__ = ("blocks", "env", "flat", "make", "name", "root_render_func")

    def __init__(self, template: Any) -> None:
        self.env = template.environment
        self.make = self.env.context_class
        self.flat = dict(template.globals)
        self.name = template.name
        self.blocks = template.blocks
        self.root_render_func = template.root_render_func

    def new_context(self, scope: Mapping[str, Any]) -> Any:
        """What ``Template.new_context(dict(scope))`` returns."""
        return self.make(self.env, {**self.flat, **scope}, self.name, self.blocks, globals=self.flat)

    def expression(self, scope: Mapping[str, Any]) -> Any:
        """The value of a compiled expression (what ``TemplateExpression.__call__`` returns)."""
        ctx = self.new_context(scope)
        for _ in self.root_render_func(ctx):
            pass
        return ctx.vars["result"]


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


def render_string(text: str, scope: Mapping[str, Any], field: str | None = None) -> Any:
    """Render one string; a lone ``{{ expression }}`` keeps its type.

    Every Jinja evaluation runs under the budget of `owf_magics.manifest.budget` (sizes,
    iterations, time); a secret comes out whole only inside `secrets.credential_field()`.
    `field` names the field in errors (``input.url``, ``expression``...).
    """
    info: TemplateInfo = analyse(text)
    if not info.is_template:
        return text
    if info.error:
        raise TemplateError(f"template does not parse: {info.error}", details=_details(text, field))
    try:
        if info.simple_paths is not None:
            values = []
            for path in info.simple_paths:
                value = _lookup(scope, path)
                if value is _MISSING:
                    raise TemplateError(
                        f"'{_path_text(path)}' is undefined",
                        details={**_details(text, field), "path": _path_text(path)},
                    )
                values.append(value)
            if info.single:
                return reveal(values[0]) if isinstance(values[0], Secret | SecretMap | EnvView) else values[0]
            return _substitute(text, values)
        budget, token = start()
        try:
            if info.single:
                value = _data(_compiled_expression(info.jinja.strip()[2:-2]).expression(scope))
            else:
                value = _join(_compiled_template(info.jinja), scope, budget.limits.max_string)
        finally:
            stop(token)
        return reveal(value) if budget.saw_secret or isinstance(value, SecretMap | EnvView) else value
    except TemplateError as exc:
        if field is not None and "field" not in exc.details:
            exc.details["field"] = field
            exc.message = f"{field}: {exc.message}"
            exc.args = (exc.message,)
        if "template" not in exc.details:
            exc.details["template"] = text
        raise
    except Exception as exc:  # jinja raises many kinds; all are the template's fault
        where = f"{field}: " if field else ""
        raise TemplateError(
            f"{where}template failed: {type(exc).__name__}: {str(exc)[:500]}", details=_details(text, field)
        ) from exc


_PLAIN = (str, int, float, bool, type(None))


def _data(value: Any) -> Any:
    """An expression's value as data: iterators become lists; functions, classes and undefined are refused."""
    from jinja2 import Undefined

    from owf_magics.manifest.budget import check_items

    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if isinstance(value, range | map | filter) or inspect.isgenerator(value):
        items: list[Any] = []
        for item in value:
            items.append(item)
            check_items(len(items))
        value = items
    _check_data(value)
    return value


def _check_data(value: Any) -> None:
    from jinja2 import Undefined

    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (*_PLAIN, Secret)):
            continue
        if isinstance(item, Undefined):
            item._fail_with_undefined_error()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, type | types.ModuleType) or callable(item) or inspect.isgenerator(item):
            raise TemplateError(
                f"a template's value must be data, not {type(item).__name__}",
                details={"type": type(item).__name__},
            )


def _details(text: str, field: str | None) -> dict[str, Any]:
    return {"template": text, "field": field} if field is not None else {"template": text}


def _join(template: Any, scope: Mapping[str, Any], most: int) -> str:
    """A text template's output, piece by piece, so its total size is bounded while it is built."""
    parts: list[str] = []
    size = 0
    for piece in template.root_render_func(template.new_context(scope)):
        size += len(piece)
        if size > most:
            check_string(size)  # raises, naming the limit
        parts.append(piece)
    return "".join(parts)


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


def render(value: Any, scope: Mapping[str, Any], field: str | None = None) -> Any:
    """Render every string inside a JSON-like value (`field` names it in errors)."""
    if isinstance(value, str):
        return render_string(value, scope, field)
    if isinstance(value, dict):
        return {k: render(v, scope, f"{field}.{k}" if field else None) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, scope, f"{field}[{i}]" if field else None) for i, v in enumerate(value)]
    return value


def truthy(value: Any) -> bool:
    """How a condition's value decides: text 'false'/'0'/'' and empty collections are false."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no", "none", "null")
    return bool(value)


def redact(value: Any, secrets: Mapping[str, str]) -> Any:
    """Replace every secret value, and its encodings, inside `value` with ``***`` (see `redaction`)."""
    return redaction.redact(value, secrets)
