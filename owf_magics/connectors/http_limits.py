"""The bounds on ``http`` handler requests: URLs whose host values cannot change, redirects, sizes, time.

A URL template's scheme, host and port come from its literal text (and the trusted ``${env.X}``,
``${secrets.X}`` placeholders); ``${input.x}`` values only fill the path and query, percent-encoded
(in the path a ``/`` still separates segments, but ``.`` and ``..`` segments are encoded).
Redirects are followed by hand, each one checked; bodies are read as a stream and cut off.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlsplit

from owf_magics.connectors.base import placeholders
from owf_magics.errors import BackendError, OWFError
from owf_magics.manifest.urls import PLACEHOLDER, authority_done, is_input
from owf_magics.runtime.context import RunContext

#: Defaults: a whole request (redirects and body included) within 30 s, 10 MiB of body, 5 redirects.
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_REDIRECTS = 5


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """The bounds of ``http`` handler requests (``OpenWorkflow(http_limits=...)``).

    Attributes:
        timeout: Seconds for one request attempt, from sending it to the last byte of the body,
            redirects included (an action's ``timeout`` replaces it).
        max_response_bytes: The most body bytes read (after decompression); a longer body fails
            the step (an action's ``maxResponseBytes`` replaces it).
        max_redirects: How many redirects one request follows (an action's ``maxRedirects``
            replaces it; 0 follows none).
        enforce: When true, an action's values may lower these limits but never raise them
            (a server that runs manifests it receives).
    """

    timeout: float = DEFAULT_TIMEOUT
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    enforce: bool = False

    @classmethod
    def of(cls, value: HttpLimits | Mapping[str, Any] | None) -> HttpLimits:
        """`value` as limits: None is the defaults, a mapping names some of the fields."""
        if value is None:
            return cls()
        if isinstance(value, HttpLimits):
            return value
        unknown = set(value) - {"timeout", "max_response_bytes", "max_redirects", "enforce"}
        if unknown:
            raise ValueError(f"unknown http_limits field(s): {', '.join(sorted(unknown))}")
        limits = replace(cls(), **dict(value))
        if limits.timeout <= 0 or limits.max_response_bytes < 0 or limits.max_redirects < 0:
            raise ValueError("http_limits: timeout must be positive, sizes and counts not negative")
        return limits

    def for_action(self, http: Any) -> HttpLimits:
        """These limits with an action's own ``timeout``, ``maxResponseBytes``, ``maxRedirects``."""

        def pick(own: Any, default: Any) -> Any:
            if own is None:
                return default
            return min(own, default) if self.enforce else own

        return replace(
            self,
            timeout=pick(http.timeout, self.timeout),
            max_response_bytes=pick(http.maxResponseBytes, self.max_response_bytes),
            max_redirects=pick(http.maxRedirects, self.max_redirects),
        )


def host_limits(run: RunContext) -> HttpLimits:
    """The limits of the registry a run belongs to (the defaults for a host that sets none)."""
    value = getattr(run.host, "http_limits", None)
    return value if isinstance(value, HttpLimits) else HttpLimits()


# ------------------------------------------------------------------------------------------------
# URLs


def check_url(url: str, validation: Any) -> None:
    """Enforce http(s) and ``urlValidation`` (requireHTTPS, allowed and blocked domains) before any request."""
    parsed = urlsplit(url)
    try:
        host = parsed.hostname or ""
    except ValueError:
        host = ""
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


def build_url(template: str, data: Mapping[str, Any], run: RunContext, validation: Any) -> str:
    """The request URL: trusted placeholders as written, input values percent-encoded in the
    path and query; refused (before anything is sent) when an input would set the authority.

    With ``urlValidation.allowedDomains`` an input may give the whole URL (the spec's
    user-provided URL), and the allow list decides which hosts it may name.
    """
    user_url = validation is not None and bool(validation.allowedDomains)
    url = ""
    literal = ""  # the URL with every input value as 'x': its scheme, host and port are the template's
    pos = 0
    for m in PLACEHOLDER.finditer(template):
        url += template[pos : m.start()]
        literal += template[pos : m.start()]
        pos = m.end()
        name = m.group(1)
        if not is_input(name):  # configuration: trusted, as written
            value = str(placeholders(m.group(0), data, run))
            url, literal = url + value, literal + value
            continue
        raw = data.get(name[len("input.") :], "")
        text = raw if isinstance(raw, str) else ("" if raw is None else str(raw))
        if authority_done(url):
            url += _encode(text, in_query=bool(re.search(r"[?#]", url)))
            literal += "x"
        elif user_url:
            url, literal = url + text, literal + text  # check_url holds it to the allow list
        else:
            raise _authority_refused(template, m.group(0))
    url += template[pos:]
    literal += template[pos:]
    if _origin(url) != _origin(literal):  # cannot happen with the encoding; never send it
        raise _authority_refused(template, "an input value")
    return url


def _encode(text: str, *, in_query: bool) -> str:
    if in_query:
        return quote(text, safe="")  # one value: '&', '=' and '#' included
    # in the path: '/' may separate segments, but no segment may climb ('.', '..')
    return "/".join("%2E" * len(seg) if seg in (".", "..") else quote(seg, safe="") for seg in text.split("/"))


def _authority_refused(template: str, wanted: str) -> OWFError:
    return OWFError(
        f"the URL template puts {wanted} into the URL's scheme, host or port: the request was "
        "refused before it was sent",
        code="VALIDATION",
        details={
            "url": template,
            "placeholder": wanted,
            "suggestion": "write the scheme and host literally (or from ${env.X}) and put inputs in "
            "the path or query; a user-provided URL needs urlValidation.allowedDomains",
        },
    )


def _origin(url: str) -> tuple[str, str, int | None]:
    try:
        parts = urlsplit(url)
        return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port
    except ValueError:
        return "", "", None


# ------------------------------------------------------------------------------------------------
# redirects


def redirect_target(current: Any, response: Any, validation: Any) -> Any:
    """The URL a redirect response sends the request to, or a failed step naming the redirect.

    Followed only to http(s); to the same host and port (an upgrade from http to https on the
    default ports too), or, when ``urlValidation.allowedDomains`` is set, to any host it allows.
    """
    location = response.headers.get("Location")
    if not location:
        raise _redirect_error(response, "", "it has no Location header")
    try:
        target = current.join(location)
    except Exception as exc:  # httpx.InvalidURL and what its parser raises
        raise _redirect_error(response, location, f"the Location does not parse: {exc}") from exc
    if target.scheme not in ("http", "https"):
        raise _redirect_error(response, location, f"only http and https redirects are followed, not {target.scheme}:")
    allowed = validation is not None and bool(validation.allowedDomains)
    if not allowed and not same_site(current, target):
        raise _redirect_error(
            response,
            location,
            f"it leaves {current.host}:{current.port or _default_port(current.scheme)} "
            "(set urlValidation.allowedDomains to follow redirects to other hosts)",
        )
    try:
        check_url(str(target), validation)
    except OWFError as exc:
        raise _redirect_error(response, location, exc.message) from exc
    return target


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def same_site(a: Any, b: Any) -> bool:
    """Same host and port (an http -> https upgrade on the default ports counts as the same)."""
    if a.host != b.host:
        return False
    pa, pb = a.port or _default_port(a.scheme), b.port or _default_port(b.scheme)
    if pa == pb:
        return True
    return a.scheme == "http" and b.scheme == "https" and a.port is None and b.port is None


def _redirect_error(response: Any, location: str, why: str) -> BackendError:
    return BackendError(
        f"HTTP {response.status_code} redirect to {location!r} not followed: {why}",
        details={"status_code": response.status_code, "redirect": location, "reason": "redirect"},
    )


def too_many_redirects(limit: int, location: str) -> BackendError:
    return BackendError(
        f"more than {limit} redirect(s): the redirect to {location!r} was not followed (maxRedirects)",
        details={"redirect": location, "limit": limit, "reason": "too_many_redirects"},
    )


# ------------------------------------------------------------------------------------------------
# bodies


async def read_bounded(response: Any, limit: int) -> bytes:
    """The response body, read as a stream; a failed step as soon as it passes `limit` bytes."""
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, int(declared), declared=True)
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit, len(body), declared=False)
    return bytes(body)


def _too_large(limit: int, size: int, *, declared: bool) -> BackendError:
    said = f"declares {size} bytes" if declared else f"passed {limit} bytes and was cut off"
    return BackendError(
        f"the HTTP response is too large: it {said}; the limit is {limit} bytes (maxResponseBytes)",
        details={"limit": limit, ("declared" if declared else "received"): size, "reason": "response_too_large"},
    )
