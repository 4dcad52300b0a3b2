"""Manifests sent in requests: loaded with the same safe loader into a registry of their own, never
read as a file path, without the server's environment, and refused when they use ``function`` or
``command`` handlers (code that runs with the server's rights) unless the server allows them.

The policy is ``OpenWorkflow(allow_handlers=...)`` (diagnostic ``HANDLER_NOT_ALLOWED``) where
the installed engine has it; otherwise the same check runs here on the loaded connectors.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from owf_magics.api import OpenWorkflow
from owf_magics.errors import Diagnostic, ManifestError

#: The name diagnostics give a manifest sent in a request.
REQUEST_FILE = "<request>"
_CODE_HANDLERS = ("function", "command")


def engine_checks_handlers() -> bool:
    """Whether `OpenWorkflow` takes ``allow_handlers`` (then the loader enforces the policy)."""
    return "allow_handlers" in inspect.signature(OpenWorkflow.__init__).parameters


def as_text(manifest: str | dict[str, Any] | list[Any]) -> str:
    """The manifest as text (JSON for an object), as the run's label keeps it for a resume."""
    if isinstance(manifest, str):
        return manifest
    return json.dumps(manifest, separators=(",", ":"))


def new_registry(store: Any, *, allow_handlers: bool) -> OpenWorkflow:
    """A registry for one request's manifests: the server's run store, no environment."""
    options: dict[str, Any] = {"allow_handlers": allow_handlers} if engine_checks_handlers() else {}
    return OpenWorkflow(state=store, environment={}, max_workers=4, **options)


def release(ow: OpenWorkflow) -> None:
    """Let a request's registry go without closing the run store it shares with the server."""
    ow.shutdown(wait=False)
    ow.thread_pool().shutdown(wait=False)


def load(ow: OpenWorkflow, manifest: str | dict[str, Any] | list[Any], *, allow_handlers: bool) -> list[Any]:
    """Load a request's manifest into `ow`.

    Text always loads as text: one line such as ``flows/x.yaml`` would otherwise name a file on the
    server. A JSON object loads as data.

    Raises:
        ManifestError: Every problem, ``HANDLER_NOT_ALLOWED`` included.
    """
    source: Any = manifest
    if isinstance(manifest, str) and "\n" not in manifest:
        source = manifest + "\n"  # never a path (the loader reads a one-line string naming a file)
    items = ow.load(source, name=REQUEST_FILE)
    if not allow_handlers and not engine_checks_handlers():
        problems = handler_diagnostics(items)
        if problems:
            ow.unload(items)
            raise ManifestError(problems, ow.warnings)
    return items


def validate(ow: OpenWorkflow, manifest: str | dict[str, Any] | list[Any], *, allow_handlers: bool) -> list[Any]:
    """Check a request's manifest (nothing stays registered); returns the warnings.

    Raises:
        ManifestError: Every problem found.
    """
    items = load(ow, manifest, allow_handlers=allow_handlers)
    warnings = list(ow.warnings)
    ow.unload(items)
    return warnings


def handler_diagnostics(items: list[Any]) -> list[Diagnostic]:
    """``HANDLER_NOT_ALLOWED`` for every action handler that runs code, and every MCP server
    started as a local process."""
    out: list[Diagnostic] = []
    for item in items:
        if item.kind != "connector":
            continue
        model = item.model
        for i, action in enumerate(model.actions):
            kind = action.handler.kind if action.handler is not None else None
            if kind in _CODE_HANDLERS:
                out.append(_refused(item, f"actions[{i}].handler.{kind}", f"a {kind} handler"))
        if model.mcp is not None and model.mcp.command:
            out.append(_refused(item, "mcp.command", "an MCP server started as a local command"))
    return out


def _refused(item: Any, path: str, what: str) -> Diagnostic:
    return Diagnostic(
        "HANDLER_NOT_ALLOWED",
        f"connector '{item.name}' uses {what}, which runs code on the server; this server does not "
        "accept that in manifests sent to it",
        path=path,
        file=item.file,
        hint="use an http handler, or load the manifest at start-up (owf serve PATHS), or start the "
        "server with --allow-handlers if every caller may run code on it",
    )
