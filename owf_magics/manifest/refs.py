"""References (``type:namespace/name@version``) and semantic-version ranges.

Ranges follow npm's grammar (``1.2.3``, ``~1.2``, ``^1.0``, ``>=0.1.0 <0.3.0``, ``1.x``, ``*``,
``a || b``) through the `semantic_version` library. A reference without a version, or with a
range, resolves to the highest loaded version that matches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when a version is first read, not with the package (import time)
    import semantic_version as sv

KINDS = ("agent", "connector", "workflow", "bundle")

_REF_RE = re.compile(
    r"""^(?:(?P<kind>[a-z]+):)?            # type:
        (?:(?P<ns>[\w.-]+)/)?              # namespace/
        (?P<name>[^@/\s][^@/]*?)           # name (workflow names may contain spaces)
        (?:@(?P<range>.+?))?               # @version or range
        (?:\.(?P<action>[A-Za-z_][\w-]*))? # .action (the MCP form)
        $""",
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class Ref:
    """A parsed reference. ``range`` is the text after ``@`` (None means "any version")."""

    kind: str | None
    namespace: str | None
    name: str
    range: str | None = None
    action: str | None = None

    def __str__(self) -> str:
        text = f"{self.kind}:" if self.kind else ""
        if self.namespace:
            text += f"{self.namespace}/"
        text += self.name
        if self.range:
            text += f"@{self.range}"
        if self.action:
            text += f".{self.action}"
        return text


class RefError(ValueError):
    """A reference or version range that does not parse; `code` says which."""

    def __init__(self, message: str, code: str = "INVALID_REFERENCE"):
        super().__init__(message)
        self.code = code


@lru_cache(maxsize=8192)
def parse_ref(text: str, *, expected_kind: str | None = None, allow_action: bool = False) -> Ref:
    """Parse a reference such as ``connector:community/slack@^1.2`` or ``connector:github/mcp.create_issue``.

    Args:
        text: The reference.
        expected_kind: When given, a different ``type:`` prefix is an error.
        allow_action: Accept the MCP form's trailing ``.action``.

    Raises:
        RefError: With code ``INVALID_REFERENCE`` or ``INVALID_VERSION_RANGE``.
    """
    raw = text.strip()
    match = _REF_RE.match(raw)
    if not match:
        raise RefError(f"'{text}' is not a reference of the form type:namespace/name@version")
    kind, ns, name, rng, action = match.group("kind", "ns", "name", "range", "action")
    if action and rng is None and not allow_action:
        # a name with a dot (no version): keep it whole
        name, action = f"{name}.{action}", None
    if rng is not None and action is None and allow_action:
        head, _, tail = rng.rpartition(".")
        if head and re.fullmatch(r"[A-Za-z_][\w-]*", tail) and _is_range(head) and not _is_range(rng):
            rng, action = head, tail
    if action and not allow_action:
        rng = f"{rng}.{action}" if rng else None
        action = None
    if kind is not None and kind not in KINDS:
        raise RefError(f"'{text}' has an unknown type prefix '{kind}:' (expected one of {', '.join(KINDS)})")
    if expected_kind and kind and kind != expected_kind:
        a_kind, a_expected = ("an" if k == "agent" else "a" for k in (kind, expected_kind))
        raise RefError(f"'{text}' is {a_kind} {kind} reference where {a_expected} {expected_kind} is expected")
    if rng is not None:
        rng = rng.strip()
        if rng.lower() == "latest":
            rng = None
        elif not _is_range(rng):
            raise RefError(f"'{rng}' in '{text}' is not a valid version or version range", "INVALID_VERSION_RANGE")
    return Ref(kind or expected_kind, ns, name.strip(), rng, action)


@lru_cache(maxsize=4096)
def _spec(text: str) -> sv.NpmSpec:
    import semantic_version as sv

    return sv.NpmSpec(text)


def _is_range(text: str) -> bool:
    try:
        _spec(text)
    except ValueError:
        return False
    return True


def check_range(text: str) -> str | None:
    """None when `text` is a valid range, else the reason."""
    try:
        _spec(text)
    except ValueError as exc:
        return str(exc)
    return None


@lru_cache(maxsize=4096)
def parse_version(text: str) -> sv.Version | None:
    """A semantic version, or None when `text` is not one (``1.0`` and ``v1.2.3`` are coerced)."""
    import semantic_version as sv

    try:
        return sv.Version(text)
    except ValueError:
        pass
    cleaned = text.strip().lstrip("vV")
    if re.fullmatch(r"\d+(\.\d+){0,2}", cleaned):
        return sv.Version.coerce(cleaned)
    return None


def is_version(text: str) -> bool:
    return parse_version(text) is not None


def matches(version: str, rng: str | None) -> bool:
    """True when `version` satisfies `rng` (None matches everything)."""
    if rng is None:
        return True
    v = parse_version(version)
    if v is None:
        return version == rng
    return v in _spec(rng)


def highest_match(versions: list[str], rng: str | None) -> str | None:
    """The highest of `versions` that satisfies `rng`."""
    best: tuple[sv.Version, str] | None = None
    for text in versions:
        v = parse_version(text)
        if v is None:
            if rng == text and best is None:
                return text
            continue
        if (rng is None or v in _spec(rng)) and (best is None or v > best[0]):
            best = (v, text)
    return best[1] if best else None


def installed_version(distribution: str) -> str | None:
    """The installed version of a Python distribution, without importing it."""
    from importlib import metadata

    names = [distribution, distribution.replace("_", "-")]
    aliases = {"langchain": ["langchain", "langchain-core"], "openai-agents": ["openai-agents"]}
    names = aliases.get(distribution, []) + names
    for name in names:
        try:
            return metadata.version(name)
        except (metadata.PackageNotFoundError, ValueError):  # ValueError: an empty name
            continue
    return None
