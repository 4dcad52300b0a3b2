"""The ``owf`` command line: validate, plan, backends and schema (a thin layer over the core)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from owf_magics._version import __version__


def _print_json(data: Any) -> None:
    """Print `data` as JSON, whatever it holds (a value JSON cannot write is written as text)."""
    try:
        text = json.dumps(data, indent=2, default=_text)
    except (ValueError, TypeError, RecursionError, OverflowError):  # a cycle, a huge integer, deep data
        text = json.dumps(_plain(data, 0, set()), indent=2)
    sys.stdout.write(text + "\n")


def _text(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"


def _plain(value: Any, depth: int, active: set[int]) -> Any:
    """`value` as data `json` can always write: JSON scalars, dicts with text keys and lists."""
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        return value if value.bit_length() < 10_000 else f"<an integer of {value.bit_length():,} bits>"
    if depth > 100:
        return "<nested too deep>"
    if isinstance(value, dict | list | tuple):
        if id(value) in active:
            return "<contains itself>"
        active.add(id(value))
        try:
            if isinstance(value, dict):
                return {_text(k): _plain(v, depth + 1, active) for k, v in value.items()}
            return [_plain(v, depth + 1, active) for v in value]
        finally:
            active.discard(id(value))
    return _text(value)


def _crash(exc: BaseException, as_json: bool, secrets: Any = ()) -> int:
    """Report an exception nothing else handled: JSON with ``--json``, one line otherwise; exit 1.

    Secret values (``--secret NAME``) are redacted from the message. No traceback is printed;
    ``OWF_DEBUG=1`` prints it on stderr.
    """
    from owf_magics.errors import ManifestError, OWFError
    from owf_magics.manifest.redaction import redact

    if isinstance(exc, OWFError):
        error = exc.to_dict()
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        error = {
            "code": "INTERNAL_ERROR",
            "message": f"owf stopped on an unexpected error: {text}",
            "details": {"exception": type(exc).__name__},
        }
    error = redact(error, secrets)
    if os.environ.get("OWF_DEBUG"):
        import traceback

        print(redact("".join(traceback.format_exception(exc)), secrets), file=sys.stderr)
    if as_json:
        diagnostics = [d.to_dict() for d in exc.diagnostics] if isinstance(exc, ManifestError) else []
        _print_json({"ok": False, "status": "error", "code": error["code"], "error": error, "diagnostics": diagnostics})
    else:
        print(f"{error['code']}: {error['message']}", file=sys.stderr)
    return 1


def _report(exc: Exception, as_json: bool = False) -> int:
    """Print a load or run error on stderr (every diagnostic, or the code, message and fix), or
    with ``--json`` as ``{"ok": false, "error": {...}, "diagnostics": [...]}`` on stdout; exit 1."""
    from owf_magics.errors import ManifestError, OWFError

    if as_json and isinstance(exc, OWFError):
        diagnostics = [d.to_dict() for d in exc.diagnostics] if isinstance(exc, ManifestError) else []
        _print_json({"ok": False, "error": exc.to_dict(), "diagnostics": diagnostics})
        return 1
    if isinstance(exc, ManifestError):
        for d in exc.diagnostics:
            print(d.format(), file=sys.stderr)
    elif isinstance(exc, OWFError):
        print(f"{exc.code}: {exc.message}", file=sys.stderr)
        if exc.details.get("suggestion"):
            print(f"  {exc.details['suggestion']}", file=sys.stderr)
    return 1


def cmd_validate(args: argparse.Namespace) -> int:
    from owf_magics.api import OpenWorkflow
    from owf_magics.errors import ManifestError

    ow = OpenWorkflow()
    try:
        items = ow.load_many([Path(f) for f in args.files])
    except ManifestError as exc:
        if args.json:
            _print_json(
                {
                    "ok": False,
                    "errors": [d.to_dict() for d in exc.diagnostics],
                    "warnings": [d.to_dict() for d in exc.warnings],
                }
            )
        else:
            for d in exc.diagnostics:
                print(d.format())
            if not args.no_warnings:
                for d in exc.warnings:
                    print(d.format().replace(f" {d.code} ", f" warning {d.code} ", 1))
            print(f"{len(exc.diagnostics)} error(s)", file=sys.stderr)
        return 1
    if getattr(args, "check_backends", False):
        from owf_magics.api.checks import check_backends

        problems = check_backends(ow, items, ow.warnings)
        if problems:
            if args.json:
                _print_json({"ok": False, "errors": problems, "warnings": [d.to_dict() for d in ow.warnings]})
            else:
                for p in problems:
                    at = f"{p['file']}:{p['line']}: " if p.get("line") else (f"{p['file']}: " if p.get("file") else "")
                    print(f"{at}{p['code']} {p['message']} Fix: {p['hint']}")
                print(f"{len(problems)} backend problem(s)", file=sys.stderr)
            return 1
    if args.json:
        _print_json(
            {
                "ok": True,
                "errors": [],
                "warnings": [d.to_dict() for d in ow.warnings],
                "manifests": [i.ref for i in items],
            }
        )
        return 0
    if not args.no_warnings:
        for d in ow.warnings:
            print(d.format().replace(f" {d.code} ", f" warning {d.code} ", 1))
    counts: dict[str, int] = {}
    for i in items:
        counts[i.kind] = counts.get(i.kind, 0) + 1
    summary = ", ".join(f"{n} {k}{'s' if n != 1 else ''}" for k, n in sorted(counts.items())) or "nothing"
    print(f"ok: {summary} valid ({len(ow.warnings)} warning(s))")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from owf_magics.api import OpenWorkflow
    from owf_magics.errors import OWFError

    ow = OpenWorkflow()
    try:
        ow.load_many([Path(f) for f in args.files])
        wf = ow.workflow(args.workflow)
        plan = wf.plan(prefer_backend=args.prefer_backend)
    except OWFError as exc:
        return _report(exc, args.json)
    if args.json:
        _print_json(
            {
                "workflow": plan.workflow,
                "version": plan.version,
                "prefer_backend": plan.prefer_backend,
                "steps": plan.rows(),
            }
        )
    else:
        print(
            f"workflow {plan.workflow} {plan.version}"
            + (f" (prefer {plan.prefer_backend})" if plan.prefer_backend else "")
        )
        print(plan.to_text())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from owf_magics.api import OpenWorkflow, input_pairs
    from owf_magics.errors import OWFError

    ow = OpenWorkflow(state=args.state)
    try:
        ow.load_many([Path(f) for f in args.files])
        for d in (d for d in ow.warnings if d.code == "LITERAL_CREDENTIAL"):  # stderr: --json stays clean
            print(d.format().replace(f" {d.code} ", f" warning {d.code} ", 1), file=sys.stderr)
        wf = ow.workflow(args.workflow)
        inputs = input_pairs(args.input, wf.manifest.inputs)
        secrets = _secrets(args.secret)
        result = wf.execute(inputs=inputs, prefer_backend=args.prefer_backend, callback=args.callback, secrets=secrets)
    except OWFError as exc:
        return _report(exc, args.json)
    return _print_result(result, args.json)


def cmd_resume(args: argparse.Namespace) -> int:
    from owf_magics.api import OpenWorkflow, resume_answers
    from owf_magics.errors import OWFError

    approvals, event = resume_answers(args.approve, args.reject, args.event)
    ow = OpenWorkflow(state=args.state)
    try:
        ow.load_many([Path(f) for f in args.files])
        result = ow.resume(
            args.run_id,
            approvals=approvals,
            event=event,
            callback=args.callback,
            force=args.force,
            secrets=_secrets(args.secret),
        )
    except OWFError as exc:
        return _report(exc, args.json)
    return _print_result(result, args.json)


def cmd_runs(args: argparse.Namespace) -> int:
    from owf_magics.api import OpenWorkflow

    frame = OpenWorkflow(state=args.state).runs()
    if args.json:
        _print_json(json.loads(frame.to_json(orient="records", date_format="iso")))
        return 0
    if frame.empty:
        print("no runs stored")
        return 0
    cols = [c for c in ("run_id", "workflow", "status", "started_at", "duration_ms", "steps", "pending") if c in frame]
    print(frame[cols].to_string(index=False))
    return 0


def _print_result(result: Any, as_json: bool) -> int:
    if as_json:
        _print_json(
            {
                "run_id": result.run_id,
                "status": result.status,
                "error": result.error.to_dict() if result.error else None,
                "outputs": result.outputs,
                "trace": result.trace_rows,
                "usage": result.usage_rows,
                "pending": [
                    {"id": p.id, "step_id": p.step_id, "kind": p.kind, "payload": p.payload} for p in result.pending
                ],
            }
        )
    else:
        print(result.summary())
        print(json.dumps(result.outputs, indent=2, default=str))
        for request in result.pending:
            print(f"waiting for {request.kind} {request.id} at step {request.step_id}: {json.dumps(request.payload)}")
        if result.pending:
            print(f"continue with: owf resume {result.run_id} FILES --approve ID | --reject ID | --event JSON")
        cols = [
            "step_id",
            "type",
            "backend",
            "status",
            "iteration",
            "attempt",
            "duration_ms",
            "total_tokens",
            "error_code",
        ]
        import pandas as pd

        with pd.option_context("display.width", 160, "display.max_columns", 20):
            print(result.trace[cols].to_string(index=False))
    return 0 if result.status in ("completed", "waiting_approval") else 1


def cmd_backends(args: argparse.Namespace) -> int:
    from owf_magics.api import OpenWorkflow

    infos = OpenWorkflow().backends()
    if args.json:
        _print_json(
            [
                {
                    "name": i.name,
                    "version": i.version,
                    "installed": i.installed,
                    "description": i.description,
                    "missing": list(i.missing),
                    "install": i.install_hint,
                }
                for i in infos
            ]
        )
        return 0
    for i in infos:
        state = "[installed]" if i.installed else "[not installed]"
        print(f"{i.name:<12}{i.version:<10}{state:<17}{i.description}")
    return 0


def cmd_backend_test(args: argparse.Namespace) -> int:
    from owf_magics.api import OpenWorkflow
    from owf_magics.errors import OWFError
    from owf_magics.runtime.backend import ExecutionContext

    ow = OpenWorkflow()
    checks: list[dict[str, Any]] = []

    def check(name: str, ok: bool, detail: str = "") -> None:
        checks.append({"check": name, "ok": ok, "detail": detail})

    try:
        info = ow.backend_registry.info(args.name)
        check("known", True, f"{info.name} {info.version}")
        check(
            "installed",
            info.installed,
            "" if info.installed else f"missing: {', '.join(info.missing) or '?'}; install: {info.install_hint}",
        )
        if info.installed:
            backend = ow.backend(args.name)
            got = backend.get_info()
            check(
                "get_info",
                got.name == ow.backend_registry.canonical(args.name),
                f"name={got.name} version={got.version}",
            )
            ow.load(
                {
                    "type": "workflow",
                    "name": "backend-probe",
                    "execution": {"backend": args.name, "runtime": "python"},
                    "steps": [{"id": "probe", "type": "transform", "expression": "{{ inputs.x }}"}],
                    "inputs": {"x": {"type": "string"}},
                }
            )
            plan = ow.workflow("backend-probe").plan()
            check(
                "resolution",
                plan["probe"].backend == info.name and plan["probe"].source == "workflow",
                f"probe step → {plan['probe'].backend} ({plan['probe'].reason})",
            )
            if "action" in got.capabilities:
                manifest = {
                    "type": "connector",
                    "name": "probe",
                    "actions": [
                        {"name": "echo", "handler": {"function": "owf_magics.connectors.function.echo_handler"}}
                    ],
                }
                ctx = ExecutionContext(run_id="backend-test", node_id="probe", metadata={"action": "echo"})
                result = backend.invoke(manifest, {"ping": 1}, ctx)
                check("invoke", result.get("output") == {"ping": 1}, f"echo action returned {result.get('output')!r}")
    except OWFError as exc:
        check("available", False, f"{exc.code}: {exc.message}. {exc.details.get('suggestion', '')}".strip())
    ok = all(c["ok"] for c in checks)
    if args.json:
        _print_json({"backend": args.name, "ok": ok, "checks": checks})
    else:
        for c in checks:
            print(f"{'PASS' if c['ok'] else 'FAIL'}  {c['check']:<11} {c['detail']}")
        print(f"backend {args.name}: {'ok' if ok else 'not usable here'}")
    return 0 if ok else 1


def _secrets(names: list[str] | None) -> dict[str, str]:
    """``--secret NAME``: the environment variable NAME, as ``secrets.NAME``."""
    from owf_magics.errors import OWFError

    missing = [n for n in names or [] if n not in os.environ]
    if missing:
        raise OWFError(
            f"--secret {missing[0]}: no environment variable of that name",
            code="VALIDATION",
            details={"suggestion": f"export {missing[0]}=... before running"},
        )
    return {n: os.environ[n] for n in names or []}


def _durable_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state", default=None, help="the run store (default .owf/runs.db; ':memory:' keeps none)")
    p.add_argument("--callback", help="stdout, stdout_verbose or an http(s) URL that receives every event")
    p.add_argument(
        "--secret",
        action="append",
        metavar="NAME",
        help="pass the environment variable NAME to templates as secrets.NAME (repeatable; never printed)",
    )


def cmd_convert(args: argparse.Namespace) -> int:
    from owf_magics.errors import ManifestError
    from owf_magics.formats.convert import convert_file

    try:
        text = convert_file(args.file, to=args.to)
    except ManifestError as exc:
        for d in exc.diagnostics:
            print(d.format(), file=sys.stderr)
        print(f"{len(exc.diagnostics)} error(s)", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from owf_magics.manifest.models import json_schema

    _print_json(json_schema())
    return 0


def _service_command() -> Any:
    """``owf serve``'s module, by name: the service is a top-level room beside this one."""
    import importlib

    return importlib.import_module("owf_magics.service.command")


