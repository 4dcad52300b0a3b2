"""Publishing to a running ``owf serve``: ``ow.publish(name, server=URL)`` from Python or a notebook,
and ``owf publish PATHS --server URL`` from a shell. Both ``POST /workflows`` with the bearer token
in ``OWF_TOKEN`` (or ``token=``), and raise the service's error as an `OWFError` (code, message
and details as the service gave them: 409 when that version is already published, 403 without
the ``workflows:write`` scope, 422 with every diagnostic).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from owf_magics.errors import OWFError

#: The environment variable holding the bearer token.
TOKEN_ENV = "OWF_TOKEN"


def manifest_of(ow: Any, name: str | None, version: str | None = None) -> dict[str, Any]:
    """A loaded workflow (its highest loaded version, or `version`) as one file-form document, with
    the registry's agents and connectors (what it may use), in canonical spelling."""
    wf = ow.workflow(name, version)

    def plain(raw: Any) -> Any:
        return json.loads(json.dumps(raw.data, default=str))

    doc: dict[str, Any] = {"workflows": [plain(wf.item.raw)]}
    agents = [plain(a.raw) for a in ow.agents()]
    connectors = [plain(c.raw) for c in ow.connectors()]
    if agents:
        doc["agents"] = agents
    if connectors:
        doc["connectors"] = connectors
    return doc


def post_manifest(
    manifest: str | Mapping[str, Any] | list[Any], *, server: str, token: str | None = None, timeout: float = 60
) -> dict[str, Any]:
    """``POST {server}/workflows`` with `manifest`; the service's answer (201).

    Raises:
        OWFError: The service's error (its code, message and details), or UNAVAILABLE when the
            server cannot be reached.
    """
    import httpx

    bearer = token if token is not None else os.environ.get(TOKEN_ENV)
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    url = server.rstrip("/") + "/workflows"
    try:
        response = httpx.post(url, json={"manifest": manifest}, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise OWFError(
            f"cannot reach {url}: {exc}", code="UNAVAILABLE", details={"server": server, "suggestion": "is it running?"}
        ) from exc
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 201:
        body = body if isinstance(body, dict) else {}
        raise OWFError(
            str(body.get("message") or f"{url} answered {response.status_code}"),
            code=str(body.get("code") or "UNAVAILABLE"),
            details={"status": response.status_code, **(body.get("details") or {})},
        )
    return dict(body)


def publish_workflow(
    ow: Any, name: str | None, *, server: str, token: str | None = None, version: str | None = None
) -> dict[str, Any]:
    """`OpenWorkflow.publish`: the loaded workflow `name` (its highest loaded version, or `version`;
    with the agents and connectors loaded beside it) stored on the server under the token's tenant;
    returns the service's answer."""
    return post_manifest(manifest_of(ow, name, version), server=server, token=token)


class PublishMethods:
    """``OpenWorkflow.publish``, mixed into `OpenWorkflow`."""

    def publish(self, name: str | None = None, *, server: str, token: str | None = None) -> dict[str, Any]:
        """Publish a loaded workflow to ``owf serve`` at `server` (docs/service.md#publishing)."""
        return publish_workflow(self, name, server=server, token=token)
