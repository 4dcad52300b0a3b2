"""The ``router`` handler kind: the intent of a text, by AgentFlow's rule-based strategies.

``strategy`` is ``prefix`` (AgentFlow Core's seed rule: ``rules[{prefix, intent}]``, by default
``img:`` -> ``image``), ``keyword`` (``routes[{intent, keywords}]``, case-insensitive substring),
``pattern`` (``routes[{intent, pattern}]``, a regular expression matched at the start, ignoring
case), ``rules`` (``routes[{intent, condition}]`` with ``contains('x')``, ``starts_with('x')``,
``ends_with('x')``, ``equals('x')``, ``length_gt(n)``, ``length_lt(n)``) or ``default``; the first
route that matches gives the intent, else ``default_intent``. (An LLM classifier is an agent step,
not this handler.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from owf_magics.errors import OWFError
from owf_magics.manifest.models import Handler
from owf_magics.runtime.context import RunContext

STRATEGIES = ("prefix", "keyword", "pattern", "rules", "default")
DEFAULT_RULES: tuple[Mapping[str, str], ...] = ({"prefix": "img:", "intent": "image"},)
_RULE = re.compile(r"""^(contains|starts_with|ends_with|equals)\(['"](.*)['"]\)$|^(length_gt|length_lt)\((\d+)\)$""")


def rule_problem(condition: Any) -> str | None:
    """Why a ``rules`` condition is not understood, or None."""
    if not isinstance(condition, str) or not _RULE.match(condition.strip()):
        return (
            f"condition {condition!r} is not one of contains('x'), starts_with('x'), ends_with('x'), "
            "equals('x'), length_gt(n), length_lt(n)"
        )
    return None


def rule_holds(condition: str, text: str) -> bool:
    """One ``rules`` condition on `text` (case-insensitive for the text tests)."""
    m = _RULE.match(condition.strip())
    if m is None:
        raise OWFError(rule_problem(condition) or "bad condition", code="VALIDATION")
    low = text.lower()
    if m.group(1):
        arg = m.group(2).lower()
        return {
            "contains": arg in low,
            "starts_with": low.startswith(arg),
            "ends_with": low.endswith(arg),
            "equals": low == arg,
        }[m.group(1)]
    n = int(m.group(4))
    return len(text) > n if m.group(3) == "length_gt" else len(text) < n


def route(config: Mapping[str, Any], text: str) -> Any:
    """The intent of `text` under the router `config`."""
    strategy = config.get("strategy") or "prefix"
    default = config.get("default_intent")
    routes: Sequence[Mapping[str, Any]] = config.get("routes") or ()
    if strategy == "prefix":
        rules = config.get("rules") or DEFAULT_RULES
        pairs = rules.items() if isinstance(rules, Mapping) else ((r.get("prefix"), r.get("intent")) for r in rules)
        for prefix, intent in pairs:
            if isinstance(prefix, str) and text.startswith(prefix):
                return intent
        return default if default is not None else "text"
    for r in routes:
        intent = r.get("intent")
        if strategy == "keyword" and any(str(k).lower() in text.lower() for k in r.get("keywords") or ()):
            return intent
        if strategy == "pattern" and r.get("pattern") and re.match(str(r["pattern"]), text, re.IGNORECASE):
            return intent
        if strategy == "rules" and r.get("condition") and rule_holds(str(r["condition"]), text):
            return intent
    return default


async def handle(run: RunContext, handler: Handler, data: Any, step_id: str) -> Any:
    """``{intent}`` for the input's ``text``."""
    config = dict(handler.router or {})
    text = data.get("text") if isinstance(data, Mapping) else data
    return {"intent": route(config, "" if text is None else str(text))}
