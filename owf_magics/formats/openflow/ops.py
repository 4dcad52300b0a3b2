"""Runtime helpers of converted OpenFlow flows, called as ``function`` handlers of the generated
``connector:openflow/ops`` connector (so a converted flow is ordinary OpenWorkflow YAML).

Pure functions of plain JSON values: they import nothing from the package, which keeps the
``formats`` layer free of runtime imports (the connector layer imports them by name at run time).
"""

from __future__ import annotations

import json
import re
from typing import Any

OPERATIONS = ("join", "update", "append", "extract", "pick", "omit", "map", "filter", "slice", "flatten", "concat")
CONDITIONS = (
    "equals",
    "not_equals",
    "greater_than",
    "less_than",
    "contains",
    "not_contains",
    "starts_with",
    "ends_with",
    "regex",
)


def _get(obj: Any, path: str) -> Any:
    for key in path.split("."):
        if isinstance(obj, dict) and key in obj:
            obj = obj[key]
        elif isinstance(obj, list) and key.isdigit() and int(key) < len(obj):
            obj = obj[int(key)]
        else:
            return None
    return obj


def _text(value: Any, stringify: bool) -> str:
    if isinstance(value, dict | list) and stringify:
        return json.dumps(value, separators=(",", ":"))
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _pick(item: Any, fields: list[str]) -> Any:
    if not isinstance(item, dict):
        return item
    out: dict[str, Any] = {}
    for field in fields:
        value = _get(item, field)
        if value is not None or field in item:
            out[field.rsplit(".", 1)[-1]] = value
    return out


def _omit(item: Any, fields: list[str]) -> Any:
    if not isinstance(item, dict):
        return item
    out = json.loads(json.dumps(item))
    for field in fields:
        *parents, last = field.split(".")
        target = _get(out, ".".join(parents)) if parents else out
        if isinstance(target, dict):
            target.pop(last, None)
    return out


def compare(left: Any, operator: str, right: Any) -> bool:
    """One OpenFlow comparison (CONDITION branches and UPDATE_VARIABLE filter)."""
    if operator == "equals":
        return bool(left == right)
    if operator == "not_equals":
        return bool(left != right)
    if operator in ("greater_than", "less_than"):
        try:
            a, b = float(left), float(right)
        except (TypeError, ValueError):
            return False
        return a > b if operator == "greater_than" else a < b
    if operator in ("contains", "not_contains"):
        found = str(right) in left if isinstance(left, str) else isinstance(left, list) and right in left
        return found if operator == "contains" else not found
    if operator == "starts_with":
        return isinstance(left, str) and left.startswith(str(right))
    if operator == "ends_with":
        return isinstance(left, str) and left.endswith(str(right))
    if operator == "regex":
        try:
            return re.search(str(right), _text(left, True)) is not None
        except re.error:
            return False
    raise ValueError(f"unknown condition operator '{operator}' (expected one of: {', '.join(CONDITIONS)})")


