"""Inline fragments: a ``workflow:`` step with ``inline: true`` becomes the child's steps, prefixed.

The expansion runs on the canonical documents before the models are built, so everything after it
(validation, graph, plan, engine, store, LangGraph) sees ordinary steps whose ids are
``<fragment>/<step>``. Templates are rewritten: a fragment step reading ``steps.x`` reads
``steps["<fragment>/x"]``, ``inputs.n`` becomes the bound value's expression, and the parent's
``steps.<fragment>.outputs.NAME`` becomes the fragment output's expression.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from owf_magics.errors import Diagnostic, DiagnosticBag
from owf_magics.manifest.catalog import Catalog
from owf_magics.manifest.loader import LMap, LSeq, SourceDocument
from owf_magics.manifest.normalize import RawManifest, split_document, wrap
from owf_magics.manifest.refs import highest_match, parse_ref

#: Where a workflow's metadata records its inlined fragments (for views, the builder and traces).
FRAGMENTS_KEY = "owf.fragments"
_BLOCK_KEYS = ("steps", "then", "else", "catch", "finally", "default")
_MAP_BLOCK_KEYS = ("cases", "branches")
_NESTED_KEYS = frozenset(_BLOCK_KEYS + _MAP_BLOCK_KEYS)
_TEMPLATE_RE = re.compile(r"(\{\{.*?\}\}|\{%.*?%\})", re.S)
_SINGLE_RE = re.compile(r"^\s*\{\{(.*?)\}\}\s*$", re.S)
_STEPS_RE = re.compile(r"(?<![\w.\]'\"])steps\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*(['\"])(.*?)\2\s*\])")
_INPUTS_RE = re.compile(r"(?<![\w.\]'\"])inputs(?:\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*(['\"])(.*?)\2\s*\]))?")
_OUT_TAIL_RE = re.compile(r"\s*\.\s*outputs?\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*(['\"])(.*?)\2\s*\])?")
_CONDITION_FIELDS = frozenset({"condition"})

Resolve = Callable[[str, "str | None"], "tuple[LMap, str] | None"]


@dataclass
class Fragment:
    """What the parent knows of one inlined fragment."""

    id: str
    workflow: str
    ids: list[str]  # every prefixed step id, nested blocks included
    top: list[str]  # the prefixed top-level step ids
    entries: list[str]
    exits: list[str]
    outputs: dict[str, str] = field(default_factory=dict)  # output name -> Jinja expression
    inner: list[str] = field(default_factory=list)  # ids of fragments nested inside this one


def literal(value: Any) -> str:
    """`value` as a Jinja expression."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {literal(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


def as_expression(value: Any) -> str:
    """A bound value (literal, one template, or text around templates) as one Jinja expression."""
    if isinstance(value, str) and "{%" not in value:
        single = _SINGLE_RE.match(value)
        if single and "{{" not in single.group(1):
            return f"({single.group(1).strip()})"
        if "{{" in value:
            parts: list[str] = []
            for piece in _TEMPLATE_RE.split(value):
                if piece.startswith("{{"):
                    parts.append(f"(({piece[2:-2].strip()}) | string)")
                elif piece:
                    parts.append(json.dumps(piece))
            return "(" + " ~ ".join(parts or ['""']) + ")"
    if isinstance(value, dict | list):
        if isinstance(value, dict):
            return "{" + ", ".join(f"{json.dumps(str(k))}: {as_expression(v)}" for k, v in value.items()) + "}"
        return "[" + ", ".join(as_expression(v) for v in value) + "]"
    return literal(value)


