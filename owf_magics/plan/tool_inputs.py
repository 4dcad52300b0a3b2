"""An action step's literal input checked at load against an MCP tool's input schema.

Only what a template cannot change is checked: a required property the step does not give at all,
and a literal (template-free) value of the wrong JSON type. The whole input is checked again
against the schema when the step runs (code VALIDATION).
"""

from __future__ import annotations

from typing import Any

from owf_magics.manifest.models import Connector
from owf_magics.manifest.templates import iter_strings
from owf_magics.plan.diagnostics import Path, Reporter


def check_tool_input(conn: Connector, action: str, data: Any, path: Path, report: Reporter, sid: str) -> None:
    spec = conn.action(action) if conn.tools_listed else None
    schema = spec.input if spec is not None and spec.handler is not None and spec.handler.kind == "mcp" else None
    if not schema or not isinstance(data, dict) or schema.get("type", "object") != "object":
        return
    props: dict[str, Any] = schema.get("properties") or {}
    for name in schema.get("required") or []:
        if name not in data and not (isinstance(props.get(name), dict) and "default" in props[name]):
            report(
                "MISSING_REQUIRED_FIELD",
                f"tool '{action}' of MCP server '{conn.name}' needs input '{name}'",
                path + ("input",),
                hint=f"add input.{name} (the tool's inputs: {', '.join(props) or 'none'})",
                step_id=sid,
            )
    from jsonschema import validators

    for name, value in data.items():
        prop = props.get(name)
        if not isinstance(prop, dict) or any("{{" in text for _, text in iter_strings(value)):
            continue
        error = next(iter(validators.validator_for(prop)(prop).iter_errors(value)), None)
        if error is not None:
            report(
                "INVALID_TYPE",
                f"input '{name}' of tool '{action}' (MCP server '{conn.name}'): {error.message}",
                path + ("input", name),
                hint=f"the tool's schema for '{name}': {prop}",
                step_id=sid,
            )
