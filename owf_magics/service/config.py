"""The service's settings, its token keys and its secrets, read once at start-up.

Nothing here comes from a request: keys come from ``OWF_JWT_SECRET`` or files, run secrets from
the server's environment or a directory of secret files. A setting that cannot work (no key, a
short HMAC secret, a public bind without keys) stops the start with a message that says the fix.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from owf_magics.errors import OWFError

#: Scopes a token may carry (space-separated in its ``scope`` claim).
SCOPES = (
    "workflows:read",
    "workflows:run",
    "runs:read",
    "runs:approve",
    "workflows:write",
    "sources:read",
    "sources:write",
    "metrics:read",
)
#: The environment variable holding the HS256 secret.
SECRET_ENV = "OWF_JWT_SECRET"
#: The shortest HS256 secret accepted (RFC 7518 asks for a key as long as the hash: 256 bits).
MIN_SECRET_BYTES = 32


@dataclass
class ServiceConfig:
    """How `owf serve` runs (every field has the command-line flag of the same name).

    Attributes:
        paths: Manifest files or directories loaded at start-up (the workflows served by name).
        host: The address to bind (default loopback).
        port: The port (0: any free port).
        state: The run store (a SQLite path shared by every worker).
        keys: Verification keys by JWT algorithm (``HS256`` → secret bytes, ``RS256``/``ES256`` →
            a public key), filled by `load_keys`.
        audience: Required ``aud`` claim, when set.
        issuer: Required ``iss`` claim, when set.
        leeway: Seconds of clock skew allowed on ``exp``, ``nbf`` and ``iat``.
        insecure_dev: Serve without keys (every request is a developer with every scope), loopback only.
        allow_handlers: Let manifests sent in requests use every handler kind (default: ``http`` only,
            so no ``function``, ``command`` or ``mcp`` handler runs code on the server).
        secrets: Values runs of the loaded workflows read as ``secrets.NAME``.
        env: Environment variables the loaded workflows' templates may read as ``env.NAME``
            (besides those they declare); manifests sent in requests read none.
        cors_origins: Origins allowed by CORS (none: CORS is off).
        max_body_bytes: The largest request body accepted.
        max_runs: Runs executing at once in this worker; more wait in FIFO order.
        shutdown_grace: Seconds runs get to finish on shutdown before they are stopped (resumable).
        docs: Serve ``/docs`` and ``/openapi.json``.
        poll_interval: Seconds between store reads while an event stream follows a run.
        secret_keys: The Fernet keys credentials at rest are sealed with (``OWF_SECRET_KEY``,
            comma-separated, newest first; see `owf_magics.runs.crypto`).
        log_level: The level of the JSON-lines log on stderr (``OWF_LOG_LEVEL``).
    """

    paths: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 8000
    state: str | None = None
    keys: dict[str, Any] = field(default_factory=dict)
    audience: str | None = None
    issuer: str | None = None
    leeway: float = 30.0
    insecure_dev: bool = False
    allow_handlers: bool = False
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    env: list[str] = field(default_factory=list)
    cors_origins: list[str] = field(default_factory=list)
    max_body_bytes: int = 1_048_576
    max_runs: int = 8
    shutdown_grace: float = 10.0
    docs: bool = True
    poll_interval: float = 0.1
    secret_keys: list[str] = field(default_factory=list, repr=False)
    log_level: str = "info"

    def check(self) -> None:
        """Refuse settings that cannot be served safely.

        Raises:
            OWFError: VALIDATION naming the problem and the fix.
        """
        if not self.keys and not self.insecure_dev:
            raise OWFError(
                "no key to check tokens with",
                code="VALIDATION",
                details={
                    "suggestion": f"set {SECRET_ENV} (HS256, at least {MIN_SECRET_BYTES} bytes) or pass "
                    "--jwt-public-key FILE (RS256/ES256); --insecure-dev serves without tokens on loopback only"
                },
            )
        if self.insecure_dev and not is_loopback(self.host):
            raise OWFError(
                f"--insecure-dev serves without tokens, so only on loopback, not {self.host}",
                code="VALIDATION",
                details={"suggestion": "--host 127.0.0.1, or configure a key and drop --insecure-dev"},
            )
        if self.log_level not in ("critical", "error", "warning", "info", "debug"):
            raise OWFError(
                f"log level {self.log_level!r} is not one of critical, error, warning, info, debug",
                code="VALIDATION",
                details={"suggestion": "OWF_LOG_LEVEL=info (or --log-level)"},
            )
        if self.max_body_bytes < 1024 or self.max_runs < 1:
            raise OWFError("--max-body-bytes must be at least 1024 and --max-runs at least 1", code="VALIDATION")


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address (``localhost``, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_keys(
    environ: Mapping[str, str], *, secret_file: str | None = None, public_key: str | None = None
) -> dict[str, Any]:
    """The token keys: the HS256 secret (``OWF_JWT_SECRET`` or a file) and a PEM public key.

    The public key's type picks its algorithm: RSA → RS256, EC P-256 → ES256.

    Raises:
        OWFError: VALIDATION for a short secret, an unreadable file or an unsupported key.
    """
    keys: dict[str, Any] = {}
    secret = environ.get(SECRET_ENV)
    if secret_file is not None:
        secret = _read(secret_file).rstrip("\r\n")
    if secret:
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise OWFError(
                f"the HS256 secret is {len(secret.encode())} bytes; at least {MIN_SECRET_BYTES} are needed",
                code="VALIDATION",
                details={"suggestion": "python -c 'import secrets; print(secrets.token_urlsafe(48))'"},
            )
        keys["HS256"] = secret.encode()
    if public_key is not None:
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        try:
            key = load_pem_public_key(_read(public_key).encode())
        except ValueError as exc:
            raise OWFError(
                f"{public_key} is not a PEM public key", code="VALIDATION", details={"path": public_key}
            ) from exc
        if isinstance(key, rsa.RSAPublicKey):
            keys["RS256"] = key
        elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1":
            keys["ES256"] = key
        else:
            raise OWFError(
                f"{public_key}: only RSA (RS256) and EC P-256 (ES256) public keys are supported",
                code="VALIDATION",
                details={"path": public_key},
            )
    return keys


def load_secrets(environ: Mapping[str, str], names: Sequence[str], directory: str | None) -> dict[str, str]:
    """Run secrets: each ``--secret NAME`` from the server's environment, and every file in
    ``--secrets-dir`` (the file's name is the secret's, its text without a final newline the value).

    Raises:
        OWFError: VALIDATION for a name that is not set, or a directory that cannot be read.
    """
    out: dict[str, str] = {}
    if directory is not None:
        folder = Path(directory)
        if not folder.is_dir():
            raise OWFError(f"--secrets-dir {directory} is not a directory", code="VALIDATION")
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                out[path.name] = path.read_text().rstrip("\r\n")
    for name in names:
        if name not in environ:
            raise OWFError(
                f"--secret {name}: the environment variable {name} is not set",
                code="VALIDATION",
                details={"secret": name},
            )
        out[name] = environ[name]
    return out


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise OWFError(f"cannot read {path}: {exc.strerror}", code="VALIDATION", details={"path": path}) from exc


def environment() -> Mapping[str, str]:
    """The process environment (one place to read it, so tests can see what is read)."""
    return os.environ
