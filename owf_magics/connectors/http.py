"""The ``http`` handler kind: an HTTP endpoint called with httpx, with urlValidation and retries."""

from __future__ import annotations

import asyncio
import fnmatch
from typing import Any
from urllib.parse import urlparse

from owf_magics.connectors.base import placeholders
from owf_magics.errors import BackendError, OWFError, StepTimeoutError
from owf_magics.manifest.models import (
    Handler,
)
from owf_magics.runtime.context import (
    RunContext,
)
from owf_magics.runtime.retry import retry_delay


def check_url(url: str, validation: Any) -> None:
    """Enforce ``urlValidation`` (requireHTTPS, allowed and blocked domains) before any request."""
    parsed = urlparse(url)
    host = parsed.hostname or ""
    if parsed.scheme not in ("http", "https"):
        raise OWFError(f"URL scheme '{parsed.scheme}' is not allowed", code="VALIDATION", details={"url": url})
    if validation is None:
        return
    if validation.requireHTTPS and parsed.scheme != "https":
        raise OWFError("the connector requires HTTPS", code="VALIDATION", details={"host": host})
    if any(fnmatch.fnmatch(host, pat) for pat in validation.blockedDomains):
        raise OWFError(f"host '{host}' is blocked", code="VALIDATION", details={"host": host})
    if validation.allowedDomains and not any(fnmatch.fnmatch(host, pat) for pat in validation.allowedDomains):
        raise OWFError(f"host '{host}' is not in the allowed domains", code="VALIDATION", details={"host": host})


async def handle(run: RunContext, handler: Handler, data: Any, step_id: str) -> Any:
    """Call the handler's HTTP endpoint (urlValidation first; 5xx and transport errors retried)."""
    http: Any = handler.http
    import httpx

    mapping = data if isinstance(data, dict) else {}
    url = placeholders(http.url, mapping, run)
    check_url(url, http.urlValidation)
    headers = placeholders(dict(http.headers), mapping, run)
    body = placeholders(http.body, mapping, run) if http.body is not None else data
    policy = http.retry
    attempts = policy.maxAttempts if policy else 1
    last: Exception | None = None
    async with httpx.AsyncClient(timeout=http.timeout or 30.0) as client:
        for attempt in range(1, attempts + 1):
            try:
                if http.method in ("GET", "DELETE", "HEAD"):
                    params = {**http.query, **({k: v for k, v in mapping.items() if not isinstance(v, dict | list)})}
                    resp = await client.request(http.method, url, headers=headers, params=params)
                else:
                    resp = await client.request(http.method, url, headers=headers, params=http.query or None, json=body)
                if resp.status_code >= 500 and attempt < attempts:
                    last = BackendError(f"HTTP {resp.status_code}")
                    await asyncio.sleep(retry_delay(policy, attempt) if policy else 0)
                    continue
                return _http_result(resp)
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                last = exc
                if attempt < attempts:
                    await asyncio.sleep(retry_delay(policy, attempt) if policy else 0)
                    continue
                if isinstance(exc, httpx.TimeoutException):
                    raise StepTimeoutError(f"HTTP request timed out: {url}", details={"url": url}) from exc
                raise BackendError(f"HTTP request failed: {exc}", details={"url": url}) from exc
    raise BackendError(f"HTTP request failed: {last}", details={"url": url})


def _http_result(resp: Any) -> Any:
    try:
        payload = resp.json()
    except ValueError:
        payload = resp.text
    if resp.status_code >= 400:
        message = payload.get("message") if isinstance(payload, dict) else str(payload)[:200]
        raise BackendError(f"HTTP {resp.status_code}: {message}", details={"status_code": resp.status_code})
    if isinstance(payload, dict) and payload.get("status") == "error":
        raise BackendError(
            str(payload.get("message", "the service reported an error")),
            details={"code": payload.get("code"), "status_code": resp.status_code},
        )
    if isinstance(payload, dict) and payload.get("status") == "success" and "data" in payload:
        return payload["data"]
    return payload
