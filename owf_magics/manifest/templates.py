"""Templates: ``{{ ... }}`` expressions in Jinja2's sandbox, analysed once per distinct text.

`analyse` finds which steps and inputs a template reads and reports syntax errors; it is cached
by text, so a manifest with a thousand similar steps parses each distinct template once. The
spec's ``&&``, ``||`` and ``!`` are rewritten to Jinja's ``and``, ``or`` and ``not`` first.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment

#: Names a template may read at the top level, and where they are defined.
ROOTS = {
    "inputs": "everywhere",
    "steps": "everywhere",
    "env": "everywhere (declared names only: runtime.environment, OpenWorkflow(env=...))",
    "secrets": "whole, in credential fields of action inputs only (opaque, redacted from results)",
    "trigger": "everywhere",
    "item": "inside a loop",
    "index": "inside a loop",
    "isFirst": "inside a loop",
    "isLast": "inside a loop",
    "error": "inside a try step's catch and finally blocks",
    "loop": "inside a {% for %} block",
}
LOOP_NAMES = frozenset({"item", "index", "isFirst", "isLast"})

_LITERALS = frozenset({"true", "false", "none", "True", "False", "None"})
_SIMPLE_PATH = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[\d+\]|\['[^'\]]*'\]|\[\"[^\"\]]*\"\])*"
SIMPLE_RE = re.compile(r"\{\{\s*(" + _SIMPLE_PATH + r")\s*\}\}")
_ANY_TAG = re.compile(r"\{\{|\{%|\{#")
_SINGLE_RE = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.S)
_SEGMENT_RE = re.compile(r"\.([A-Za-z_]\w*)|\[(\d+)\]|\['([^'\]]*)'\]|\[\"([^\"\]]*)\"\]")


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    """What one template text reads, and whether it parses.

    Attributes:
        source: The text as written.
        jinja: The text Jinja sees (``&&``/``||``/``!`` rewritten).
        is_template: Whether the text contains any ``{{``, ``{%`` or ``{#``.
        single: Whether the text is exactly one ``{{ expression }}`` (its value keeps its type).
        roots: Top-level names read (``inputs``, ``steps``, ``item``, ...), excluding locals.
        steps: Step ids read as ``steps.<id>``.
        inputs: Input names read as ``inputs.<name>``.
        filters: Filter and test names used.
        error: A syntax error message, or None.
        error_line: The 1-based line of the error inside the template.
        simple_paths: For templates made only of plain paths, each path's segments (fast rendering).
        env: Environment variable names read as ``env.<NAME>``.
        secret_reads: (line, ``secrets.NAME`` or ``env.NAME``) for every secret read whole.
        secret_misuse: (line, what) for every operation applied to a secret (always refused).
    """

    source: str
    jinja: str
    is_template: bool
    single: bool
    roots: frozenset[str]
    steps: frozenset[str]
    inputs: frozenset[str]
    filters: frozenset[str]
    calls: frozenset[str]
    error: str | None = None
    error_line: int | None = None
    simple_paths: tuple[tuple[str | int, ...], ...] | None = None
    env: frozenset[str] = frozenset()
    secret_reads: tuple[tuple[int, str], ...] = ()
    secret_misuse: tuple[tuple[int, str], ...] = ()


def _rewrite_operators(code: str) -> str:
    """``&&`` → ``and``, ``||`` → ``or``, ``!x`` → ``not x``, outside string literals."""
    out: list[str] = []
    i, n = 0, len(code)
    quote: str | None = None
    while i < n:
        c = code[i]
        if quote:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(code[i + 1])
                i += 2
                continue
            if c == quote:
                quote = None
            i += 1
            continue
        if c in "'\"":
            quote = c
            out.append(c)
        elif code.startswith("&&", i):
            out.append(" and ")
            i += 2
            continue
        elif code.startswith("||", i):
            out.append(" or ")
            i += 2
            continue
        elif c == "!" and not code.startswith("!=", i):
            out.append(" not ")
        else:
            out.append(c)
        i += 1
    return "".join(out)


_BLOCK_RE = re.compile(r"(\{\{.*?\}\}|\{%.*?%\})", re.S)


def to_jinja(text: str) -> str:
    """Rewrite the spec's operators inside every ``{{ }}`` and ``{% %}`` of `text`."""
    if "&" not in text and "|" not in text and "!" not in text:
        return text
    return _BLOCK_RE.sub(lambda m: m.group(0)[:2] + _rewrite_operators(m.group(0)[2:-2]) + m.group(0)[-2:], text)


def _split_path(path: str) -> tuple[str | int, ...]:
    head = re.match(r"[A-Za-z_]\w*", path)
    assert head is not None
    parts: list[str | int] = [head.group(0)]
    for m in _SEGMENT_RE.finditer(path, head.end()):
        attr, idx, sq, dq = m.groups()
        parts.append(int(idx) if idx is not None else (attr or sq or dq or ""))
    return tuple(parts)


@lru_cache(maxsize=65536)
def analyse(text: str) -> TemplateInfo:
    """Parse `text` once and report what it reads (cached by text)."""
    if not _ANY_TAG.search(text):
        empty: frozenset[str] = frozenset()
        return TemplateInfo(text, text, False, False, empty, empty, empty, empty, empty)
    single = bool(_SINGLE_RE.match(text)) and text.count("{{") == 1
    # fast path: only plain dotted paths, no filters, operators or statements
    if "{%" not in text and "{#" not in text:
        found = SIMPLE_RE.findall(text)
        literal = any(p.split(".")[0].split("[")[0] in _LITERALS for p in found)
        if found and not literal and len(found) == text.count("{{") and len(found) == text.count("}}"):
            paths = tuple(_split_path(p) for p in found)
            reads, misuse = _simple_secret_uses(text, paths)
            return TemplateInfo(
                text,
                text,
                True,
                single,
                frozenset(str(p[0]) for p in paths),
                frozenset(str(p[1]) for p in paths if p[0] == "steps" and len(p) > 1),
                frozenset(str(p[1]) for p in paths if p[0] == "inputs" and len(p) > 1),
                frozenset(),
                frozenset(),
                simple_paths=paths,
                env=frozenset(str(p[1]) for p in paths if p[0] == "env" and len(p) > 1),
                secret_reads=reads,
                secret_misuse=misuse,
            )
    none: frozenset[str] = frozenset()
    try:
        return _analyse_jinja(text, single)
    except RecursionError:  # Jinja's parser and node walks recurse once per nesting level
        return TemplateInfo(text, text, True, single, none, none, none, none, none, "the template nests too deeply", 1)
    except Exception as exc:
        message = f"the template cannot be compiled: {type(exc).__name__}: {str(exc)[:200]}"
        return TemplateInfo(text, text, True, single, none, none, none, none, none, message, 1)


def _secret_path(path: tuple[str | int, ...]) -> str | None:
    """``secrets.NAME`` or ``env.NAME`` (a credential-like name) when a path reads a secret."""
    from owf_magics.manifest.secrets import is_secret_name

    if path[0] == "secrets":
        return f"secrets.{path[1]}" if len(path) > 1 else "secrets"
    if path[0] == "env" and len(path) > 1 and is_secret_name(str(path[1])):
        return f"env.{path[1]}"
    return None


def _simple_secret_uses(
    text: str, paths: tuple[tuple[str | int, ...], ...]
) -> tuple[tuple[tuple[int, str], ...], tuple[tuple[int, str], ...]]:
    reads: list[tuple[int, str]] = []
    misuse: list[tuple[int, str]] = []
    for path in paths:
        name = _secret_path(path)
        if name is None:
            continue
        line = text[: text.find(str(path[1]) if len(path) > 1 else str(path[0]))].count("\n") + 1
        if len(path) == 1:
            misuse.append((line, "reading all of 'secrets'"))
        elif len(path) > 2:
            misuse.append((line, f"reading a part of {name}"))
        else:
            reads.append((line, name))
    return tuple(reads), tuple(misuse)


def _analyse_jinja(text: str, single: bool) -> TemplateInfo:
    from jinja2 import TemplateSyntaxError, meta, nodes

    env = environment()
    source = to_jinja(text)
    try:
        ast = env.parse(source)
    except TemplateSyntaxError as exc:
        empty: frozenset[str] = frozenset()
        return TemplateInfo(text, source, True, single, empty, empty, empty, empty, empty, exc.message, exc.lineno)
    loader = next(ast.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)), None)
    if loader is not None:  # the sandbox has no template loader: these could only fail at run time
        empty = frozenset()
        tag = {"Include": "include", "Import": "import", "FromImport": "from ... import", "Extends": "extends"}
        message = f"'{{% {tag[type(loader).__name__]} %}}' is not allowed: templates cannot load other templates"
        return TemplateInfo(text, source, True, single, empty, empty, empty, empty, empty, message, loader.lineno)
    try:
        roots = frozenset(meta.find_undeclared_variables(ast))
    except TemplateSyntaxError:  # an unknown filter or test: report it below, as a filter name
        loads = {n.name for n in ast.find_all(nodes.Name) if n.ctx == "load"}
        roots = frozenset(loads - {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")})
    steps: set[str] = set()
    inputs: set[str] = set()
    filters: set[str] = set()
    calls: set[str] = set()
    for node in ast.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter, nodes.Test, nodes.Call)):
        if isinstance(node, nodes.Filter | nodes.Test):
            filters.add(node.name)
            continue
        if isinstance(node, nodes.Call):
            if isinstance(node.node, nodes.Name):
                calls.add(node.node.name)
            continue
        target = node.node if isinstance(node, nodes.Getattr | nodes.Getitem) else None
        if not isinstance(target, nodes.Name) or target.name not in ("steps", "inputs"):
            continue
        if isinstance(node, nodes.Getattr):
            key: Any = node.attr
        elif isinstance(node, nodes.Getitem):
            arg = node.arg
            key = arg.value if isinstance(arg, nodes.Const) else None
        if isinstance(key, str):
            (steps if target.name == "steps" else inputs).add(key)
    env_names, reads, misuse = _secret_uses(ast)
    return TemplateInfo(
        text,
        source,
        True,
        single,
        roots,
        frozenset(steps),
        frozenset(inputs),
        frozenset(filters),
        frozenset(calls),
        env=env_names,
        secret_reads=reads,
        secret_misuse=misuse,
    )


def _describe(parent: Any) -> str:
    from jinja2 import nodes

    if isinstance(parent, nodes.Filter):
        return f"the '{parent.name}' filter on"
    if isinstance(parent, nodes.Test):
        return f"the '{parent.name}' test on"
    if isinstance(parent, nodes.Getattr | nodes.Getitem):
        return "reading a part of (attribute, method, index or slice)"
    if isinstance(parent, nodes.Call):
        return "passing to a function or method"
    if isinstance(parent, nodes.BinExpr | nodes.UnaryExpr | nodes.Concat):
        return "an operator on"
    if isinstance(parent, nodes.Compare | nodes.Operand):
        return "comparing"
    if isinstance(parent, nodes.For):
        return "iterating over"
    if isinstance(parent, nodes.Assign | nodes.Keyword | nodes.Pair | nodes.List | nodes.Tuple | nodes.Dict):
        return "copying"
    return "using"


def _secret_uses(ast: Any) -> tuple[frozenset[str], tuple[tuple[int, str], ...], tuple[tuple[int, str], ...]]:
    """Environment names read, secrets read whole, and operations applied to secrets, with lines."""
    from jinja2 import nodes

    from owf_magics.manifest.secrets import is_secret_name

    env_names: set[str] = set()
    reads: list[tuple[int, str]] = []
    misuse: list[tuple[int, str]] = []
    parents: dict[int, Any] = {}
    names: list[Any] = []
    stack: list[Any] = [ast]
    while stack:
        here = stack.pop()
        for child in here.iter_child_nodes():
            parents[id(child)] = here
            stack.append(child)
            if isinstance(child, nodes.Name):
                names.append(child)
    for node in names:
        parent = parents.get(id(node))
        if not isinstance(node, nodes.Name) or node.ctx != "load" or node.name not in ("secrets", "env"):
            continue
        key: Any = None
        if isinstance(parent, nodes.Getattr) and parent.node is node:
            key = parent.attr
        elif isinstance(parent, nodes.Getitem) and parent.node is node and isinstance(parent.arg, nodes.Const):
            key = parent.arg.value
        if node.name == "env":
            if isinstance(key, str):
                env_names.add(key)
                if is_secret_name(key):
                    _classify(f"env.{key}", parents.get(id(parent)), parent, reads, misuse)
            continue
        if not isinstance(key, str):
            misuse.append((node.lineno, "reading all of 'secrets'"))
            continue
        _classify(f"secrets.{key}", parents.get(id(parent)), parent, reads, misuse)
    return frozenset(env_names), tuple(sorted(reads)), tuple(sorted(misuse))


def _classify(name: str, holder: Any, expr: Any, reads: list[tuple[int, str]], misuse: list[tuple[int, str]]) -> None:
    """A secret read whole directly into ``{{ }}`` is a read; anything else around it is a misuse."""
    from jinja2 import nodes

    if isinstance(holder, nodes.Output):
        reads.append((expr.lineno, name))
    else:
        misuse.append((expr.lineno, f"{_describe(holder)} {name}"))


def iter_strings(value: Any, path: tuple[str | int, ...] = ()) -> Iterable[tuple[tuple[str | int, ...], str]]:
    """Every string inside a JSON-like value, with its path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from iter_strings(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from iter_strings(v, path + (i,))


# ------------------------------------------------------------------------------------------------
# the sandboxed environment, its filters and functions


def _length(value: Any) -> int:
    return len(value) if value is not None else 0


def _contains(container: Any, value: Any) -> bool:
    if container is None:
        return False
    if isinstance(container, dict):
        return value in container
    return value in container


def _starts_with(value: Any, prefix: str) -> bool:
    return isinstance(value, str) and value.startswith(prefix)


def _ends_with(value: Any, suffix: str) -> bool:
    return isinstance(value, str) and value.endswith(suffix)


def _avg(values: Any) -> float | None:
    items = list(values or [])
    return sum(items) / len(items) if items else None


def _to_json(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, sort_keys=False, default=str, ensure_ascii=False)


def _round(value: Any, precision: int = 0, method: str = "common") -> float:
    if method == "ceil":
        return float(math.ceil(value * 10**precision) / 10**precision)
    if method == "floor":
        return float(math.floor(value * 10**precision) / 10**precision)
    return round(float(value), precision)


def _split(value: str, sep: str | None = None) -> list[str]:
    return value.split(sep)


def _trim(value: Any) -> str:
    return str(value).strip()


SPEC_FUNCTIONS: dict[str, Any] = {
    "length": _length,
    "contains": _contains,
    "startsWith": _starts_with,
    "endsWith": _ends_with,
    "upper": lambda v: str(v).upper(),
    "lower": lambda v: str(v).lower(),
    "trim": _trim,
    "split": _split,
    "join": lambda v, d="": d.join(str(x) for x in v),
    "sum": lambda v: sum(v or []),
    "avg": _avg,
    "min": lambda v: min(v) if v else None,
    "max": lambda v: max(v) if v else None,
    "json": _to_json,
    "round": _round,
    "keys": lambda v: list(v.keys()),
    "values": lambda v: list(v.values()),
}


@lru_cache(maxsize=1)
def environment() -> SandboxedEnvironment:
    """The one sandboxed Jinja environment: no attribute escapes, budgets, opaque secrets."""
    from jinja2 import StrictUndefined

    from owf_magics.manifest.sandbox import BudgetedSandbox, finalize, guard

    env = BudgetedSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True, finalize=finalize)
    for name, fn in SPEC_FUNCTIONS.items():
        env.filters.setdefault(name, fn)
        env.globals.setdefault(name, fn)
    # the spec's spellings win over Jinja's for these
    for name in ("contains", "startsWith", "endsWith", "json", "avg", "round", "trim", "split"):
        env.filters[name] = SPEC_FUNCTIONS[name]
    env.tests["contains"] = _contains
    for table in (env.filters, env.tests, env.globals):
        for name, fn in list(table.items()):
            if callable(fn) and not isinstance(fn, type):
                table[name] = guard(name, fn)
    return env


@lru_cache(maxsize=1)
def known_filters() -> frozenset[str]:
    env = environment()
    return frozenset(env.filters) | frozenset(env.tests)


@lru_cache(maxsize=1)
def known_functions() -> frozenset[str]:
    return frozenset(environment().globals)
