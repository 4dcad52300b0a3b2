"""``owf publish PATHS --server URL`` and ``owf keys generate | rotate``.

``owf publish`` checks the manifests here first (every problem as ``file:line: CODE message``,
nothing sent), then sends each file's text to ``POST /workflows`` with the token in ``OWF_TOKEN``:
the server stores them under the token's tenant, each workflow at its version.

``owf keys generate`` prints a new key for ``OWF_SECRET_KEY``; ``owf keys rotate --state STORE``
re-encrypts every stored credential (sources' keys, published manifests) under the first key of
``OWF_SECRET_KEY`` (``NEW,OLD``: the old one still opens what it sealed). Run it once, with the
servers stopped or running (each text is rewritten in one transaction), then drop the old key.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from owf_magics.errors import ManifestError, OWFError


def add_parser(sub: Any) -> None:
    """Register ``owf publish`` and ``owf keys``."""
    p = sub.add_parser("publish", help="publish manifests' workflows to a running owf serve (POST /workflows)")
    p.add_argument("paths", nargs="+", metavar="PATHS", help="manifest files or directories")
    p.add_argument("--server", required=True, metavar="URL", help="the service, e.g. http://127.0.0.1:8000")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("keys", help="the key credentials at rest are encrypted with (OWF_SECRET_KEY)")
    ksub = p.add_subparsers(dest="keys_command", required=True)
    kg = ksub.add_parser("generate", help="print a new Fernet key for OWF_SECRET_KEY")
    kg.set_defaults(func=cmd_keys_generate)
    kr = ksub.add_parser("rotate", help="re-encrypt every stored credential under the first key of OWF_SECRET_KEY")
    kr.add_argument("--state", default=None, help="the run store (a SQLite path or postgresql:// URL)")
    kr.set_defaults(func=cmd_keys_rotate)


def _files(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix in (".yaml", ".yml", ".json") and f.is_file())
        else:
            out.append(p)
    return out


def cmd_publish(args: argparse.Namespace) -> int:
    from owf_magics.api import OpenWorkflow
    from owf_magics.api.publish import post_manifest

    files = _files(args.paths)
    try:
        OpenWorkflow(state=False).load_many(files)  # every problem here, before anything is sent
    except ManifestError as exc:
        for d in exc.diagnostics:
            print(d.format(), file=sys.stderr)
        return 1
    status = 0
    for path in files:
        try:
            answer = post_manifest(path.read_text(encoding="utf-8"), server=args.server)
        except OWFError as exc:
            print(f"{path}: {exc.code}: {exc.message}", file=sys.stderr)
            status = 1
            continue
        for w in answer.get("workflows", []):
            print(f"published {w['name']}@{w['version']} ({path})")
    return status


def cmd_keys_generate(args: argparse.Namespace) -> int:
    from owf_magics.runs.crypto import generate_key

    print(generate_key())
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from owf_magics.runs.crypto import Keyring, rotate_store
    from owf_magics.runs.store import open_store

    try:
        keyring = Keyring.from_env()
        store: Any = open_store(args.state)
        try:
            count = rotate_store(store, keyring)
        finally:
            store.close()
    except OWFError as exc:
        print(f"owf keys rotate: {exc.message}", file=sys.stderr)
        if exc.details.get("suggestion"):
            print(f"  {exc.details['suggestion']}", file=sys.stderr)
        return 2
    print(f"re-encrypted {count} stored credential text(s) under the first key of OWF_SECRET_KEY")
    return 0
