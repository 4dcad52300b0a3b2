"""The Jinja2 sandbox templates run in, with budgets and opaque secrets built in.

On top of Jinja's `ImmutableSandboxedEnvironment` (no underscore attributes, no mutation of
lists or dicts, no unsafe callables):

- a code generator that puts a budget tick at the top of every block (``for`` bodies, macro and
  ``{% call %}`` bodies, ``if`` branches), and routes ``~`` through a size check;
- intercepted ``*``, ``**``, ``%`` and ``+`` (also disables Jinja's constant folding of them at
  compile time, which could build ``10**5000`` during a load; ``-``, ``/`` and ``//`` cannot
  grow a value past its operands);
- every filter, test and global function wrapped: it ticks, refuses secrets as arguments, checks
  the widths and counts it is given (``center``, ``indent``, ``format``, ``batch``, ``slice``,
  ``join``, ``replace``, ``lipsum``, ``round``...) and the size of what it returns;
- calls of string methods (``ljust``, ``zfill``, ``replace``, ``join``, ``format``...) checked
  the same way, and ``getattr``/``getitem`` on a secret refused.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Mapping
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, CompilerExit, Frame
from jinja2.sandbox import ImmutableSandboxedEnvironment

from owf_magics.manifest import budget as B
from owf_magics.manifest.secrets import Secret, refuse_secrets


class BudgetCodeGenerator(CodeGenerator):
    """Jinja's code generator, with a budget tick opening every block and a checked ``~``.

    Every ``for`` body, macro and ``{% call %}`` body (and ``if`` branch, block, ...) is written
    through `blockvisit`, which Jinja opens with ``pass``; here it opens with a tick instead.
    """

    def blockvisit(self, nodes: Any, frame: Frame) -> None:
        try:
            self.writeline("environment.owf_tick()")
            for node in nodes:
                self.visit(node, frame)
        except CompilerExit:
            pass

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.owf_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


# ------------------------------------------------------------------------------------------------
# argument checks for the filters and functions that can amplify their input


def _arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str, default: Any = None) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


def _lines(value: Any) -> int:
    return str(value).count("\n") + 1 if isinstance(value, str) else 1


def _check_center(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    B.check_width(_arg(args, kwargs, 1, "width", 80))


def _check_indent(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    width = _arg(args, kwargs, 1, "width", 4)
    size = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    text = args[0] if args else ""
    B.check_string(len(str(text)) + _lines(text) * max(size, 0))


def _check_batch(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    B.check_items(max(_arg(args, kwargs, 1, "linecount", 0) or 0, 0))


def _check_slice(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    B.check_items(max(_arg(args, kwargs, 1, "slices", 0) or 0, 0))


def _check_format(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    if args and isinstance(args[0], str):
        B.check_percent_format(args[0], kwargs or tuple(args[1:]))


def _check_join(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    items = args[0] if args else ()
    sep = _arg(args, kwargs, 1, "d", "")
    if isinstance(items, str | list | tuple | dict):
        n = len(items)
        B.check_string(n * len(str(sep)) + sum(len(x) for x in items if isinstance(x, str)))


def _check_replace(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    text, old, new = (list(args) + [None, None, None])[:3]
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        count = text.count(old) if old else len(text) + 1
        B.check_string(len(text) + count * max(len(new) - len(old), 0))


def _check_wordwrap(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    text = args[0] if args else ""
    width = _arg(args, kwargs, 1, "width", 79)
    if isinstance(width, int) and width < 1:
        raise B.TemplateLimitError("wordwrap needs a width of at least 1", details={"limit": "width", "value": width})
    B.check_string(2 * len(str(text)))


def _check_json(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    indent = _arg(args, kwargs, 1, "indent", None)
    if isinstance(indent, int):
        B.check_width(indent * 64)
    elif isinstance(indent, str):
        B.check_string(len(indent) * 64)


def _check_round(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    precision = _arg(args, kwargs, 1, "precision", 0)
    if isinstance(precision, int) and abs(precision) > 100:
        raise B.TemplateLimitError(
            "round() precision must be between -100 and 100", details={"limit": "precision", "value": precision}
        )


def _check_lipsum(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    n = _arg(args, kwargs, 0, "n", 5)
    most = _arg(args, kwargs, 3, "max", 100)
    if isinstance(n, int) and isinstance(most, int):
        B.check_string(max(n, 0) * max(most, 0) * 12)


def _check_sum(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    start = _arg(args, kwargs, 2, "start", 0)
    if not isinstance(start, int | float):
        raise B.TemplateLimitError("sum() adds numbers only", details={"limit": "start", "value": type(start).__name__})


def _check_truncate(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    end = _arg(args, kwargs, 3, "end", "...")
    B.check_string(len(str(args[0] if args else "")) + len(str(end)))


#: Filter and function name -> a check of its arguments before it runs.
ARGUMENT_CHECKS = {
    "center": _check_center,
    "indent": _check_indent,
    "batch": _check_batch,
    "slice": _check_slice,
    "format": _check_format,
    "join": _check_join,
    "replace": _check_replace,
    "wordwrap": _check_wordwrap,
    "tojson": _check_json,
    "json": _check_json,
    "round": _check_round,
    "lipsum": _check_lipsum,
    "sum": _check_sum,
    "truncate": _check_truncate,
}


def _string_method_check(name: str, text: str | bytes, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Checks for ``'a'.ljust(10**9)`` and friends, before the method runs."""
    if name in ("center", "ljust", "rjust", "zfill"):
        B.check_width(args[0] if args else 0)
    elif name == "expandtabs":
        size = _arg(args, kwargs, 0, "tabsize", 8)
        tabs = text.count("\t") if isinstance(text, str) else text.count(b"\t")
        B.check_string(len(text) + tabs * max(size, 0))
    elif name == "replace" and isinstance(text, str):
        _check_replace((text, *args), kwargs)
    elif name == "join" and args:
        items = args[0]
        if isinstance(items, list | tuple):
            B.check_string(len(items) * len(text) + sum(len(x) for x in items if isinstance(x, str | bytes)))
        else:
            raise B.TemplateLimitError(
                "str.join() takes a list in templates; use the join filter", details={"limit": "join", "value": ""}
            )
    elif name == "translate":
        B.check_string(len(text) * 16)