def _rewrite_code(code: str, local: dict[str, str], inputs: dict[str, str] | None, frags: dict[str, Fragment]) -> str:
    """Rewrite the names inside one ``{{ }}`` body (or a bare condition)."""
    out: list[str] = []
    at = 0
    for m in _STEPS_RE.finditer(code):
        sid = m.group(1) or m.group(3)
        repl, end = m.group(0), m.end()
        if sid in frags:  # steps.<fragment>.outputs[.NAME] -> the output's expression
            tail = _OUT_TAIL_RE.match(code, m.end())
            outputs = frags[sid].outputs
            if tail:
                name = tail.group(1) or tail.group(3)
                if name is None:
                    repl, end = "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in outputs.items()) + "}", tail.end()
                elif name in outputs:
                    repl, end = outputs[name], tail.end()
        elif sid in local:
            repl = f"steps[{json.dumps(local[sid])}]"
        out.append(code[at : m.start()])
        out.append(repl)
        at = end
    out.append(code[at:])
    text = "".join(out)
    if inputs is None:
        return text

    def inputs_sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        if name is None:
            return "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in inputs.items()) + "}"
        return inputs.get(name, "none")

    return _INPUTS_RE.sub(inputs_sub, text)


def rewrite_text(
    text: str,
    local: dict[str, str],
    inputs: dict[str, str] | None,
    frags: dict[str, Fragment],
    *,
    bare: bool = False,
) -> str:
    """Rewrite every template block of `text` (all of it when `bare`, a condition without braces)."""
    if "{{" not in text and "{%" not in text:
        return _rewrite_code(text, local, inputs, frags) if bare else text
    return _TEMPLATE_RE.sub(
        lambda m: m.group(0)[:2] + _rewrite_code(m.group(0)[2:-2], local, inputs, frags) + m.group(0)[-2:], text
    )


def _rewrite_value(value: Any, local: dict[str, str], inputs: dict[str, str] | None, frags: dict[str, Fragment]) -> Any:
    if isinstance(value, str):
        return rewrite_text(value, local, inputs, frags)
    if isinstance(value, LMap):
        for k, v in list(value.items()):
            value[k] = _rewrite_value(v, local, inputs, frags)
        return value
    if isinstance(value, dict):
        return {k: _rewrite_value(v, local, inputs, frags) for k, v in value.items()}
    if isinstance(value, LSeq):
        for i, v in enumerate(value):
            value[i] = _rewrite_value(v, local, inputs, frags)
        return value
    if isinstance(value, list):
        return [_rewrite_value(v, local, inputs, frags) for v in value]
    return value


def iter_steps(steps: Any) -> list[Any]:
    """Every step mapping of a block, nested blocks included, in document order."""
    if not isinstance(steps, list):
        return []
    out: list[Any] = []
    stack: list[Any] = [iter(steps)]
    while stack:
        s = next(stack[-1], None)
        if s is None:
            stack.pop()
            continue
        if not isinstance(s, dict):
            continue
        out.append(s)
        if _NESTED_KEYS.isdisjoint(s):
            continue
        nested: list[Any] = []
        for key in _BLOCK_KEYS:
            block = s.get(key)
            if isinstance(block, list):
                nested.extend(block)
        for key in _MAP_BLOCK_KEYS:
            blocks = s.get(key)
            if isinstance(blocks, dict):
                for block in blocks.values():
                    if isinstance(block, list):
                        nested.extend(block)
        if nested:
            stack.append(iter(nested))
    return out


def clone(value: Any) -> Any:
    """A deep copy of a positioned tree (`LMap`/`LSeq` keep their positions; much faster than deepcopy)."""
    if isinstance(value, LMap):
        m = LMap({k: clone(v) for k, v in value.items()}, pos=value.pos)
        m.key_pos = dict(value.key_pos)
        return m
    if isinstance(value, LSeq):
        q = LSeq([clone(v) for v in value], pos=value.pos)
        q.item_pos = list(value.item_pos)
        return q
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


