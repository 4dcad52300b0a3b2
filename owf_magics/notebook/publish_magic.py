"""``%workflow publish NAME [--version V] --url URL [-o VAR]``: `OpenWorkflow.publish` in a cell.

What ``owf publish PATHS --server URL`` does for files, for a workflow loaded in the notebook: the
workflow (its highest loaded version, or ``--version V``) with the agents and connectors loaded
beside it goes to ``POST {URL}/workflows`` with the bearer token in ``OWF_TOKEN``. It was checked
when it was loaded, so nothing is sent for a workflow with problems (it is not loaded). ``--server``
is the CLI's spelling of ``--url``. Every failure fails the cell: an unknown workflow or version and
a missing URL before anything is sent, the service's refusal (``CONFLICT``, ``FORBIDDEN``,
``VALIDATION`` with its diagnostics) or an unreachable server after.
"""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError

from owf_magics.errors import OWFError
from owf_magics.notebook.errors import short

USAGE = "%workflow publish NAME [--version V] --url URL [-o VAR]"


def publish_line(ow: Any, ns: dict[str, Any], args: Any, rest: list[str]) -> None:
    """Publish the loaded workflow ``rest[0]`` to the service at ``args.url``; print what was
    published, bind the service's answer to ``-o VAR``.

    Raises:
        UsageError: No single NAME, no URL, a version that is not a semantic version, a workflow
            or version that is not loaded, or a -o that is not a variable name.
        OWFError: The service's error (its code, message and details), or UNAVAILABLE when the
            server cannot be reached; rendered short in the notebook.
    """
    from owf_magics.api.publish import TOKEN_ENV, publish_workflow
    from owf_magics.manifest.refs import parse_version

    if len(rest) != 1:
        raise UsageError(f"{USAGE}: one workflow NAME (quote names with spaces)")
    name = rest[0]
    if not args.url:
        raise UsageError(
            f"{USAGE}: --url names the running `owf serve` to publish to (the CLI's --server), "
            f"e.g. --url http://127.0.0.1:8000; the token is read from {TOKEN_ENV}"
        )
    wanted = parse_version(args.version) if args.version is not None else None
    if args.version is not None and wanted is None:
        raise UsageError(f"--version {args.version!r} is not a semantic version (e.g. 1.0.0)")
    if args.output and not str(args.output).isidentifier():
        raise UsageError(f"-o takes a Python variable name, got {args.output!r}")
    if not any(w.name == name for w in ow.workflows()):
        try:
            ow.workflow(name)  # its error names the closest loaded workflow
        except OWFError as exc:
            raise UsageError(exc.message) from None
    version = None
    if wanted is not None:
        loaded = sorted(w.version for w in ow.workflows() if w.name == name)
        version = next((v for v in loaded if parse_version(v) == wanted), None)
        if version is None:
            raise UsageError(f"workflow '{name}' version {args.version} is not loaded (loaded: {', '.join(loaded)})")
    try:
        answer = publish_workflow(ow, name, server=args.url, version=version)
    except OWFError as exc:
        raise short(exc) from None  # the service's message lists a refused manifest's problems
    for w in answer.get("workflows", []):
        print(f"published {w['name']}@{w['version']} to {args.url}")
    for w in answer.get("warnings", []):
        print(f"  warning: {w.get('code')}: {w.get('message')}")
    if args.output:
        ns[args.output] = answer
