"""Manifests sent in requests: loaded with the same safe loader into a registry of their own, never
read as a file path, without the server's environment, and limited to ``http`` handlers
(``OpenWorkflow(allow_handlers=...)``: a ``function``, ``command`` or ``mcp`` handler, which runs
code or programs with the server's rights, is a ``HANDLER_NOT_ALLOWED`` diagnostic at its line)
unless the server was started with ``--allow-handlers``.
"""

from __future__ import annotations

import json
from typing import Any

from owf_magics.api import OpenWorkflow

#: The name diagnostics give a manifest sent in a request.
REQUEST_FILE = "<request>"
#: The handler kinds manifests sent in requests may use unless the server allows every kind.
SAFE_HANDLERS = frozenset({"http"})
#: Published manifests may also use the AgentFlow kinds that run no code and read nothing of the
#: server's: a queue's bandwidth, a router's rules, the (offline by default) image handler.
PUBLISHED_HANDLERS = SAFE_HANDLERS | {"queue", "router", "image"}


def as_text(manifest: str | dict[str, Any] | list[Any]) -> str:
    """The manifest as text (JSON for an object), as the run's label keeps it for a resume."""
    if isinstance(manifest, str):
        return manifest
    return json.dumps(manifest, separators=(",", ":"))


def new_registry(store: Any, *, allow_handlers: bool, safe: frozenset[str] = SAFE_HANDLERS) -> OpenWorkflow:
    """A registry for one request's manifests: the server's run store, no environment, and only
    the `safe` handler kinds unless `allow_handlers`."""
    return OpenWorkflow(state=store, environment={}, max_workers=4, allow_handlers=None if allow_handlers else safe)


def release(ow: OpenWorkflow) -> None:
    """Let a request's registry go without closing the run store it shares with the server."""
    ow.shutdown(wait=False)
    ow.thread_pool().shutdown(wait=False)


def load(ow: OpenWorkflow, manifest: str | dict[str, Any] | list[Any]) -> list[Any]:
    """Load a request's manifest into `ow`.

    Text always loads as text: one line such as ``flows/x.yaml`` would otherwise name a file on the
    server. A JSON object loads as data.

    Raises:
        ManifestError: Every problem, ``HANDLER_NOT_ALLOWED`` included.
    """
    source: Any = manifest
    if isinstance(manifest, str) and "\n" not in manifest:
        source = manifest + "\n"  # never a path (the loader reads a one-line string naming a file)
    return ow.load(source, name=REQUEST_FILE)


def validate(ow: OpenWorkflow, manifest: str | dict[str, Any] | list[Any]) -> list[Any]:
    """Check a request's manifest (nothing stays registered); returns the warnings.

    Raises:
        ManifestError: Every problem found.
    """
    items = load(ow, manifest)
    warnings = list(ow.warnings)
    ow.unload(items)
    return warnings
