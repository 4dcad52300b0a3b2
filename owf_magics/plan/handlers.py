"""Handler checks at load: the handler switch, and HTTP URLs whose host an input would set.

A notebook trusts its manifests (``function`` and ``command`` handlers run with the process's
rights); a server that loads manifests sent to it refuses the kinds it does not trust, at load,
with a ``HANDLER_NOT_ALLOWED`` diagnostic at the handler's file:line.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from owf_magics.errors import DiagnosticBag, did_you_mean
from owf_magics.manifest.catalog import Loaded
from owf_magics.manifest.models import Connector
from owf_magics.manifest.urls import input_in_authority
from owf_magics.plan.diagnostics import Reporter

#: Every handler kind a manifest can name (``mcp`` also covers a connector's ``mcp:`` server block).
HANDLER_KIND_NAMES: tuple[str, ...] = ("function", "http", "command", "kafka", "mcp", "sql", "image", "queue", "router")

_WHY = {
    "function": "it imports and calls Python code with this process's rights",
    "command": "it starts a program with this process's rights",
    "mcp": "it talks to an MCP server, and a stdio server is a program this process starts",
    "http": "it sends requests from this process",
    "kafka": "it talks to a Kafka broker from this process",
    "sql": "it runs SQL against a database file or server from this process",
    "image": "it calls an image generation source from this process",
    "queue": "it waits on a named queue's bandwidth limits",
    "router": "it classifies text by rules (no I/O)",
}


def allowed_handlers(value: Collection[str] | str | None) -> frozenset[str] | None:
    """Check and normalise an ``allow_handlers`` setting (None: every kind is allowed).

    A single name is taken as a collection of one.

    Raises:
        ValueError: A name that is no handler kind (with the closest one).
        TypeError: Something that is not a collection of names.
    """
    if value is None:
        return None
    names = [value] if isinstance(value, str) else list(value)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"allow_handlers takes handler kind names, not {type(name).__name__}")
        if name not in HANDLER_KIND_NAMES:
            best = did_you_mean(name, HANDLER_KIND_NAMES)
            raise ValueError(
                f"'{name}' is not a handler kind"
                + (f" (did you mean '{best}'?)" if best else "")
                + f": use some of {', '.join(HANDLER_KIND_NAMES)}"
            )
    return frozenset(names)


def check_handlers(items: Iterable[Loaded[Any]], allowed: frozenset[str] | None, bag: DiagnosticBag) -> None:
    """Report every connector action (and MCP server) whose handler kind is not in `allowed`."""
    if allowed is None:
        return
    for item in items:
        if not isinstance(item.model, Connector):
            continue
        conn = item.model
        found: list[tuple[str, str, tuple[str | int, ...]]] = []
        if conn.mcp is not None:
            found.append(("mcp", "the MCP server", ("mcp",)))
        for i, action in enumerate(conn.actions):
            kind = action.handler.kind if action.handler is not None else None
            if kind is not None:
                found.append((kind, f"action '{action.name}'", ("actions", i, "handler", kind)))
        report = Reporter(item.raw, bag)
        for kind, what, path in found:
            if kind in allowed:
                continue
            shown = ", ".join(sorted(allowed)) or "none"
            report(
                "HANDLER_NOT_ALLOWED",
                f"{what} of connector '{conn.name}' uses the '{kind}' handler kind, which this registry "
                f"does not allow ({_WHY.get(kind, 'it is not trusted here')}); allowed: {shown}",
                path,
                hint=f"use an allowed handler kind ({shown}), or load it where '{kind}' handlers are "
                "trusted (OpenWorkflow(allow_handlers=...) or ow.load(..., allow_handlers=...))",
            )


def check_http_urls(items: Iterable[Loaded[Any]], bag: DiagnosticBag) -> None:
    """Warn about an ``http`` handler URL that lets an ``${input.x}`` value set its scheme, host or
    port (each request is refused at run time), unless ``urlValidation.allowedDomains`` bounds it."""
    for item in items:
        if not isinstance(item.model, Connector):
            continue
        report = Reporter(item.raw, bag)
        for i, action in enumerate(item.model.actions):
            http = action.handler.http if action.handler is not None else None
            if http is None or (http.urlValidation is not None and http.urlValidation.allowedDomains):
                continue
            wanted = input_in_authority(http.url)
            if wanted is not None:
                report(
                    "URL_HOST_FROM_INPUT",
                    f"the URL of action '{action.name}' takes its scheme, host or port from {wanted}: "
                    "an input value may only fill the path or query, so every request will be refused",
                    ("actions", i, "handler", "http", "url"),
                    hint="write the scheme and host literally (or ${env.NAME}) and put the input after the "
                    "first '/', or bound a user-provided URL with urlValidation.allowedDomains",
                    severity="warning",
                )
