"""Where a broken input rule is written: the manifest file and line of the rule (or of the input).

Used only when a run is refused, so loading pays nothing for it. An OpenFlow flow keeps its
variables' positions through conversion, so the line is the flow file's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def rule_line(spec: Any, rule: str) -> int | None:
    """The line of `rule` (``minLength``, ``items.type``, ``properties.name.required``) in the
    input's spec, the nearest enclosing key's line when the rule itself is not written there."""
    line = _line(getattr(spec, "pos", None))
    current = spec
    for seg in ["type" if s == "file" else s for s in rule.split(".")]:
        if not isinstance(current, Mapping) or seg not in current:
            break
        line = _line(getattr(current, "key_pos", {}).get(seg)) or line
        current = current[seg]
    return line


def _line(pos: Any) -> int | None:
    return int(pos[0]) if isinstance(pos, tuple) and pos else None


def locate(item: Any, violations: list[dict[str, Any]]) -> None:
    """Add ``file`` and ``line`` to each violation (dicts from `Violation.to_dict`), in place."""
    raw = getattr(item, "raw", None)
    data = getattr(raw, "data", None)
    inputs = data.get("inputs") if isinstance(data, Mapping) else None
    file = getattr(raw, "file", None)
    for v in violations:
        spec = inputs.get(v["input"]) if isinstance(inputs, Mapping) else None
        v["file"] = file
        v["line"] = rule_line(spec, str(v["rule"])) if spec is not None else None
