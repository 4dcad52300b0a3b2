"""Connector actions: input schemas, approvals, and the handler kinds that run them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from owf_magics.connectors import command, function, http, image, mcp, queue, router, sql
from owf_magics.connectors.base import HandlerKind
from owf_magics.errors import OWFError, UnavailableError
from owf_magics.manifest.models import (
    Action,
    Connector,
)
from owf_magics.manifest.render import redact
from owf_magics.manifest.schemas import schema_validator
from owf_magics.runtime.context import (
    CURRENT_KEY,
    RunContext,
    StepFailed,
    Waiting,
    find_request,
)
from owf_magics.runtime.results import StepError

#: The handler kinds by name; a new kind is a module with a ``handle`` coroutine, added here.
HANDLER_KINDS: dict[str, HandlerKind] = {
    "function": function.handle,
    "http": http.handle,
    "command": command.handle,
    "mcp": mcp.handle,
    "sql": sql.handle,
    "image": image.handle,
    "queue": queue.handle,
    "router": router.handle,
}


def _apply_defaults(schema: Mapping[str, Any] | None, data: Any) -> Any:
    if not schema or not isinstance(data, dict):
        return data
    out = dict(data)
    for name, prop in (schema.get("properties") or {}).items():
        if name not in out and isinstance(prop, dict) and "default" in prop:
            out[name] = prop["default"]
    return out


_validators: dict[int, tuple[Any, Any]] = {}


def _validator(schema: Mapping[str, Any]) -> Any:
    """The jsonschema validator of one action's input schema, built once per schema object."""
    hit = _validators.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    if len(_validators) > 4096:
        _validators.clear()
    validator = schema_validator(schema)
    _validators[id(schema)] = (schema, validator)
    return validator


def validate_action_input(action: Action, data: Any) -> Any:
    """Defaults filled, then the action's JSON Schema enforced (code VALIDATION)."""
    data = _apply_defaults(action.input, data)
    if action.input:
        errors = sorted(_validator(action.input).iter_errors(data), key=lambda e: list(e.path))
        if errors:
            first = errors[0]
            where = ".".join(map(str, first.path)) or "input"
            raise OWFError(
                f"input validation failed for action '{action.name}': {where}: {first.message}",
                code="VALIDATION",
                details={"field": where, "constraint": first.validator, "errors": len(errors)},
            )
    return data


async def run_action(run: RunContext, connector: Connector, name: str, data: Any, step_id: str) -> Any:
    """Execute one connector action with the native backend."""
    action = connector.action(name)
    if action is None:
        raise OWFError(f"connector '{connector.name}' has no action '{name}'", code="VALIDATION")
    data = validate_action_input(action, data)
    policy = action.approval or connector.approval
    if (
        policy is not None
        and policy.required != "never"
        and not (policy.required == "first_use" and connector.name in run.approved)
    ):
        _approval(run, connector.name, name, data, policy)
    handler = action.handler
    if handler is None:
        raise UnavailableError(f"action '{connector.name}.{name}' declares no handler", details={"action": name})
    kind = HANDLER_KINDS.get(handler.kind or "")
    if kind is None:
        raise UnavailableError(
            f"the {handler.kind} handler of '{connector.name}.{name}' is not supported yet",
            details={"handler": handler.kind},
        )
    return await kind(run, handler, data, step_id)


def _approval(run: RunContext, connector: str, action: str, data: Any, policy: Any) -> None:
    """Connector ``approval.required``: wait for an answer, go on when approved, fail when not."""
    key = CURRENT_KEY.get()
    shown = redact(data, run.secrets) if run.secrets else data  # requests are stored scrubbed
    answer = find_request(run, key, "approval", {"connector": connector, "action": action, "input": shown})
    if answer is None or not answer.resolved:
        raise Waiting(
            "approval",
            {
                "connector": connector,
                "action": action,
                "input": data,
                "required": policy.required,
                "timeout": policy.timeout,
                "onTimeout": policy.onTimeout,
            },
        )
    if answer.value is not True:
        raise StepFailed(
            StepError(
                "CANCELED",
                f"the call to {connector}.{action} was rejected",
                {"reason": "rejected", "request_id": answer.id},
            )
        )
    run.approved.add(connector)