def rewrite_step(s: LMap, local: dict[str, str], inputs: dict[str, str] | None, frags: dict[str, Fragment]) -> None:
    """Rewrite one step's own fields (not its nested blocks: `iter_steps` visits those)."""
    for key, value in list(s.items()):
        if (key in _BLOCK_KEYS and key != "steps") or key in _MAP_BLOCK_KEYS:
            continue
        if key == "steps" and isinstance(value, list) and value and isinstance(value[0], dict):
            continue
        if key == "id" and isinstance(value, str):
            s[key] = local.get(value, value)
        elif key == "needs" and isinstance(value, list):
            s[key] = type(value)(local.get(n, n) if isinstance(n, str) else n for n in value)
            if isinstance(value, LSeq) and isinstance(s[key], LSeq):
                s[key].pos, s[key].item_pos = value.pos, list(value.item_pos)
        elif key in _CONDITION_FIELDS and isinstance(value, str):
            s[key] = rewrite_text(value, local, inputs, frags, bare=True)
        else:
            s[key] = _rewrite_value(value, local, inputs, frags)


def template_refs(value: Any) -> set[str]:
    """The step ids `value`'s strings read as ``steps.X`` (an approximation used for entries and exits)."""
    found: set[str] = set()
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            for m in _STEPS_RE.finditer(v):
                found.add(m.group(1) or m.group(3))
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return found


def reposition(value: Any, pos: Any) -> Any:
    """Give every node of `value` the position `pos` (a fragment from another file points at its step)."""
    if isinstance(value, LMap):
        value.pos = pos
        value.key_pos = dict.fromkeys(value, pos) if pos else {}
        for v in value.values():
            reposition(v, pos)
    elif isinstance(value, LSeq):
        value.pos = pos
        value.item_pos = [pos] * len(value) if pos else []
        for v in value:
            reposition(v, pos)
    return value


