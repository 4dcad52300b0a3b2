"""``owf mcp tools CONNECTOR_FILE``: an MCP connector's tools with their input schemas."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


def cmd_tools(args: argparse.Namespace) -> int:
    from owf_magics.api.openworkflow import OpenWorkflow
    from owf_magics.connectors.mcp import describe_tools
    from owf_magics.errors import ManifestError, OWFError

    ow = OpenWorkflow(state=False)
    try:
        missing = [n for n in args.secret or [] if n not in os.environ]
        if missing:
            raise OWFError(f"--secret {missing[0]}: no environment variable of that name", code="VALIDATION")
        secrets = {n: os.environ[n] for n in args.secret or []}
        loaded = [i for i in ow.load(args.file) if i.kind == "connector" and i.model.mcp is not None]
        if args.connector:
            loaded = [i for i in loaded if args.connector in (i.name, i.ref)]
        if not loaded:
            raise OWFError(f"{args.file} defines no MCP connector (kind: mcp-server)", code="VALIDATION")
        servers: list[dict[str, Any]] = [
            {"connector": i.ref, "tools": describe_tools(ow, i.ref, secrets)} for i in loaded
        ]
    except OWFError as exc:
        if args.json:
            diags = [d.to_dict() for d in exc.diagnostics] if isinstance(exc, ManifestError) else []
            json.dump({"ok": False, "error": exc.to_dict(), "diagnostics": diags}, sys.stdout, indent=2, default=str)
            sys.stdout.write("\n")
        elif isinstance(exc, ManifestError):
            for d in exc.diagnostics:
                print(d.format(), file=sys.stderr)
        else:
            print(f"{exc.code}: {exc.message}", file=sys.stderr)
        return 1
    finally:
        ow.close()
    if args.json:
        out: Any = servers[0] if len(servers) == 1 else {"servers": servers}
        json.dump(out, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return 0
    for server in servers:
        print(f"{server['connector']}: {len(server['tools'])} tools")
        for tool in server["tools"]:
            print(f"  {tool['name']}: {tool['description']}")
            print(f"    input: {json.dumps(tool['input'], sort_keys=True)}")
    return 0


def add_parser(sub: Any) -> None:
    """Register ``owf mcp tools`` on the ``owf`` command's subparsers."""
    p = sub.add_parser("mcp", help="MCP servers as connectors")
    msub = p.add_subparsers(dest="mcp_command", required=True)
    pt = msub.add_parser("tools", help="list an MCP connector's tools with their input schemas")
    pt.add_argument("file", help="a manifest file with the connector (kind: mcp-server)")
    pt.add_argument("--connector", "-c", help="which connector, when the file has several")
    pt.add_argument(
        "--secret", action="append", metavar="NAME", help="pass the environment variable NAME as secrets.NAME"
    )
    pt.add_argument("--json", action="store_true")
    pt.set_defaults(func=cmd_tools)
