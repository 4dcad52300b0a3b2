"""Template budgets: every evaluation of a ``{{ template }}`` is bounded in size, iterations and time.

A template runs synchronously on the run's event loop, so nothing outside it can stop it: the
budget is enforced from inside, while it runs. The sandbox (`manifest.templates`) calls in here
before every operation that can grow a value (``*``, ``**``, ``%``, ``+``, ``~``, ``format``,
padding filters, ``lipsum``, ``batch``, ``join``...), after every filter and call (the size of what
it produced), and at the top of every ``for`` body and macro call (one iteration, and the clock).

The clock is the smaller of the evaluation's own allowance and the deadline of the step or
workflow that is rendering it (`deadline`), so a step's ``timeout:`` stops a template too.

Exceeding a bound raises `TemplateLimitError`, a `TemplateError` whose details name the limit
(``limit``, ``value``); the caller adds the field. See docs/security.md for the defaults.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

from owf_magics.errors import OWFError


class TemplateError(OWFError):
    """A template failed while rendering (an undefined name, a bad operation, a budget exceeded)."""

    default_code = "VALIDATION"


class TemplateLimitError(TemplateError):
    """A template exceeded one of its `TemplateLimits`."""


@dataclass(frozen=True, slots=True)
class TemplateLimits:
    """The budget of one template evaluation (``OpenWorkflow(template_limits=...)``).

    Attributes:
        max_string: Characters in any one string a template produces.
        max_items: Items in any one list, tuple or mapping a template produces.
        max_int_bits: Bits in any integer a template computes (4096 bits is about 1,233 digits).
        max_total: Characters and items produced over the whole evaluation, intermediate values
            included (so a loop cannot build many strings each under `max_string`).
        max_iterations: Loop iterations, macro calls and filter or function calls per evaluation.
        max_seconds: Wall time per evaluation (a step's or workflow's deadline can make it shorter).
    """

    max_string: int = 1_000_000
    max_items: int = 100_000
    max_int_bits: int = 4096
    max_total: int = 10_000_000
    max_iterations: int = 100_000
    max_seconds: float = 2.0

    @classmethod
    def coerce(cls, value: TemplateLimits | Mapping[str, Any] | None) -> TemplateLimits:
        """`TemplateLimits` from itself, a mapping of its fields, or None (the defaults)."""
        if value is None:
            return DEFAULT_LIMITS
        if isinstance(value, TemplateLimits):
            return value
        unknown = set(value) - set(cls.__dataclass_fields__)
        if unknown:
            raise OWFError(
                f"unknown template limit(s): {', '.join(sorted(unknown))}",
                code="VALIDATION",
                details={"known": sorted(cls.__dataclass_fields__)},
            )
        return cls(**value)


DEFAULT_LIMITS = TemplateLimits()

#: The limits of the run (or load) in this context; the executor sets the registry's.
LIMITS: ContextVar[TemplateLimits] = ContextVar("owf_template_limits", default=DEFAULT_LIMITS)
#: The earliest deadline of the steps and workflow rendering now: (time.monotonic() value, label).
DEADLINE: ContextVar[tuple[float, str] | None] = ContextVar("owf_template_deadline", default=None)


@contextmanager
def deadline(seconds: float | None, label: str) -> Iterator[None]:
    """Within this block, no template evaluation runs past `seconds` from now (`label` names it)."""
    if seconds is None:
        yield
        return
    at = time.monotonic() + seconds
    current = DEADLINE.get()
    token = DEADLINE.set((at, label) if current is None or at < current[0] else current)
    try:
        yield
    finally:
        DEADLINE.reset(token)


@contextmanager
def limits(value: TemplateLimits) -> Iterator[None]:
    token = LIMITS.set(value)
    try:
        yield
    finally:
        LIMITS.reset(token)


class Budget:
    """What one evaluation has used so far."""

    __slots__ = ("limits", "produced", "saw_secret", "ticks", "until", "until_label")

    def __init__(self, lim: TemplateLimits) -> None:
        self.limits = lim
        self.ticks = 0
        self.produced = 0
        self.saw_secret = False
        self.until = time.monotonic() + lim.max_seconds
        self.until_label = ""  # the evaluation's own max_seconds (named when it is exceeded)
        outer = DEADLINE.get()
        if outer is not None and outer[0] < self.until:
            self.until, self.until_label = outer

    def tick(self) -> None:
        self.ticks = ticks = self.ticks + 1
        if ticks > self.limits.max_iterations:
            raise _limit("max_iterations", self.limits.max_iterations, "loop iterations, macro and filter calls")
        if not ticks & 7 and time.monotonic() > self.until:  # the clock every 8 ticks: each op is bounded
            self.out_of_time()

    def out_of_time(self) -> None:
        label = self.until_label or f"max_seconds ({self.limits.max_seconds:g}s per template evaluation)"
        raise TemplateLimitError(
            f"template exceeded its time budget: {label}",
            code="TIMEOUT",
            details={"limit": "time", "value": label},
        )

    def add(self, amount: int) -> None:
        self.produced += amount
        if self.produced > self.limits.max_total:
            raise _limit("max_total", self.limits.max_total, "characters and items produced in one evaluation")


#: The evaluation running in this context (None outside one: compile-time folding, say).
ACTIVE: ContextVar[Budget | None] = ContextVar("owf_template_budget", default=None)


def start() -> tuple[Budget, Token[Budget | None]]:
    """Start one template evaluation under the context's limits and deadline; `stop` ends it."""
    budget = Budget(LIMITS.get())
    if time.monotonic() > budget.until:
        budget.out_of_time()
    return budget, ACTIVE.set(budget)


