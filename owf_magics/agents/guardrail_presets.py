"""Guardrails of workflow-runner requests: the Go runner's presets and user-registered ones.

A guardrail is a function ``(agent_name, value, config) -> info``: ``info`` is None (or falsy)
when it lets the value through, else a dict saying why it trips (shown in the error's details).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

Guardrail = Callable[[str, Any, Mapping[str, Any]], "dict[str, Any] | None"]
Kind = Literal["input", "output"]

MATH_KEYWORDS = ("math homework", "solve this math", "algebra homework", "calculus homework")
PROFANITIES = ("damn", "hell", "shit", "fuck")
PHONE = r"\b(\+?\d{1,3}[-.\s]?)?(\(\d{3}\)|\d{3})[-.\s]?\d{3}[-.\s]?\d{4}\b"


def as_text(value: Any) -> str:
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, list):  # conversation items
        return "\n".join(as_text(v.get("content") if isinstance(v, Mapping) else v) for v in value)
    return "" if value is None else str(value).lower()


def math_homework(agent: str, value: Any, config: Mapping[str, Any]) -> dict[str, Any] | None:
    text = as_text(value)
    return next(({"keyword": k} for k in MATH_KEYWORDS if k in text), None)


def profanity(agent: str, value: Any, config: Mapping[str, Any]) -> dict[str, Any] | None:
    if not isinstance(value, str | list):  # the Go presets only look at text
        return None
    text = as_text(value)
    return {"detected": True} if any(p in text for p in PROFANITIES) else None


def phone_number(agent: str, value: Any, config: Mapping[str, Any]) -> dict[str, Any] | None:
    if not isinstance(value, str):
        return None
    pattern = config.get("pattern") or PHONE
    return {"pattern": pattern} if re.search(str(pattern), value) else None


REGISTRY: dict[Kind, dict[str, Guardrail]] = {
    "input": {"math_homework_input": math_homework, "basic_profanity_input": profanity},
    "output": {"phone_number_output": phone_number, "basic_profanity_output": profanity},
}


def register_guardrail(name: str, function: Guardrail, kind: Kind = "input") -> None:
    """Make ``name`` usable in requests' ``input_guardrails`` (kind "input") or
    ``output_guardrails`` (kind "output"); a preset of the same name is replaced."""
    if kind not in REGISTRY:
        raise ValueError(f"guardrail kind must be 'input' or 'output', not {kind!r}")
    REGISTRY[kind][name.lower()] = function


def find_guardrail(name: str, kind: Kind) -> Guardrail | None:
    return REGISTRY[kind].get(name.lower())
