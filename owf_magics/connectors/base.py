"""What every handler kind shares: ``${...}`` placeholders in trusted handler configs."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

from owf_magics.manifest.models import (
    Handler,
)
from owf_magics.manifest.urls import PLACEHOLDER
from owf_magics.runtime.context import (
    RunContext,
)


def placeholders(value: Any, data: Mapping[str, Any], run: RunContext) -> Any:
    """``${input.x}``, ``${env.X}``, ``${secrets.X}`` and ``${NAME}`` in handler configs (trusted)."""
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            head, _, rest = name.partition(".")
            if head == "input" and rest:
                return str(data.get(rest, ""))
            if head == "env" and rest:
                return str(run.env.get(rest, ""))
            if head == "secrets" and rest:
                return run.secrets.get(rest, "")
            return run.secrets.get(name, str(run.env.get(name, "")))

        return PLACEHOLDER.sub(sub, value)
    if isinstance(value, dict):
        return {k: placeholders(v, data, run) for k, v in value.items()}
    if isinstance(value, list):
        return [placeholders(v, data, run) for v in value]
    return value


class HandlerKind(Protocol):
    """One kind of action handler (``function``, ``http``, ``command``...): a module's ``handle``.

    Called with the run's context, the action's handler config, the validated input and the id of
    the step that runs it; returns the action's output or raises (an `OWFError`, `StepFailed`, or
    `Waiting` to wait for something from outside).
    """

    def __call__(self, run: RunContext, handler: Handler, data: Any, step_id: str) -> Awaitable[Any]: ...
