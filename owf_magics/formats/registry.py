"""The format registry: which document shapes are converted, and by whom."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

from owf_magics.errors import DiagnosticBag
from owf_magics.manifest.loader import SourceDocument

#: Built-in formats as "module:attribute", imported on the first load that needs them. A format
#: module adds itself here with one line.
BUILTIN_FORMATS: tuple[str, ...] = (
    "owf_magics.formats.openflow:OPENFLOW",
    "owf_magics.formats.runner:RUNNER",
    "owf_magics.formats.agentflow:AGENTFLOW",
)


@runtime_checkable
class Format(Protocol):
    """A manifest format other than OpenWorkflow's own."""

    #: short name, used by ``owf convert`` and in messages ("openflow")
    name: str

    def detect(self, data: Mapping[str, Any]) -> bool:
        """True when a parsed document (a mapping) has this format's shape. Must be cheap."""
        ...

    def convert(self, doc: SourceDocument, bag: DiagnosticBag) -> list[SourceDocument]:
        """Equivalent OpenWorkflow documents. Problems go into ``bag`` with the source's file and
        line; nodes of the result should carry the source's positions (``LMap.pos``/``key_pos``)."""
        ...


_registered: list[Format] = []
_state = {"builtins_loaded": False}


def register_format(fmt: Format) -> None:
    """Add (or replace, by name) a format; later registrations are tried first."""
    if not isinstance(fmt, Format):
        raise TypeError(f"{fmt!r} is not a Format (it needs name, detect and convert)")
    _registered[:] = [f for f in _registered if f.name != fmt.name]
    _registered.insert(0, fmt)


def formats() -> list[Format]:
    """Every known format, user-registered ones first."""
    if not _state["builtins_loaded"]:
        _state["builtins_loaded"] = True
        for target in BUILTIN_FORMATS:
            module, _, attr = target.partition(":")
            fmt = getattr(importlib.import_module(module), attr)
            if all(f.name != fmt.name for f in _registered):
                _registered.append(fmt)
    return list(_registered)


def detect_format(data: Any) -> Format | None:
    """The format a parsed document is in, or None for OpenWorkflow (and anything unrecognised)."""
    if not isinstance(data, Mapping):
        return None
    for fmt in formats():
        if fmt.detect(data):
            return fmt
    return None


def convert_documents(docs: Iterable[SourceDocument], bag: DiagnosticBag) -> list[SourceDocument]:
    """Every document in OpenWorkflow form: recognised formats converted, the rest unchanged."""
    out: list[SourceDocument] = []
    for doc in docs:
        fmt = detect_format(doc.data)
        if fmt is None:
            out.append(doc)
        else:
            out.extend(fmt.convert(doc, bag))
    return out


def to_plain(value: Any) -> Any:
    """Plain dicts, lists and scalars (no position-carrying subclasses), for dumping as YAML."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return value
