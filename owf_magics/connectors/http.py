"""The ``http`` handler kind: an HTTP endpoint called with httpx, bounded (see `http_limits`), with retries.

Each attempt is one request whose redirects are followed by hand and checked, whose body is read
as a stream up to the size limit, and which ends within the timeout, whatever the server does.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from owf_magics.connectors.base import placeholders
from owf_magics.connectors.http_limits import (
    HttpLimits,
    build_url,
    check_url,
    host_limits,
    read_bounded,
    redirect_target,
    same_site,
    too_many_redirects,
)
from owf_magics.errors import BackendError, OWFError, StepTimeoutError
from owf_magics.manifest.models import (
    Handler,
)
from owf_magics.runtime.context import (
    RunContext,
)
from owf_magics.runtime.retry import retry_delay

__all__ = ["check_url", "handle"]


async def handle(run: RunContext, handler: Handler, data: Any, step_id: str) -> Any:
    """Call the handler's HTTP endpoint (urlValidation first; 5xx and transport errors retried)."""
    http: Any = handler.http
    import httpx

    mapping = data if isinstance(data, dict) else {}
    limits = host_limits(run).for_action(http)
    url = build_url(http.url, mapping, run, http.urlValidation)
    check_url(url, http.urlValidation)
    headers = placeholders(dict(http.headers), mapping, run)
    body = placeholders(http.body, mapping, run) if http.body is not None else data
    params: dict[str, Any] | None
    if http.method in ("GET", "DELETE", "HEAD"):
        params = {**http.query, **({k: v for k, v in mapping.items() if not isinstance(v, dict | list)})}
        content = None
    else:
        params = http.query or None
        content = json.dumps(body).encode()
        if not any(name.lower() == "content-type" for name in headers):
            headers = {"Content-Type": "application/json", **headers}
    policy = http.retry
    attempts = policy.maxAttempts if policy else 1
    last: Exception | None = None
    async with httpx.AsyncClient(timeout=limits.timeout, follow_redirects=False) as client:
        try:
            request = client.build_request(http.method, url, headers=headers, params=params, content=content)
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            raise OWFError(f"cannot build the HTTP request: {exc}", code="VALIDATION", details={"url": url}) from exc
        for attempt in range(1, attempts + 1):
            try:
                async with asyncio.timeout(limits.timeout):
                    status, payload = await _exchange(client, request, limits, http.urlValidation)
                if status >= 500 and attempt < attempts:
                    last = BackendError(f"HTTP {status}")
                    await asyncio.sleep(retry_delay(policy, attempt) if policy else 0)
                    continue
                return _http_result(status, payload)
            except (httpx.TransportError, httpx.TimeoutException, TimeoutError) as exc:
                last = exc
                if attempt < attempts:
                    await asyncio.sleep(retry_delay(policy, attempt) if policy else 0)
                    continue
                if isinstance(exc, httpx.TimeoutException | TimeoutError):
                    raise StepTimeoutError(
                        f"HTTP request timed out after {limits.timeout:g}s: {url}",
                        details={"url": url, "timeout": limits.timeout},
                    ) from exc
                raise BackendError(f"HTTP request failed: {exc}", details={"url": url}) from exc
    raise BackendError(f"HTTP request failed: {last}", details={"url": url})


async def _exchange(client: Any, request: Any, limits: HttpLimits, validation: Any) -> tuple[int, Any]:
    """Send `request`, following its redirects within the limits; the status and decoded body."""
    for hop in range(limits.max_redirects + 1):
        response = await client.send(request, stream=True)
        try:
            if 300 <= response.status_code < 400:  # every 3xx is a redirect, or a failed step
                target = redirect_target(request.url, response, validation)
                if hop == limits.max_redirects:
                    raise too_many_redirects(limits.max_redirects, str(target))
                request = _follow(client, request, response, target)
                continue
            raw = await read_bounded(response, limits.max_response_bytes)
            return response.status_code, _decode(raw, response)
        finally:
            await response.aclose()
    raise AssertionError("unreachable: the last hop returns or raises")  # pragma: no cover


def _follow(client: Any, request: Any, response: Any, target: Any) -> Any:
    """The request a redirect asks for: 303 (and 301/302 after a POST) become GET without a body;
    headers the handler set are dropped when the host changes (they may carry credentials)."""
    method = request.method
    keep_body = response.status_code in (307, 308)
    if (response.status_code == 303 and method != "HEAD") or (response.status_code in (301, 302) and method == "POST"):
        method = "GET"
    headers = dict(request.headers) if same_site(request.url, target) else {}
    headers.pop("Host", None)
    headers.pop("host", None)
    if not keep_body:
        for name in ("content-length", "content-type", "transfer-encoding"):
            headers.pop(name, None)
    content = request.content if keep_body else None
    return client.build_request(method, target, headers=headers, content=content)


def _decode(raw: bytes, response: Any) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(response.encoding or "utf-8", errors="replace")


def _http_result(status: int, payload: Any) -> Any:
    if status >= 400:
        message = payload.get("message") if isinstance(payload, dict) else str(payload)[:200]
        raise BackendError(f"HTTP {status}: {message}", details={"status_code": status})
    if isinstance(payload, dict) and payload.get("status") == "error":
        raise BackendError(
            str(payload.get("message", "the service reported an error")),
            details={"code": payload.get("code"), "status_code": status},
        )
    if isinstance(payload, dict) and payload.get("status") == "success" and "data" in payload:
        return payload["data"]
    return payload