def apply(operation: str, current: Any, value: Any, config: dict[str, Any] | None = None) -> Any:
    """The new value of a variable after one UPDATE_VARIABLE operation."""
    config = config or {}
    stringify = config.get("stringify_output")
    if operation == "update":
        return value
    if operation == "join":
        sep = str(config.get("join_str", ""))
        text = _text(value, stringify is not False)
        return text if current is None or current == "" else _text(current, stringify is not False) + sep + text
    if operation == "append":
        base = [] if current is None else current
        if not isinstance(base, list):
            raise ValueError("append needs the variable to be an array")
        item = json.dumps(value) if isinstance(value, dict | list) and stringify is True else value
        return [*base, item]
    if operation == "concat":
        base = [] if current is None else current
        if not isinstance(base, list) or not isinstance(value, list):
            raise ValueError("concat needs the variable and the value to be arrays")
        return [*base, *value]
    if operation in ("pick", "omit"):
        fields = config.get("fields")
        if not isinstance(fields, list):
            raise ValueError(f"{operation} needs config.fields (an array of field paths)")
        fn = _pick if operation == "pick" else _omit
        if isinstance(value, list):
            return [fn(v, fields) for v in value]
        if isinstance(value, dict):
            return fn(value, fields)
        raise ValueError(f"{operation} needs an object or an array of objects")
    if not isinstance(value, list):
        raise ValueError(f"{operation} needs an array value")
    if operation == "extract":
        path = config.get("field_path")
        if not isinstance(path, str):
            raise ValueError("extract needs config.field_path")
        return [x for x in (_get(v, path) for v in value) if x is not None]
    if operation == "map":
        mapping = config.get("mapping")
        if not isinstance(mapping, dict):
            raise ValueError("map needs config.mapping")
        return [{k: _get(v, p) if isinstance(p, str) else p for k, p in mapping.items()} for v in value]
    if operation == "filter":
        cond = config.get("condition")
        if not isinstance(cond, dict):
            raise ValueError("filter needs config.condition {field, operator, value}")
        return [
            v
            for v in value
            if compare(_get(v, str(cond.get("field", ""))), str(cond.get("operator")), cond.get("value"))
        ]
    if operation == "slice":
        start = int(config.get("slice_start") or 0)
        end = config.get("slice_end")
        return value[start : None if end is None else int(end)]
    if operation == "flatten":
        return [y for x in value for y in (x if isinstance(x, list) else [x])]
    raise ValueError(f"unknown UPDATE_VARIABLE operation '{operation}'")


def update_variable(
    variable_id: str, operation: str, current: Any = None, value: Any = None, config: Any = None
) -> dict[str, Any]:
    """The UPDATE_VARIABLE node: ``{variable_id, previous_value, new_value, operation}``."""
    new = apply(operation, current, value, config if isinstance(config, dict) else {})
    return {
        "variable_id": variable_id,
        "previous_value": current,
        "new_value": new,
        "operation": operation,
        "resolved_input": value,
    }


def fold(operation: str, current: Any = None, loop: Any = None, update: str = "", config: Any = None) -> dict[str, Any]:
    """A variable after a loop: each iteration's update (node ``update``) applied in item order, so
    a parallel loop accumulates deterministically; iterations where the update did not run add nothing."""
    new = current
    for row in (loop or {}).get("results") or []:
        result = _get(row, "output.result.results." + update) if isinstance(row, dict) else None
        if isinstance(result, dict) and "resolved_input" in result:
            new = apply(operation, new, result["resolved_input"], config if isinstance(config, dict) else {})
    return {"new_value": new}


def condition(value: Any = None, branches: Any = None) -> dict[str, Any]:
    """The CONDITION node: the first branch (declaration order) whose test passes, ``default`` last."""
    for branch in branches or []:
        name, op = branch.get("name"), branch.get("condition")
        if name == "default" or op is None:
            continue
        if compare(value, str(op), branch.get("value")):
            return {"matched_branch": name, "switch_value": value}
    names = [b.get("name") for b in branches or []]
    return {"matched_branch": "default" if "default" in names else None, "switch_value": value}


def llm_output(content: Any = None, schema: Any = None) -> dict[str, Any]:
    """The LLM node's output: the reply parsed as the node's ``output`` schema (structured output).

    A reply that is a JSON object gives its properties; anything else is the first declared
    property (or ``text``)."""
    parsed = content
    if isinstance(content, str):
        text = content.strip()
        if text.startswith("```"):
            text = text.strip("`").removeprefix("json").strip()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = content
    if isinstance(parsed, dict):
        return parsed
    keys = list(schema) if isinstance(schema, dict) and schema else ["text"]
    return {keys[0]: parsed}


def foreach_result(items: Any = None, loop: Any = None) -> dict[str, Any]:
    """The FOR_EACH node's output: ``{total_items, processed_items, results}``."""
    items = list(items or [])
    rows = loop.get("results") if isinstance(loop, dict) else None
    results = [_get(r, "output.result") for r in rows or [] if isinstance(r, dict)]
    return {"total_items": len(items), "processed_items": len(results), "results": results}