def stop(token: Token[Budget | None]) -> None:
    ACTIVE.reset(token)


def current() -> Budget:
    """The active budget, or a fresh one under the context's limits (compile-time folding)."""
    budget = ACTIVE.get()
    return budget if budget is not None else Budget(LIMITS.get())


def _limit(name: str, value: int, what: str) -> TemplateLimitError:
    return TemplateLimitError(
        f"template exceeded {name} = {value:,} ({what})",
        details={"limit": name, "value": value},
    )


def tick() -> None:
    budget = ACTIVE.get()
    if budget is not None:
        budget.tick()


# ------------------------------------------------------------------------------------------------
# checks on what operations would produce, made before they run


def check_string(length: int) -> None:
    budget = current()
    if length > budget.limits.max_string:
        raise _limit("max_string", budget.limits.max_string, "characters in one string")
    budget.add(length)


def check_items(count: int) -> None:
    budget = current()
    if count > budget.limits.max_items:
        raise _limit("max_items", budget.limits.max_items, "items in one collection")
    budget.add(count)


def check_bits(bits: int) -> None:
    budget = current()
    if bits > budget.limits.max_int_bits:
        raise _limit("max_int_bits", budget.limits.max_int_bits, "bits in one integer")


def check_result(value: Any) -> Any:
    """Count what an operation produced (strings, collections, integers), refusing what is too big."""
    if isinstance(value, str | bytes):
        check_string(len(value))
    elif isinstance(value, bool):
        pass
    elif isinstance(value, int):
        check_bits(value.bit_length())
    elif isinstance(value, list | tuple | dict | set | frozenset):
        check_items(len(value))
    return value


def check_width(width: Any) -> None:
    """A padding width or repeat count: at most `max_string`."""
    if isinstance(width, int) and not isinstance(width, bool):
        check_string(max(width, 0))


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple) else 0


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse ``*``, ``**``, ``+`` and ``%`` whose result would exceed the budget, before computing it."""
    if operator == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, str | bytes | list | tuple) and isinstance(n, int):
                size = len(seq) * max(n, 0)
                (check_string if isinstance(seq, str | bytes) else check_items)(size)
                return
        if _is_int(left) and _is_int(right):
            check_bits(left.bit_length() + right.bit_length())
    elif operator == "**":
        if _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
            check_bits(math.ceil(math.log2(abs(left)) * right) if right < 1 << 40 else 1 << 40)
    elif operator == "+":
        if isinstance(left, str | bytes) and isinstance(right, str | bytes):
            check_string(len(left) + len(right))
        elif isinstance(left, list | tuple) and isinstance(right, list | tuple):
            check_items(len(left) + len(right))
    elif operator == "%" and isinstance(left, str):
        check_percent_format(left, right)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_PERCENT_RE = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])")
_DIGITS_RE = re.compile(r"\d+")


def check_percent_format(text: str, args: Any) -> None:
    """``'%1000000000d' % 1``: every width and precision counts towards `max_string`."""
    total = len(text)
    values = list(args) if isinstance(args, tuple) else [args]
    star = False
    for m in _PERCENT_RE.finditer(text):
        for group in m.group(1), m.group(2):
            if group == "*":
                star = True
            elif group:
                total += int(group) if len(group) < 12 else 1 << 62
    if star:
        total += sum(v for v in values if _is_int(v) and v > 0)
    total += sum(_size(v) for v in values) + (sum(map(_size, args.values())) if isinstance(args, dict) else 0)
    check_string(total)


def check_brace_format(text: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """``'{0:>1000000000}'.format(1)``: widths, and nested ``{}`` widths taken from the arguments."""
    from string import Formatter

    total = len(text)
    values = [*args, *kwargs.values()]
    try:
        parsed = list(Formatter().parse(text))
    except ValueError:
        return  # str.format raises the same error itself
    for _literal, field, spec, _conversion in parsed:
        if field is None or not spec:
            continue
        if "{" in spec:
            total += sum(v for v in values if _is_int(v) and v > 0)
        for digits in _DIGITS_RE.findall(spec):
            total += int(digits) if len(digits) < 12 else 1 << 62
    total += sum(_size(v) for v in values)
    check_string(total)
