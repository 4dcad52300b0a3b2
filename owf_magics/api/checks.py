"""``owf validate --check-backends``: is every backend and runtime a manifest declares usable here?

Loading already rejects a backend name nobody knows. This check also fails on a known name that
is not installed or registered (``custom``, ``assistants`` without its package), a runtime the
backend does not run, and a framework version outside a declared ``compatibility`` range (a
warning at load, an error here).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from owf_magics.api.provider_checks import provider_problems
from owf_magics.manifest.catalog import Loaded


def declared_backends(item: Loaded[Any]) -> list[tuple[str, str | None, str | None]]:
    """(backend, runtime, step id) of every ``execution`` block of a manifest and its steps."""
    out: list[tuple[str, str | None, str | None]] = []
    execution = getattr(item.model, "execution", None)
    if execution is not None and execution.backend:
        out.append((execution.backend, execution.runtime, None))
    for step in _steps(getattr(item.model, "steps", None) or []):
        ex = getattr(step, "execution", None)
        if ex is not None and ex.backend:
            out.append((ex.backend, ex.runtime, step.id))
    return out


def _steps(steps: Iterable[Any]) -> Iterable[Any]:
    for step in steps:
        yield step
        for nested in ("steps", "branches"):
            inner = getattr(step, nested, None)
            if isinstance(inner, list):
                yield from _steps(x for x in inner if hasattr(x, "id"))


def check_backends(ow: Any, items: list[Loaded[Any]], warnings: list[Any]) -> list[dict[str, Any]]:
    """Every problem as ``{code, message, ref, step_id, file, line, hint}`` (empty when all is usable)."""
    problems: list[dict[str, Any]] = []
    registry = ow.backend_registry
    for item in items:
        problems.extend(provider_problems(item))  # a model provider whose package is missing
        for name, runtime, step_id in declared_backends(item):
            where = {"ref": item.ref, "step_id": step_id, "file": item.file, "line": None}
            if not registry.is_known(name):
                continue  # the load reported it (INVALID_BACKEND)
            info = registry.info(name)
            if not info.installed:
                missing = ", ".join(info.missing) if info.missing else "no backend registered under that name"
                problems.append(
                    {
                        "code": "BACKEND_UNAVAILABLE",
                        "message": f"backend '{name}' declared by {item.ref} is not installed or registered"
                        f" ({missing})",
                        "hint": info.install_hint or f"ow.register_backend('{name}', YourBackend())",
                        **where,
                    }
                )
            elif runtime and runtime != "any" and info.runtime and runtime != info.runtime:
                problems.append(
                    {
                        "code": "MISSING_RUNTIME",
                        "message": f"backend '{name}' runs {info.runtime}, but {item.ref} declares runtime {runtime}",
                        "hint": f"use runtime: {info.runtime}, or install the {runtime} adapter",
                        **where,
                    }
                )
    for w in warnings:
        if w.code == "VERSION_MISMATCH":
            problems.append(
                {
                    "code": w.code,
                    "message": w.message,
                    "hint": w.hint,
                    "ref": None,
                    "step_id": w.step_id,
                    "file": w.file,
                    "line": w.line,
                }
            )
    return problems
