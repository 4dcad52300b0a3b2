"""Bearer tokens: a JWT checked with PyJWT (signature, ``exp``, ``nbf``, ``iat``, and the audience
and issuer when configured), read as a `Principal` (``sub``, ``tenant``, ``scope``).

The algorithm is taken from the token's header only among those the server has a key for, and
each algorithm has its own key, so an HS256 token can never be checked against a public key.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from owf_magics.service.config import SCOPES, ServiceConfig
from owf_magics.service.errors import ApiError

#: How many checked tokens are remembered (until their ``exp``), so a client's repeated token is
#: verified once; the signature, ``nbf`` and ``iat`` checks passed when it was first seen.
CACHE_SIZE = 4096

bearer = HTTPBearer(auto_error=False, description="A JWT signed with the server's key (docs/service.md)")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="owf"'}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling.

    Attributes:
        sub: The token's subject.
        tenant: The tenant whose runs the caller sees (None: runs that belong to no tenant).
        scopes: What the caller may do.
    """

    sub: str
    tenant: str | None
    scopes: frozenset[str]


DEVELOPER = Principal("dev", None, frozenset(SCOPES))


class TokenChecker:
    """Checks tokens against the configured keys."""

    def __init__(self, config: ServiceConfig) -> None:
        self.keys = dict(config.keys)
        self.audience = config.audience
        self.issuer = config.issuer
        self.leeway = config.leeway
        self.insecure = config.insecure_dev and not self.keys
        self._checked: dict[str, tuple[Principal, float]] = {}  # token -> (caller, expiry)

    def principal(self, token: str | None) -> Principal:
        """The caller of a request with this bearer token.

        Raises:
            ApiError: 401 for a missing, malformed, expired, not-yet-valid or wrongly signed token.
        """
        if self.insecure:
            return DEVELOPER
        if not token:
            raise ApiError(401, "a bearer token is required (Authorization: Bearer <jwt>)", headers=_CHALLENGE)
        hit = self._checked.get(token)
        if hit is not None and time.time() <= hit[1]:  # a token seen before, still within its exp
            return hit[0]
        who, expires = self._check(token)
        if len(self._checked) >= CACHE_SIZE:
            self._checked.clear()
        self._checked[token] = (who, expires)
        return who

    def _check(self, token: str) -> tuple[Principal, float]:
        try:
            alg = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError as exc:
            raise _unauthorized("the token is not a JWT", exc) from None
        key = self.keys.get(alg) if isinstance(alg, str) else None
        if key is None or not isinstance(alg, str):
            raise ApiError(
                401,
                f"tokens signed with {alg!r} are not accepted here",
                {"accepted": sorted(self.keys)},
                headers=_CHALLENGE,
            )
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise _unauthorized("the token has expired", exc) from None
        except jwt.ImmatureSignatureError as exc:
            raise _unauthorized("the token is not valid yet (nbf or iat in the future)", exc) from None
        except jwt.InvalidSignatureError as exc:
            raise _unauthorized("the token's signature does not match the server's key", exc) from None
        except jwt.PyJWTError as exc:
            raise _unauthorized("the token is not acceptable", exc) from None
        return _principal(claims), float(claims["exp"]) + self.leeway


def _unauthorized(message: str, exc: Exception) -> ApiError:
    return ApiError(401, message, {"reason": type(exc).__name__}, headers=_CHALLENGE)


def _principal(claims: dict[str, Any]) -> Principal:
    sub, tenant, scope = claims.get("sub"), claims.get("tenant"), claims.get("scope", "")
    if not isinstance(sub, str) or not sub:
        raise ApiError(401, "the token's sub claim must be a non-empty string", headers=_CHALLENGE)
    if tenant is not None and (not isinstance(tenant, str) or not tenant):
        raise ApiError(401, "the token's tenant claim must be a non-empty string", headers=_CHALLENGE)
    if isinstance(scope, str):
        scopes = frozenset(scope.split())
    elif isinstance(scope, list) and all(isinstance(s, str) for s in scope):
        scopes = frozenset(scope)
    else:
        raise ApiError(401, "the token's scope claim must be a space-separated string", headers=_CHALLENGE)
    return Principal(sub, tenant, scopes)


def require(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency: the caller, who must hold `scope` (403 otherwise)."""

    async def dependency(  # async: checking a token is quick, and needs no trip to a worker thread
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> Principal:
        checker: TokenChecker = request.app.state.tokens
        header = request.headers.get("authorization")
        if credentials is None and header and not checker.insecure:
            raise ApiError(401, "the Authorization header must be 'Bearer <jwt>'", headers=_CHALLENGE)
        who = checker.principal(credentials.credentials if credentials else None)
        request.state.tenant, request.state.sub = who.tenant, who.sub  # for the request's log line
        if scope not in who.scopes:
            raise ApiError(
                403,
                f"this needs the scope {scope}",
                {"required": scope, "granted": sorted(who.scopes)},
            )
        return who

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    return dependency