class Expander:
    """Inlines the ``inline: true`` workflow steps of the workflows of one load."""

    def __init__(self, resolve: Resolve, bag: DiagnosticBag) -> None:
        self.resolve = resolve
        self.bag = bag

    def expand_raws(self, raws: list[RawManifest]) -> None:
        for raw in raws:
            if raw.kind != "workflow" or not isinstance(raw.data.get("steps"), list):
                continue
            if not any(isinstance(s, dict) and "inline" in s for s in iter_steps(raw.data["steps"])):
                continue
            name = str(raw.data.get("name", "?"))
            frags = self.expand(raw.data, raw.file, [name], prefix_path="workflows")
            if frags:
                meta = raw.data.get("metadata")
                if not isinstance(meta, dict):
                    meta = LMap()
                    raw.data["metadata"] = meta
                meta[FRAGMENTS_KEY] = {f.id: _record(f) for f in frags.values()}

    def _error(self, code: str, message: str, file: str, node: Any, sid: str | None, hint: str) -> None:
        pos = getattr(node, "pos", None)
        self.bag.add(
            Diagnostic(
                code,
                message,
                file=file,
                line=pos[0] if pos else None,
                column=pos[1] if pos else None,
                step_id=sid,
                hint=hint,
            )
        )

    def expand(self, wf: LMap, file: str, chain: list[str], *, prefix_path: str) -> dict[str, Fragment]:
        """Inline `wf`'s fragments in place; returns them by id (nested ones under their full ids)."""
        steps = wf["steps"]
        # nested (non-inline) workflow steps lose the `inline: false` key the model does not know
        for s in iter_steps(steps):
            if "inline" in s and s.get("inline") is not True:
                del s["inline"]
        frags: dict[str, Fragment] = {}
        origin: dict[str, str] = {}
        for s in iter_steps(steps):
            if s.get("inline") is not True and isinstance(s.get("id"), str):
                origin.setdefault(s["id"], f"step '{s['id']}' of workflow '{chain[-1]}'")
        new_steps = LSeq(pos=getattr(steps, "pos", None))
        for i, s in enumerate(steps):
            spos = steps.item_pos[i] if isinstance(steps, LSeq) and i < len(steps.item_pos) else None
            if not (isinstance(s, dict) and s.get("inline") is True):
                for inner in iter_steps([s]):
                    if inner is not s and inner.get("inline") is True:
                        self._error(
                            "INVALID_VALUE",
                            "an inline workflow step may only sit at the top level of a workflow's steps",
                            file,
                            inner,
                            inner.get("id") if isinstance(inner.get("id"), str) else None,
                            "drop inline: true (a nested sub-workflow runs anywhere)",
                        )
                new_steps.append(s)
                new_steps.item_pos.append(spos or (0, 0))
                continue
            expanded = self._inline(s, file, chain, frags, origin)
            for child in expanded:
                new_steps.append(child)
                new_steps.item_pos.append(spos or (0, 0))
        wf["steps"] = new_steps
        if frags:
            top_frags = {k: f for k, f in frags.items() if "/" not in k}
            # a part's outputs may read earlier parts' outputs (through its bound inputs)
            for frag in top_frags.values():
                frag.outputs = {k: _rewrite_code(v, {}, None, top_frags) for k, v in frag.outputs.items()}
            # every step (the parts' too: their bound inputs) reads part outputs and needs parts
            for s in iter_steps(new_steps):
                self._resolve_needs(s, top_frags, file)
                rewrite_step(s, {}, None, top_frags)
            if isinstance(wf.get("outputs"), dict):
                _rewrite_value(wf["outputs"], {}, None, top_frags)
        return frags

    def _canonical(self, source: dict[str, Any], file: str) -> LMap | None:
        """A workflow given as data (by the builder) in canonical spelling, as a file's would be."""
        if isinstance(source, LMap) and source.get("type") == "workflow":
            return source
        doc = SourceDocument(wrap({"workflows": [clone(dict(source))]}), file, 0, 0)
        raws = split_document(doc, self.bag)
        return raws[0].data if raws else None

    def _resolve_needs(self, s: LMap, frags: dict[str, Fragment], file: str) -> None:
        needs = s.get("needs")
        if not isinstance(needs, list):
            return
        out: list[Any] = []
        for n in needs:
            if isinstance(n, str) and n in frags:
                exits = frags[n].exits
                if len(exits) != 1:
                    self._error(
                        "AMBIGUOUS_EXIT",
                        f"fragment '{n}' has {len(exits)} exit steps ({', '.join(exits)}); "
                        "an edge from it must name one",
                        file,
                        needs,
                        s.get("id") if isinstance(s.get("id"), str) else None,
                        f"depend on one of {', '.join(repr(e) for e in exits)} instead of '{n}'",
                    )
                    out.extend(exits)
                else:
                    out.append(exits[0])
            else:
                out.append(n)
        s["needs"] = LSeq(out, pos=getattr(needs, "pos", None))
        s["needs"].item_pos = [getattr(needs, "pos", None) or (0, 0)] * len(out)

    def _inline(
        self, s: Any, file: str, chain: list[str], frags: dict[str, Fragment], origin: dict[str, str]
    ) -> list[Any]:
        fid = s.get("id")
        sid = fid if isinstance(fid, str) else None
        source = s.get("workflow")
        if not isinstance(fid, str) or "/" in fid:
            self._error(
                "INVALID_VALUE", "an inline workflow step needs an id without '/'", file, s, sid, "set id: NAME"
            )
            return []
        for key in ("condition", "retry", "timeout", "forEach", "continueOnError"):
            if key in s:
                self._error(
                    "INVALID_VALUE",
                    f"'{key}' on an inline workflow step is not supported (its steps join this graph)",
                    file,
                    s,
                    sid,
                    "use inline: false (a nested sub-workflow) or put it on the fragment's steps",
                )
                return []
        if isinstance(source, dict):  # the builder passes the child's canonical data itself
            child = self._canonical(source, file)
            if child is None:
                return []
            child_file = file
            cname = child.get("name", fid) if child else fid
        elif isinstance(source, str):
            found = self.resolve(source, s.get("version") if isinstance(s.get("version"), str) else None)
            if found is None:
                self._error(
                    "UNKNOWN_REFERENCE",
                    f"inline workflow '{source}' is not loaded",
                    file,
                    s,
                    sid,
                    "load it first (or in the same batch)",
                )
                return []
            child, child_file = found
            cname = source
        else:
            self._error("INVALID_TYPE", "workflow: must name a workflow", file, s, sid, "workflow: NAME")
            return []
        assert child is not None
        if cname in chain:
            self._error(
                "CIRCULAR_DEPENDENCY",
                f"inlining '{cname}' again inside itself ({' -> '.join([*chain, str(cname)])})",
                file,
                s,
                sid,
                "break the cycle; a workflow cannot contain itself",
            )
            return []
        child = clone(child)
        if child_file != file:
            reposition(child, s.pos)
        inner = self.expand(child, file, [*chain, str(cname)], prefix_path="") if _has_inline(child) else {}
        csteps: Any = child.get("steps") if isinstance(child.get("steps"), list) else []
        local = {st["id"]: f"{fid}/{st['id']}" for st in iter_steps(csteps) if isinstance(st.get("id"), str)}
        # bound inputs: the step's `input` (canonical for `with`), then the child's defaults
        bound: Any = s.get("input") if isinstance(s.get("input"), dict) else {}
        declared: Any = child.get("inputs") if isinstance(child.get("inputs"), dict) else {}
        inputs: dict[str, str] = {}
        for name, value in bound.items():
            if isinstance(value, str) and "{%" in value:
                self._error(
                    "INVALID_VALUE",
                    f"input '{name}' of inline workflow '{cname}' uses a {{% %}} block, which an inline part "
                    "cannot take as a value",
                    file,
                    bound,
                    fid,
                    "compute it in a transform step and bind {{ steps.<that step>.output.result }}",
                )
        for name, spec in declared.items():
            if name in bound:
                inputs[name] = as_expression(bound[name])
            elif isinstance(spec, dict) and "default" in spec:
                inputs[name] = literal(spec["default"])
            elif isinstance(spec, dict) and spec.get("required"):
                self._error(
                    "MISSING_REQUIRED_FIELD",
                    f"inline workflow '{cname}' requires input '{name}'",
                    file,
                    s,
                    fid,
                    f"bind it: with: {{{name}: ...}}",
                )
            else:
                inputs[name] = "none"
        for name in bound:
            if name not in declared:
                inputs[name] = as_expression(bound[name])
        inner_frags = {k: v for k, v in inner.items() if "/" not in k}
        for st in iter_steps(csteps):
            rewrite_step(st, local, inputs, {})
        # the fragment's top-level steps, entries (no dependency inside it) and exits (nothing after)
        top = [st for st in csteps if isinstance(st, dict) and isinstance(st.get("id"), str)]
        deps: dict[str, set[str]] = {}
        for st in top:
            subtree = list(iter_steps([st]))
            reads = set().union(*(template_refs(dict(x)) for x in subtree))
            needs = {n for x in subtree for n in (x.get("needs") or []) if isinstance(n, str)}
            deps[st["id"]] = {t for t in (reads | needs) if t != st["id"] and any(t == y["id"] for y in top)}
        used: set[str] = set().union(*deps.values()) if deps else set()
        entries = [sid2 for sid2, d in deps.items() if not d]
        exits = [sid2 for sid2 in deps if sid2 not in used]
        outputs: dict[str, str] = {}
        couts: Any = child.get("outputs") if isinstance(child.get("outputs"), dict) else {}
        for name, spec in couts.items():
            value = spec.get("value") if isinstance(spec, dict) else spec
            value = _rewrite_value(clone(value), local, inputs, inner_frags)
            outputs[name] = as_expression(value)
        # outputs of inner fragments were rewritten by the inner expansion already
        # parent needs on the inline step go to the entries
        pneeds = [n for n in (s.get("needs") or []) if isinstance(n, str)]
        for st in top:
            if st["id"] in entries and pneeds:
                cur: Any = st.get("needs") if isinstance(st.get("needs"), list) else []
                st["needs"] = LSeq([*pneeds, *cur], pos=getattr(s, "pos", None))
                st["needs"].item_pos = [getattr(s, "pos", None) or (0, 0)] * len(st["needs"])
        frag = Fragment(
            id=fid,
            workflow=str(cname),
            ids=list(local.values()),
            top=[st["id"] for st in top],
            entries=entries,
            exits=exits,
            outputs=outputs,
            inner=[f"{fid}/{k}" for k in inner],
        )
        for new_id in frag.ids:
            here = f"step '{new_id}' of fragment '{fid}' (workflow '{cname}')"
            if new_id in origin:
                self._error(
                    "DUPLICATE_STEP_ID",
                    f"step id '{new_id}' is used twice: by {origin[new_id]} and by {here}",
                    file,
                    s,
                    new_id,
                    "give the fragment another id, or rename one of the steps",
                )
            origin.setdefault(new_id, here)
        if fid in origin:
            self._error(
                "DUPLICATE_STEP_ID",
                f"id '{fid}' is used twice: by {origin[fid]} and by fragment '{fid}' (workflow '{cname}')",
                file,
                s,
                fid,
                "give the fragment another id",
            )
        origin[fid] = f"fragment '{fid}' (workflow '{cname}')"
        frags[fid] = frag
        known = child.get("metadata", {}).get(FRAGMENTS_KEY) if isinstance(child.get("metadata"), dict) else None
        for k, v in {**(known if isinstance(known, dict) else {}), **{k: _record(f) for k, f in inner.items()}}.items():
            frags[f"{fid}/{k}"] = Fragment(
                id=f"{fid}/{k}",
                workflow=str(v.get("workflow")),
                ids=[],
                top=[local.get(x, x) for x in v.get("steps", [])],
                entries=[local.get(x, x) for x in v.get("entries", [])],
                exits=[local.get(x, x) for x in v.get("exits", [])],
            )
        return [st for st in csteps if isinstance(st, dict)]


