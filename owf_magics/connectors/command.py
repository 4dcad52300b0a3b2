"""The ``command`` handler kind: a program run without a shell, JSON in on stdin and out on stdout."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from owf_magics.connectors.base import placeholders
from owf_magics.errors import BackendError
from owf_magics.manifest.models import (
    Handler,
)
from owf_magics.runtime.context import (
    RunContext,
)


async def handle(run: RunContext, handler: Handler, data: Any, step_id: str) -> Any:
    """Run the handler's command with its arguments, the input as JSON on stdin, JSON read from stdout."""
    mapping = data if isinstance(data, dict) else {}
    argv = [placeholders(handler.command, mapping, run), *(placeholders(a, mapping, run) for a in handler.args)]
    env = {**os.environ, **placeholders(dict(handler.env), mapping, run)}
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=handler.workingDir,
        env=env,
    )
    try:
        out, err = await proc.communicate(json.dumps(data).encode())
    except asyncio.CancelledError:
        proc.kill()
        raise
    if proc.returncode != 0:
        raise BackendError(
            f"command exited with {proc.returncode}: {err.decode(errors='replace').strip()[:500]}",
            details={"exit_code": proc.returncode},
        )
    text = out.decode(errors="replace").strip()
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError as exc:
        raise BackendError(f"command did not print JSON: {text[:200]!r}") from exc
