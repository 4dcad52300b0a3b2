"""Reshaping a positioned manifest tree while keeping its positions: the helpers every spelling
module shares (`normalize`, `agent_spellings`, `step_spellings`), the `SpellingContext` that
collects one manifest's ``ALIAS`` warnings, and the execution and retry spellings that agents,
connectors and steps all use.
"""

from __future__ import annotations

from typing import Any

from owf_magics.errors import Diagnostic, DiagnosticBag, format_path
from owf_magics.manifest.loader import MAX_DEPTH, LMap, LSeq, Pos

#: A place in a manifest: keys and list indexes from its root.
Path = tuple[str | int, ...]


# --------------------------------------------------------------------------------------------
# helpers that keep positions while reshaping


def key_pos(m: LMap, key: str) -> Pos | None:
    return m.key_pos.get(key, m.pos)


def as_map(value: Any) -> LMap | None:
    if isinstance(value, LMap):
        return value
    if isinstance(value, dict):  # data given as Python objects: wrap without positions
        out = LMap(pos=None)
        out.update(value)
        return out
    return None


def new_map(pos: Pos | None, items: dict[str, Any] | None = None, key_pos: Pos | None = None) -> LMap:
    out = LMap(pos=pos)
    for k, v in (items or {}).items():
        out[k] = v
        if key_pos is not None:
            out.key_pos[k] = key_pos
    return out


def set_key(m: LMap, key: str, value: Any, pos: Pos | None) -> None:
    m[key] = value
    if pos is not None:
        m.key_pos[key] = pos


def pop_key(m: LMap, key: str) -> tuple[Any, Pos | None]:
    value = m.pop(key)
    return value, m.key_pos.pop(key, m.pos)


def wrap(value: Any, depth: int = 0) -> Any:
    """Give plain Python dicts/lists the LMap/LSeq types (without positions).

    Raises:
        ValueError: When the data nests deeper than `MAX_DEPTH` (as data that contains itself does).
    """
    if isinstance(value, LMap | LSeq):
        return value
    if isinstance(value, dict | list | tuple) and depth >= MAX_DEPTH:
        raise ValueError(f"the data is nested more than {MAX_DEPTH} levels deep (or contains itself)")
    if isinstance(value, dict):
        out = LMap(pos=None)
        for k, v in value.items():
            out[str(k)] = wrap(v, depth + 1)
        return out
    if isinstance(value, list | tuple):
        seq = LSeq(pos=None)
        seq.extend(wrap(v, depth + 1) for v in value)
        return seq
    return value


class SpellingContext:
    """Collects warnings for one manifest while it is normalised."""

    def __init__(self, file: str, prefix: Path, bag: DiagnosticBag) -> None:
        self.file = file
        self.prefix = prefix
        self.bag = bag
        self.warnings: list[Diagnostic] = []

    def alias(self, path: Path, old: str, new: str, pos: Pos | None, step_id: str | None = None) -> None:
        full = format_path(self.prefix + path)
        self.warnings.append(
            Diagnostic(
                "ALIAS",
                f"'{old}' is accepted as an alias; the canonical spelling is '{new}'",
                path=full,
                file=self.file,
                line=pos[0] if pos else None,
                column=pos[1] if pos else None,
                step_id=step_id,
                hint=f"write '{new}'",
                severity="warning",
            )
        )

    def rename(self, m: LMap, path: Path, old: str, new: str, step_id: str | None = None) -> None:
        """Move `old` to `new` (with a warning) unless `new` is already there."""
        if old not in m:
            return
        if new in m:  # both spellings: keep the canonical one, let the models flag the other
            return
        value, pos = pop_key(m, old)
        set_key(m, new, value, pos)
        self.alias(path + (new,), old, new, pos, step_id)


# --------------------------------------------------------------------------------------------
# execution blocks, retry policies, models


def norm_execution(m: LMap, path: Path, ctx: SpellingContext, step_id: str | None = None) -> None:
    """`backend:`, `runtimeHint`, `execution: local|cloud` → canonical `execution: {...}`."""
    if "execution" in m and isinstance(m["execution"], str):
        placement, pos = pop_key(m, "execution")
        block = new_map(pos, {"placement": placement}, pos)
        set_key(m, "execution", block, pos)
        ctx.alias(
            path + ("execution", "placement"), "execution: " + str(placement), "execution.placement", pos, step_id
        )
    if "backend" in m:
        value, pos = pop_key(m, "backend")
        found = as_map(m.get("execution"))
        block = found if found is not None else new_map(pos)
        if found is None:
            set_key(m, "execution", block, pos)
        if "backend" not in block:
            set_key(block, "backend", value, pos)
            ctx.alias(path + ("execution", "backend"), "backend", "execution.backend", pos, step_id)
        else:  # both spellings: keep the canonical, the models will report the duplicate
            set_key(m, "backend", value, pos)
    current = as_map(m.get("execution"))
    if current is not None:
        if current is not m.get("execution"):
            set_key(m, "execution", current, key_pos(m, "execution"))
        ctx.rename(current, path + ("execution",), "runtimeHint", "runtime", step_id)


_RETRY_KEYS = {
    "max_attempts": "maxAttempts",
    "backoff_factor": "backoffFactor",
    "retry_on": "retryOn",
    "initial_delay": "initialDelay",
    "max_delay": "maxDelay",
}


def norm_retry(m: LMap, path: Path, ctx: SpellingContext, step_id: str | None = None) -> None:
    retry = m.get("retry")
    if isinstance(retry, int) and not isinstance(retry, bool):
        pos = key_pos(m, "retry")
        set_key(m, "retry", new_map(pos, {"maxAttempts": retry}, pos), pos)
        ctx.alias(path + ("retry",), "retry: N", "retry: {maxAttempts: N}", pos, step_id)
        return
    if isinstance(retry, LMap):
        for old, new in _RETRY_KEYS.items():
            ctx.rename(retry, path + ("retry",), old, new, step_id)