def guard(name: str, fn: Any) -> Any:
    """`fn` (a filter, test or global) under the budget: ticks, secret refusal, argument checks, result size."""
    check = ARGUMENT_CHECKS.get(name)

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        B.tick()
        refuse_secrets(args, f"the '{name}' filter or function on")
        refuse_secrets(kwargs.values(), f"the '{name}' filter or function on")
        if check is not None:
            # pass_context/pass_environment filters get the context first: check the data arguments
            data = args[1:] if getattr(fn, "jinja_pass_arg", None) is not None else args
            check(tuple(data), kwargs)
        return B.check_result(fn(*args, **kwargs))

    return guarded


_NUMBERS = frozenset({int, float})


class BudgetedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox with budgets, opaque secrets, and data before attributes on mappings."""

    code_generator_class = BudgetCodeGenerator
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def owf_tick(self) -> None:
        B.tick()

    def owf_concat(self, parts: tuple[Any, ...]) -> str:
        refuse_secrets(parts, "joining text with '~' to")
        B.tick()
        pieces = [p if isinstance(p, str) else str(p) for p in parts]
        B.check_string(sum(map(len, pieces)))
        return "".join(pieces)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "+" and type(left) in _NUMBERS and type(right) in _NUMBERS:
            return left + right  # cannot grow past the operands' sizes by much
        refuse_secrets((left, right), f"the '{operator}' operator on")
        B.tick()
        B.check_binop(operator, left, right)
        return B.check_result(self.binop_table[operator](left, right))

    # `x.items` on a mapping means the key "items", not the dict method: data before attributes
    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Secret):
            refuse_secrets((obj,), f"reading attribute '{attribute}' of")
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Secret):
            refuse_secrets((obj,), "indexing or slicing")
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Any:
        fmt = super().wrap_str_format(value)
        if fmt is None:
            return None
        text = value.__self__
        is_map = value.__name__ == "format_map"

        def checked(*args: Any, **kwargs: Any) -> str:
            refuse_secrets((*args, *kwargs.values()), "str.format on")
            B.tick()
            if is_map and len(args) == 1 and isinstance(args[0], Mapping):
                B.check_brace_format(text, (), args[0])
            else:
                B.check_brace_format(text, args, kwargs)
            return str(B.check_result(fmt(*args, **kwargs)))

        return checked

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        refuse_secrets(args, "passing")
        refuse_secrets(kwargs.values(), "passing")
        B.tick()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str | bytes):
            _string_method_check(getattr(__obj, "__name__", ""), owner, args, kwargs)
        return B.check_result(super().call(__context, __obj, *args, **kwargs))


def finalize(value: Any) -> Any:
    """Every ``{{ }}`` output of a text template: counted, and a secret only whole in a credential field."""
    kind = type(value)
    if kind is str:
        text = value
    elif kind is int or kind is float or kind is bool or value is None:
        return value  # short: Jinja turns it into text
    elif kind is Secret:
        return value.reveal()
    elif isinstance(value, type | types.ModuleType) or callable(value):
        raise B.TemplateError(f"a template cannot print a {kind.__name__}: only data")
    else:
        text = str(value)
    budget = B.ACTIVE.get()
    if budget is not None:
        if len(text) > budget.limits.max_string:
            B.check_string(len(text))  # raises, naming the limit
        budget.add(len(text))
    return text
