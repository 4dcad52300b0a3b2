"""The native backend: runs connector actions and agents in-process.

The workflow executor schedules steps; this backend executes the leaves it is handed.
"""

from __future__ import annotations

from typing import Any

from owf_magics._version import __version__
from owf_magics.connectors.function import call_function
from owf_magics.errors import BackendError, UnavailableError
from owf_magics.runtime.backend import Backend, BackendInfo, ExecutionContext

LOGIC_CAPABILITIES: tuple[str, ...] = ("if", "switch", "forEach", "parallel", "wait", "try", "transform", "handoff")
LOGIC_CAPABILITIES += ("workflow", "groupChat", "magentic", "sequential", "concurrent")  # patterns: docs/patterns.md


class NativeBackend(Backend):
    """Deterministic, in-process execution with minimal overhead."""

    name = "native"

    def get_info(self) -> BackendInfo:
        return BackendInfo(
            name="native",
            version=__version__,
            installed=True,
            description="OpenWorkflow native runtime",
            runtime="python",
            capabilities=("action", "agent", *LOGIC_CAPABILITIES),
        )

    def invoke(self, manifest: dict[str, Any], input: dict[str, Any], context: ExecutionContext) -> dict[str, Any]:
        kind = manifest.get("type")
        if kind == "connector":
            action_name = context.metadata.get("action")
            action = next((a for a in manifest.get("actions", []) if a.get("name") == action_name), None)
            if action is None:
                raise BackendError(f"connector '{manifest.get('name')}' has no action '{action_name}'")
            handler = action.get("handler") or {}
            if handler.get("function"):
                return {"status": "success", "output": call_function(handler["function"], input, context)}
            raise UnavailableError(
                f"the native backend runs '{next(iter(handler), 'no')}' handlers through the workflow executor",
                details={"backend": "native"},
            )
        if kind == "agent":
            provider = (manifest.get("model") or {}).get("provider")
            if provider == "echo":
                return {"status": "success", "output": input}
            raise UnavailableError(f"model provider '{provider}' runs through the workflow executor")
        raise BackendError(f"the native backend cannot invoke a manifest of type {kind!r}")
