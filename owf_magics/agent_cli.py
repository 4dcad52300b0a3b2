"""``owf agent run REF [PATHS...]``: run one agent on its own and print its answer (or JSON)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any


def cmd_run(args: argparse.Namespace) -> int:
    from owf_magics.api import OpenWorkflow, input_pairs
    from owf_magics.errors import ManifestError, OWFError

    ow = OpenWorkflow(state=args.state)
    try:
        missing = [n for n in args.secret or [] if n not in os.environ]
        if missing:
            raise OWFError(f"--secret {missing[0]}: no environment variable of that name", code="VALIDATION")
        secrets = {n: os.environ[n] for n in args.secret or []}
        paths = [Path(p) for p in args.paths] or [Path(".")]
        ow.load_many(paths)
        agent = ow.load_agent(args.ref)
        data: Any = input_pairs(args.input) if args.input else {}
        if args.message is not None:
            data = args.message if not data else {**data, "message": args.message}
        res = agent.execute(data, backend=args.backend, secrets=secrets, session=args.session, callback=args.callback)
    except OWFError as exc:
        if args.json:
            diags = [d.to_dict() for d in exc.diagnostics] if isinstance(exc, ManifestError) else []
            _dump({"ok": False, "error": exc.to_dict(), "diagnostics": diags})
        elif isinstance(exc, ManifestError):
            for d in exc.diagnostics:
                print(d.format(), file=sys.stderr)
        else:
            print(f"{exc.code}: {exc.message}", file=sys.stderr)
        return 1
    usage = res.usage
    totals = {
        "prompt_tokens": int(usage["prompt_tokens"].sum()) if len(usage) else 0,
        "completion_tokens": int(usage["completion_tokens"].sum()) if len(usage) else 0,
        "cost_usd": float(usage["cost_usd"].fillna(0).sum()) if len(usage) else 0.0,
    }
    if args.json:
        _dump(
            {
                "ok": res.status == "completed",
                "status": res.status,
                "agent": agent.ref,
                "run_id": res.run_id,
                "output": res.output,
                "error": res.error.to_dict() if res.error else None,
                "usage": totals,
                "messages": res.messages,
            }
        )
    elif res.status == "completed":
        out = res.output if isinstance(res.output, str) else json.dumps(res.output, indent=2, default=str)
        print(out)
        print(
            f"[{agent.name}: {totals['prompt_tokens']}+{totals['completion_tokens']} tokens, "
            f"${totals['cost_usd']:.6f}, run {res.run_id}]",
            file=sys.stderr,
        )
    else:
        err = res.error
        print(f"{err.code}: {err.message}" if err else res.status, file=sys.stderr)
    return 0 if res.status == "completed" else 1


def _dump(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("agent", help="run one agent on its own")
    asub = p.add_subparsers(dest="agent_command", required=True)
    pr = asub.add_parser("run", help="run an agent once and print its answer")
    pr.add_argument("ref", help="agent:ns/name@range, or a loaded agent's name")
    pr.add_argument("paths", nargs="*", help="manifest files or directories (default: the current directory)")
    pr.add_argument("--backend", "-b", help="native, langchain, assistants... (default: the agent's own)")
    pr.add_argument("--input", "-i", action="append", metavar="KEY=VALUE", help="an input field (JSON values allowed)")
    pr.add_argument("--message", "-m", help="a text message (the input when no --input is given)")
    pr.add_argument("--session", help="continue this conversation (kept in the run store)")
    pr.add_argument("--state", default=None, help="the run store (default .owf/runs.db; ':memory:' keeps none)")
    pr.add_argument("--callback", help="stdout, stdout_verbose or an http(s) URL that receives every event")
    pr.add_argument("--secret", action="append", metavar="NAME", help="the environment variable NAME as secrets.NAME")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=cmd_run)
