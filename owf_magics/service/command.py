"""``owf serve [PATHS...]``: its flags, and the settings read from them and the environment.

`cli.py` registers the command through `add_arguments` and `run` (by module name: the command
line and the service are both top-level rooms). FastAPI and uvicorn load only when serving.
"""

from __future__ import annotations

import argparse
import sys

from owf_magics.errors import ManifestError, OWFError
from owf_magics.runs.crypto import SECRET_KEY_ENV
from owf_magics.service.config import (
    MIN_SECRET_BYTES,
    SECRET_ENV,
    ServiceConfig,
    environment,
    load_keys,
    load_secrets,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``owf serve``."""
    p.add_argument("paths", nargs="*", metavar="PATHS", help="manifest files or directories served by name")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--state", default=None, help="the run store shared by every worker (default .owf/runs.db)")
    keys = p.add_argument_group("tokens")
    keys.add_argument(
        "--jwt-secret-file", metavar="FILE", help=f"the HS256 secret (default: ${SECRET_ENV}, >= {MIN_SECRET_BYTES} B)"
    )
    keys.add_argument("--jwt-public-key", metavar="FILE", help="a PEM public key: RSA for RS256, EC P-256 for ES256")
    keys.add_argument("--jwt-audience", help="the aud claim tokens must carry")
    keys.add_argument("--jwt-issuer", help="the iss claim tokens must carry")
    keys.add_argument("--jwt-leeway", type=float, default=30.0, help="seconds of clock skew allowed (default 30)")
    keys.add_argument(
        "--insecure-dev", action="store_true", help="serve without tokens (every caller has every scope); loopback only"
    )
    safety = p.add_argument_group("safety")
    safety.add_argument(
        "--allow-handlers", action="store_true", help="accept function and command handlers in manifests sent to it"
    )
    safety.add_argument("--secret", action="append", default=[], metavar="NAME", help="pass $NAME to runs as a secret")
    safety.add_argument(
        "--env", action="append", default=[], metavar="NAME", help="let the loaded workflows read $NAME as env.NAME"
    )
    safety.add_argument("--secrets-dir", metavar="DIR", help="every file in DIR is a secret named after the file")
    safety.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN", help="allow CORS from ORIGIN")
    safety.add_argument("--max-body-bytes", type=int, default=1_048_576, help="largest request body (default 1 MiB)")
    p.add_argument("--max-runs", type=int, default=8, help="runs executing at once in this worker (default 8)")
    p.add_argument(
        "--shutdown-grace", type=float, default=10.0, help="seconds runs get to finish on shutdown (default 10)"
    )
    p.add_argument("--no-docs", action="store_true", help="serve neither /docs nor /openapi.json")
    p.add_argument(
        "--log-level",
        default=None,
        choices=["critical", "error", "warning", "info", "debug"],
        help="the JSON log's level (default: $OWF_LOG_LEVEL, else info)",
    )


def config_from_args(args: argparse.Namespace) -> ServiceConfig:
    """The settings from the flags, the environment and the key and secret files.

    Raises:
        OWFError: VALIDATION for keys, secrets or flags that cannot be served.
    """
    env = environment()
    config = ServiceConfig(
        paths=list(args.paths),
        host=args.host,
        port=args.port,
        state=args.state,
        keys=load_keys(env, secret_file=args.jwt_secret_file, public_key=args.jwt_public_key),
        audience=args.jwt_audience,
        issuer=args.jwt_issuer,
        leeway=args.jwt_leeway,
        insecure_dev=args.insecure_dev,
        allow_handlers=args.allow_handlers,
        secrets=load_secrets(env, args.secret, args.secrets_dir),
        env=list(args.env),
        cors_origins=list(args.cors_origin),
        max_body_bytes=args.max_body_bytes,
        max_runs=args.max_runs,
        shutdown_grace=args.shutdown_grace,
        docs=not args.no_docs,
        secret_keys=[k for k in env.get(SECRET_KEY_ENV, "").split(",") if k.strip()],
        log_level=args.log_level or env.get("OWF_LOG_LEVEL", "info").lower(),
    )
    config.check()
    return config


def run(args: argparse.Namespace) -> int:
    """``owf serve``: serve until stopped; 2 for settings that cannot be served, 1 for bad manifests."""
    try:
        config = config_from_args(args)
    except OWFError as exc:
        print(f"owf serve: {exc.message}", file=sys.stderr)
        if exc.details.get("suggestion"):
            print(f"  {exc.details['suggestion']}", file=sys.stderr)
        return 2
    try:
        from owf_magics.service.server import serve
    except ImportError as exc:  # the serve extra is not installed
        print(
            f"owf serve needs the serve extra ({exc.name} is missing): pip install 'owf-magics[serve]'", file=sys.stderr
        )
        return 2
    try:
        serve(config, log_level=config.log_level)
    except ManifestError as exc:
        for d in exc.diagnostics:
            print(d.format(), file=sys.stderr)
        return 1
    except OWFError as exc:
        print(f"owf serve: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    return 0