def cmd_serve(args: argparse.Namespace) -> int:
    return int(_service_command().run(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="owf", description="OpenWorkflow manifests: validate, plan, backends.")
    parser.add_argument("--version", action="version", version=f"owf-magics {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check manifest files; print every problem as file:line: CODE message")
    p.add_argument("files", nargs="+", help="manifest files or directories (loaded together)")
    p.add_argument("--json", action="store_true", help="print the diagnostics as JSON")
    p.add_argument("--no-warnings", action="store_true", help="do not print warnings")
    p.add_argument(
        "--check-backends",
        action="store_true",
        help="also fail when a declared backend or runtime is not installed/registered, or a framework "
        "version is outside a compatibility range",
    )
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("plan", help="show which backend runs each step, and why")
    p.add_argument("files", nargs="+", help="manifest files or directories (loaded together)")
    p.add_argument("--workflow", "-w", help="the workflow to plan (needed when several are loaded)")
    p.add_argument("--prefer-backend", help="the backend for steps that name none")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("run", help="run a workflow and print its summary, outputs and trace")
    p.add_argument("files", nargs="+", help="manifest files or directories (loaded together)")
    p.add_argument("--workflow", "-w", help="the workflow to run (needed when several are loaded)")
    p.add_argument("--input", "-i", action="append", metavar="KEY=VALUE", help="an input (JSON values allowed)")
    p.add_argument("--prefer-backend", help="the backend for steps that name none")
    p.add_argument("--json", action="store_true")
    _durable_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("resume", help="continue a waiting or interrupted run (answers approvals, delivers events)")
    p.add_argument("run_id")
    p.add_argument("files", nargs="+", help="the manifests the run was started with")
    p.add_argument("--approve", action="append", metavar="REQUEST_ID", help="approve a pending request")
    p.add_argument("--reject", action="append", metavar="REQUEST_ID", help="reject a pending request")
    p.add_argument("--event", metavar="JSON", help="the payload of the event the run waits for")
    p.add_argument(
        "--force", action="store_true", help="continue a 'running' run that holds no lease (stored before leases)"
    )
    p.add_argument("--json", action="store_true")
    _durable_options(p)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("runs", help="list the stored runs")
    p.add_argument("--state", default=None, help="the run store (default .owf/runs.db)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("backends", help="backend management")
    bsub = p.add_subparsers(dest="backends_command", required=True)
    pl = bsub.add_parser("list", help="name, version, [installed]/[not installed], description")
    pl.add_argument("--json", action="store_true")
    pl.set_defaults(func=cmd_backends)

    p = sub.add_parser("backend", help="one backend")
    bsub = p.add_subparsers(dest="backend_command", required=True)
    pt = bsub.add_parser("test", help="check that a backend is installed and honours the contract")
    pt.add_argument("name")
    pt.add_argument("--json", action="store_true")
    pt.set_defaults(func=cmd_backend_test)

    p = sub.add_parser("convert", help="print a flow, spec or request of another format as OpenWorkflow YAML")
    p.add_argument("file", help="the file to convert (OpenFlow flow, AgentFlow spec, workflow-runner request)")
    p.add_argument("--to", default="openworkflow", choices=["openworkflow"], help="target format")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("schema", help="print the canonical model as JSON Schema")
    p.add_argument("--json", action="store_true", help="(the output is always JSON)")
    p.set_defaults(func=cmd_schema)

    from owf_magics.mcp_cli import add_parser as add_mcp

    add_mcp(sub)  # owf mcp tools CONNECTOR_FILE
    from owf_magics.batch_cli import add_parser as add_map

    add_map(sub)  # owf map FILE --inputs inputs.jsonl [--scheduler ADDRESS]

    from owf_magics.agent_cli import add_parser as add_agent

    add_agent(sub)  # owf agent run REF [PATHS...]
    from owf_magics.publish_cli import add_parser as add_publish

    add_publish(sub)  # owf publish PATHS --server URL; owf keys generate | rotate
    from owf_magics.sessions_cli import add_parser as add_sessions

    add_sessions(sub)  # owf sessions list | prune

    p = sub.add_parser("serve", help="serve the workflows over HTTP (JWT, server-sent events; docs/service.md)")
    _service_command().add_arguments(p)
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # a usage error: argparse printed it; --json callers get JSON too
        if as_json and stop.code not in (0, None):
            _print_json(
                {
                    "ok": False,
                    "status": "error",
                    "code": "USAGE",
                    "error": {"code": "USAGE", "message": "invalid arguments (see the usage on stderr)", "details": {}},
                }
            )
        raise
    secrets = [os.environ[n] for n in getattr(args, "secret", None) or [] if n in os.environ]
    try:
        code: int = args.func(args)
    except BrokenPipeError:  # `owf schema | head`: the reader left; that is not an error
        sys.stderr.close()
        return 0
    except Exception as exc:  # the last resort: an error nobody handled is still a report, not a traceback
        return _crash(exc, bool(getattr(args, "json", False)), secrets)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
