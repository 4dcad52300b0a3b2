"""``owf map FILE --inputs inputs.jsonl [--scheduler ADDRESS]``: `OpenWorkflow.map` from a shell.

Each line of the inputs file is one JSON object (one run); blank lines are skipped. It prints the
batch's summary and one line per run (``index status run_id outputs``), or the frame as JSON lines
with ``--json``; it exits 1 when any input failed (the batch itself always finishes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any


def read_inputs(path: str) -> list[dict[str, Any]]:
    """The JSON-lines inputs file, one object a line (a bad line is a VALIDATION error with file:line)."""
    from owf_magics.errors import OWFError

    rows: list[dict[str, Any]] = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise OWFError(f"cannot read the inputs file {path}: {exc.strerror}", code="VALIDATION") from exc
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise OWFError(
                f"{path}:{number}: not JSON ({exc.msg})",
                code="VALIDATION",
                details={"file": path, "line": number, "suggestion": "one JSON object per line"},
            ) from exc
        if not isinstance(row, dict):
            raise OWFError(
                f"{path}:{number}: each line must be a JSON object of inputs",
                code="VALIDATION",
                details={"file": path, "line": number},
            )
        rows.append(row)
    return rows


def cmd_map(args: argparse.Namespace) -> int:
    from owf_magics.api import OpenWorkflow
    from owf_magics.errors import OWFError

    ow = OpenWorkflow(state=args.state)
    try:
        missing = [n for n in args.secret or [] if n not in os.environ]
        if missing:
            raise OWFError(f"--secret {missing[0]}: no environment variable of that name", code="VALIDATION")
        secrets = {n: os.environ[n] for n in args.secret or []}
        ow.load_many([Path(f) for f in args.files])
        wf = ow.workflow(args.workflow)
        inputs = read_inputs(args.inputs)
        batch = ow.map(
            wf,
            inputs,
            client=args.scheduler,
            concurrency=args.concurrency,
            secrets=secrets,
            progress=None if not args.json else False,
        )
    except OWFError as exc:
        if args.json:
            json.dump({"ok": False, "error": exc.to_dict()}, sys.stdout, default=str)
            sys.stdout.write("\n")
        else:
            print(f"{exc.code}: {exc.message}", file=sys.stderr)
        return 2
    finally:
        ow.close()
    if args.json:
        for row in batch.frame.to_dict(orient="records"):
            sys.stdout.write(json.dumps(row, default=str) + "\n")
    else:
        print(batch.summary())
        for i, r in enumerate(batch.results):
            failure = r.error.code if r.error else ""
            detail = json.dumps(r.outputs, default=str) if r.status == "completed" else failure
            print(f"{i}\t{r.status}\t{r.run_id}\t{detail}")
    return 1 if batch.failed else 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("map", help="run a workflow once per line of a JSON-lines inputs file (here or on Dask)")
    p.add_argument("files", nargs="+", help="manifest files or directories (loaded together)")
    p.add_argument("--inputs", required=True, metavar="FILE.jsonl", help="one JSON object of inputs per line")
    p.add_argument("--workflow", "-w", help="the workflow to run (needed when several are loaded)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="a Dask scheduler (tcp://host:8786); default: this process")
    p.add_argument("--concurrency", type=int, help="runs at once in this process or per worker task (default 32)")
    p.add_argument("--state", default=None, help="the run store: a SQLite path or postgresql://... URL")
    p.add_argument("--secret", action="append", metavar="NAME", help="pass env var NAME as secrets.NAME")
    p.add_argument("--json", action="store_true", help="one JSON line per run (the batch frame)")
    p.set_defaults(func=cmd_map)
