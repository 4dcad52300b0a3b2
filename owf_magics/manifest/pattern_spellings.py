"""Other spellings of the pattern steps (docs/patterns.md), rewritten to the canonical ones with an
``ALIAS`` warning like every other spelling (`step_spellings` calls `normalise_pattern` for them)."""

from __future__ import annotations

from typing import Any, Protocol

#: Step type spellings -> the canonical type.
PATTERN_TYPE_ALIASES = {
    "group_chat": "groupChat",
    "groupchat": "groupChat",
    "group-chat": "groupChat",
    "magentic_one": "magentic",
    "magenticOne": "magentic",
    "magentic-one": "magentic",
}
PATTERN_TYPES = frozenset({"groupChat", "magentic", "sequential", "concurrent", "handoff"})
_KEYS = {
    "max_rounds": "maxRounds",
    "max_stalls": "maxStalls",
    "max_resets": "maxResets",
    "max_transfers": "maxTransfers",
}
_ROUND_ROBIN = {"round_robin", "round-robin", "roundrobin", "RoundRobin", "round robin"}


class Spellings(Protocol):
    """What `normalise_pattern` needs of the normaliser: key moves and value rewrites, each
    reported as an ``ALIAS`` warning."""

    def rename(self, m: Any, path: tuple[Any, ...], old: str, new: str, step_id: str | None = None) -> None: ...

    def alias(self, path: tuple[Any, ...], old: str, new: str, pos: Any, step_id: str | None = None) -> None: ...


def normalise_pattern(s: Any, path: tuple[Any, ...], ctx: Spellings, sid: str | None) -> None:
    """Canonical keys of a pattern (or handoff) step `s` at `path`, in place."""
    for old, new in _KEYS.items():
        ctx.rename(s, path, old, new, sid)
    term = s.get("termination")
    if isinstance(term, dict):
        for old, new in _KEYS.items():
            ctx.rename(term, path + ("termination",), old, new, sid)
    selection = s.get("selection")
    if isinstance(selection, str) and selection in _ROUND_ROBIN:
        s["selection"] = "roundRobin"
        pos = getattr(s, "key_pos", {}).get("selection")
        ctx.alias(path + ("selection",), f"selection: {selection}", "selection: roundRobin", pos, sid)