def _record(f: Fragment) -> dict[str, Any]:
    return {"workflow": f.workflow, "entries": f.entries, "exits": f.exits, "steps": f.top}


def workflow_resolver(raws: list[RawManifest], catalog: Catalog) -> Resolve:
    """Finds a workflow by name and version range: in the batch being loaded, then in `catalog`."""
    batch = [r for r in raws if r.kind == "workflow"]

    def resolve(name: str, version: str | None) -> tuple[LMap, str] | None:
        try:
            ref = parse_ref(f"{name}@{version}" if version else name, expected_kind="workflow")
        except ValueError:
            return None
        for r in batch:
            mine = str(r.data.get("version", "1.0.0"))
            if r.data.get("name") == ref.name and (ref.range is None or highest_match([mine], ref.range)):
                return r.data, r.file
        found = catalog.workflow(ref)
        return (found.raw.data, found.raw.file) if found is not None else None

    return resolve


def inline_fragments(raws: list[RawManifest], catalog: Catalog, bag: DiagnosticBag) -> None:
    """Expand the inline workflow steps of `raws`, finding children in the batch, then in `catalog`."""
    if any(r.kind == "workflow" and _has_inline(r.data) for r in raws):
        Expander(workflow_resolver(raws, catalog), bag).expand_raws(raws)


def _has_inline(data: Any) -> bool:
    return isinstance(data, dict) and any("inline" in s for s in iter_steps(data.get("steps")))


def graph_signature(graph: Any) -> str:
    """A short hash of a workflow graph's step ids and edges (inlined parts' prefixed ids included).

    A run records it; resuming the run with a workflow whose graph differs (another composition
    loaded under the same name and version) is refused instead of mixing two graphs' checkpoints.
    """
    import hashlib

    nodes = sorted(graph.nodes)
    edges = sorted(f"{e.source}>{e.target}" for e in graph.edges)
    return hashlib.sha256(json.dumps([nodes, edges]).encode()).hexdigest()[:16]
