"""Normalisation: every manifest form and alias spelling the spec uses, into one canonical tree.

Input is a positioned document from `loader`; output is one `RawManifest` per agent, connector,
workflow or bundle, whose data uses only canonical spellings (and keeps the positions). Each alias
used yields an ``ALIAS`` warning naming the canonical spelling. Nothing here checks types: that is
the models' job; this module only renames and reshapes.

This module recognises a document's form and splits it; the spellings of each kind are in
`agent_spellings` (agents, connectors) and `step_spellings` (workflows, steps), on the helpers of
`reshape`. `wrap` and `parse_duration` stay importable from here.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Literal

from owf_magics.errors import Diagnostic, DiagnosticBag, format_path
from owf_magics.manifest.agent_spellings import normalise_agent, normalise_connector
from owf_magics.manifest.loader import LMap, LSeq, SourceDocument
from owf_magics.manifest.reshape import Path, SpellingContext, as_map, key_pos, pop_key, set_key, wrap
from owf_magics.manifest.step_spellings import normalise_workflow, parse_duration

__all__ = [
    "NORMALISERS",
    "Kind",
    "RawManifest",
    "normalise_agent",
    "normalise_bundle",
    "normalise_connector",
    "normalise_workflow",
    "parse_duration",
    "split_document",
    "wrap",
]

Kind = Literal["agent", "connector", "workflow", "bundle"]


@dataclass(slots=True)
class RawManifest:
    """One manifest in canonical spelling, before model validation."""

    kind: Kind
    data: LMap
    file: str
    prefix: Path  # where the manifest sits in its document, e.g. ("workflows", 0)
    doc_index: int
    warnings: list[Diagnostic] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# documents → manifests

_TYPE_ALIASES = {"workflows": "workflow", "agents": "agent", "connectors": "connector", "bundles": "bundle"}


def split_document(doc: SourceDocument, bag: DiagnosticBag) -> list[RawManifest]:
    """Recognise the form of one document and return its manifests in canonical spelling."""
    data = doc.data
    if data is None:
        return []
    if isinstance(data, dict) and not isinstance(data, LMap):
        data = wrap(data)
    if not isinstance(data, LMap):
        found = "a list" if isinstance(data, list) else type(data).__name__
        bag.add(
            Diagnostic(
                "UNKNOWN_MANIFEST",
                f"a manifest document must be a mapping, found {found}",
                file=doc.file,
                line=doc.line or None,  # 0: data given as Python objects
                hint="start the document with 'workflows:', 'connector:', or 'type: agent'",
            )
        )
        return []
    out: list[RawManifest] = []

    def emit(kind: Kind, m: LMap, prefix: Path) -> None:
        ctx = SpellingContext(doc.file, prefix, bag)
        if isinstance(m.get("type"), str) and m["type"] != kind and _TYPE_ALIASES.get(m["type"]) == kind:
            ctx.alias(("type",), f"type: {m['type']}", f"type: {kind}", key_pos(m, "type"))
            m["type"] = kind
        canon = NORMALISERS[kind](m, ctx)
        out.append(RawManifest(kind, canon, doc.file, prefix, doc.index, ctx.warnings))

    declared = data.get("type")
    declared = _TYPE_ALIASES.get(declared, declared) if isinstance(declared, str) else declared

    # the file form (and the combined form a notebook cell uses): lists of manifests
    lists = [k for k in ("agents", "connectors", "workflows") if k in data]
    singular_workflow = isinstance(data.get("workflow"), dict) and "steps" not in data
    if lists or singular_workflow:
        shared = {k: data[k] for k in ("schemaVersion", "namespace") if k in data}
        if singular_workflow:  # execution-modes.md writes `workflow:` for one workflow
            ctx = SpellingContext(doc.file, (), bag)
            value, pos = pop_key(data, "workflow")
            seq = LSeq([value], pos=pos)
            seq.item_pos.append(pos or (0, 0))
            set_key(data, "workflows", seq, pos)
            ctx.alias(("workflows",), "workflow", "workflows: [...]", pos)
            bag.extend(ctx.warnings)
            lists = [k for k in ("agents", "connectors", "workflows") if k in data]
        for key in lists:
            items = data[key]
            kind: Kind = key[:-1]  # type: ignore[assignment]
            if not isinstance(items, list):
                bag.add(_diag("INVALID_TYPE", f"'{key}' must be a list of {kind} manifests", doc, data, key))
                continue
            for i, item in enumerate(items):
                m = as_map(item)
                if m is None:
                    bag.add(_diag("INVALID_TYPE", f"each entry of '{key}' must be a mapping", doc, data, key, i))
                    continue
                for k, v in shared.items():
                    if k not in m:
                        set_key(m, k, v, None)
                if kind == "connector" and isinstance(m.get("connector"), dict):
                    m = _flatten_connector(m)
                emit(kind, m, (key, i))
        leftovers = set(data) - {"agents", "connectors", "workflows", "schemaVersion", "namespace"}
        leftovers -= {"type", "name", "version", "displayName", "description", "metadata"}
        for k in sorted(leftovers):
            bag.add(
                _diag(
                    "UNKNOWN_FIELD",
                    f"'{k}' is not allowed beside '{lists[0]}' in a manifest file",
                    doc,
                    data,
                    k,
                    hint="move it into one of the listed manifests",
                )
            )
        return out

    # the nested connector form: a `connector:` block plus `actions:`
    if isinstance(data.get("connector"), dict) and declared in (None, "connector"):
        emit("connector", _flatten_connector(data), ())
        return out

    # the agent-schema.md JSON Schema shape: {agent: {id}, model, instructions, tools, runtime}
    if isinstance(data.get("agent"), dict) and declared in (None, "agent"):
        emit("agent", data, ())
        return out

    if declared in ("agent", "connector", "workflow", "bundle"):
        emit(typing.cast(Kind, declared), data, ())
        return out

    inferred = _infer_kind(data)
    if inferred and declared is None:
        emit(inferred, data, ())
        return out

    found = f"type '{declared}'" if declared is not None else f"keys {', '.join(map(str, list(data)[:6]))}"
    bag.add(
        Diagnostic(
            "UNKNOWN_MANIFEST",
            f"this document is not an agent, connector or workflow manifest (found {found})",
            file=doc.file,
            line=doc.line or None,
            hint="use 'workflows: [...]', a 'connector:' block with 'actions:', "
            "or 'type: agent|connector|workflow' with the fields of that manifest",
        )
    )
    return out


def _infer_kind(data: LMap) -> Kind | None:
    if "steps" in data:
        return "workflow"
    if "actions" in data and ("kind" in data or "name" in data):
        return "connector"
    if "model" in data and ("name" in data or "id" in data):
        return "agent"
    if "includes" in data:
        return "bundle"
    return None


def _diag(
    code: str, message: str, doc: SourceDocument, m: LMap, *path: str | int, hint: str | None = None
) -> Diagnostic:
    pos = m.key_pos.get(path[0]) if path and isinstance(path[0], str) else m.pos
    if len(path) > 1 and isinstance(path[1], int):
        seq = m.get(str(path[0]))
        if isinstance(seq, LSeq) and path[1] < len(seq.item_pos):
            pos = seq.item_pos[path[1]]
    pos = pos if pos and pos[0] else None  # (0, 0): no position
    return Diagnostic(
        code,
        message,
        path=format_path(path),
        file=doc.file,
        line=pos[0] if pos else doc.line or None,
        column=pos[1] if pos else None,
        hint=hint,
    )


def _flatten_connector(doc: LMap) -> LMap:
    """``{connector: {...}, actions: [...]}`` → one flat connector mapping."""
    block = doc["connector"]
    out = LMap(pos=doc.pos)
    for k, v in block.items():
        set_key(out, k, v, block.key_pos.get(k) if isinstance(block, LMap) else None)
    for k, v in doc.items():
        if k == "connector":
            continue
        if k in out:  # e.g. schemaVersion both inside and outside: keep the block's
            continue
        set_key(out, k, v, doc.key_pos.get(k))
    return out


def normalise_bundle(m: LMap, ctx: SpellingContext) -> LMap:
    m.setdefault("type", "bundle")
    return m


NORMALISERS = {
    "agent": normalise_agent,
    "connector": normalise_connector,
    "workflow": normalise_workflow,
    "bundle": normalise_bundle,
}
