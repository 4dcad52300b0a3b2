"""Normalisation: every manifest form and alias spelling the spec uses, into one canonical tree.

Input is a positioned document from `loader`; output is one `RawManifest` per agent, connector,
workflow or bundle, whose data uses only canonical spellings (and keeps the positions). Each alias
used yields an ``ALIAS`` warning naming the canonical spelling. Nothing here checks types: that is
the models' job; this module only renames and reshapes.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from owf_magics.errors import Diagnostic, DiagnosticBag, format_path
from owf_magics.manifest.loader import MAX_DEPTH, LMap, LSeq, Pos, SourceDocument
from owf_magics.manifest.mcp_spec import normalise_mcp_connector
from owf_magics.manifest.pattern_spellings import PATTERN_TYPE_ALIASES, PATTERN_TYPES, normalise_pattern

Kind = Literal["agent", "connector", "workflow", "bundle"]
Path = tuple[str | int, ...]


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
# small helpers that keep positions while reshaping


def _pos(m: Any) -> Pos | None:
    return getattr(m, "pos", None)


def _key_pos(m: LMap, key: str) -> Pos | None:
    return m.key_pos.get(key, m.pos)


def _as_map(value: Any) -> LMap | None:
    if isinstance(value, LMap):
        return value
    if isinstance(value, dict):  # data given as Python objects: wrap without positions
        out = LMap(pos=None)
        out.update(value)
        return out
    return None


def _new_map(pos: Pos | None, items: dict[str, Any] | None = None, key_pos: Pos | None = None) -> LMap:
    out = LMap(pos=pos)
    for k, v in (items or {}).items():
        out[k] = v
        if key_pos is not None:
            out.key_pos[k] = key_pos
    return out


def _set(m: LMap, key: str, value: Any, pos: Pos | None) -> None:
    m[key] = value
    if pos is not None:
        m.key_pos[key] = pos


def _pop(m: LMap, key: str) -> tuple[Any, Pos | None]:
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


class _Ctx:
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
        value, pos = _pop(m, old)
        _set(m, new, value, pos)
        self.alias(path + (new,), old, new, pos, step_id)


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
        ctx = _Ctx(doc.file, prefix, bag)
        if isinstance(m.get("type"), str) and m["type"] != kind and _TYPE_ALIASES.get(m["type"]) == kind:
            ctx.alias(("type",), f"type: {m['type']}", f"type: {kind}", _key_pos(m, "type"))
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
            ctx = _Ctx(doc.file, (), bag)
            value, pos = _pop(data, "workflow")
            seq = LSeq([value], pos=pos)
            seq.item_pos.append(pos or (0, 0))
            _set(data, "workflows", seq, pos)
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
                m = _as_map(item)
                if m is None:
                    bag.add(_diag("INVALID_TYPE", f"each entry of '{key}' must be a mapping", doc, data, key, i))
                    continue
                for k, v in shared.items():
                    if k not in m:
                        _set(m, k, v, None)
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
        _set(out, k, v, block.key_pos.get(k) if isinstance(block, LMap) else None)
    for k, v in doc.items():
        if k == "connector":
            continue
        if k in out:  # e.g. schemaVersion both inside and outside: keep the block's
            continue
        _set(out, k, v, doc.key_pos.get(k))
    return out


# --------------------------------------------------------------------------------------------
# execution blocks, retry policies, models


def _norm_execution(m: LMap, path: Path, ctx: _Ctx, step_id: str | None = None) -> None:
    """`backend:`, `runtimeHint`, `execution: local|cloud` → canonical `execution: {...}`."""
    if "execution" in m and isinstance(m["execution"], str):
        placement, pos = _pop(m, "execution")
        block = _new_map(pos, {"placement": placement}, pos)
        _set(m, "execution", block, pos)
        ctx.alias(
            path + ("execution", "placement"), "execution: " + str(placement), "execution.placement", pos, step_id
        )
    if "backend" in m:
        value, pos = _pop(m, "backend")
        found = _as_map(m.get("execution"))
        block = found if found is not None else _new_map(pos)
        if found is None:
            _set(m, "execution", block, pos)
        if "backend" not in block:
            _set(block, "backend", value, pos)
            ctx.alias(path + ("execution", "backend"), "backend", "execution.backend", pos, step_id)
        else:  # both spellings: keep the canonical, the models will report the duplicate
            _set(m, "backend", value, pos)
    current = _as_map(m.get("execution"))
    if current is not None:
        if current is not m.get("execution"):
            _set(m, "execution", current, _key_pos(m, "execution"))
        ctx.rename(current, path + ("execution",), "runtimeHint", "runtime", step_id)


_RETRY_KEYS = {
    "max_attempts": "maxAttempts",
    "backoff_factor": "backoffFactor",
    "retry_on": "retryOn",
    "initial_delay": "initialDelay",
    "max_delay": "maxDelay",
}


def _norm_retry(m: LMap, path: Path, ctx: _Ctx, step_id: str | None = None) -> None:
    retry = m.get("retry")
    if isinstance(retry, int) and not isinstance(retry, bool):
        pos = _key_pos(m, "retry")
        _set(m, "retry", _new_map(pos, {"maxAttempts": retry}, pos), pos)
        ctx.alias(path + ("retry",), "retry: N", "retry: {maxAttempts: N}", pos, step_id)
        return
    if isinstance(retry, LMap):
        for old, new in _RETRY_KEYS.items():
            ctx.rename(retry, path + ("retry",), old, new, step_id)


def _norm_model(m: LMap, path: Path, ctx: _Ctx) -> None:
    model = m.get("model")
    if isinstance(model, LMap):
        ctx.rename(model, path + ("model",), "name", "id")
        for old, new in (("max_tokens", "maxTokens"), ("top_p", "topP"), ("provider_config", "providerConfig")):
            ctx.rename(model, path + ("model",), old, new)
        fb = model.get("fallback")
        if isinstance(fb, LMap):
            ctx.rename(fb, path + ("model", "fallback"), "name", "id")


# --------------------------------------------------------------------------------------------
# agents

_SHAPE2_RUNTIME = {"smartify": "native", "langchain": "langchain", "any": None}


def normalise_agent(m: LMap, ctx: _Ctx) -> LMap:
    m.setdefault("type", "agent")
    # the agent-schema.md JSON Schema shape
    if isinstance(m.get("agent"), LMap):
        block, pos = _pop(m, "agent")
        ident = block.get("id")
        if isinstance(ident, str) and "name" not in m:
            ref = re.fullmatch(r"(?:agent:)?(?:([\w.-]+)/)?([\w.-]+)(?:@(.+))?", ident)
            if ref:
                ns, name, ver = ref.groups()
                _set(m, "name", name, block.key_pos.get("id", pos))
                if ns and "namespace" not in m:
                    _set(m, "namespace", ns, pos)
                if ver and "version" not in m:
                    _set(m, "version", ver, pos)
            else:
                _set(m, "name", ident, pos)
            ctx.alias(("name",), "agent.id", "name", pos)
        for k, v in block.items():
            if k != "id":
                _set(m, k, v, block.key_pos.get(k))
    if "id" in m and "name" not in m:
        ctx.rename(m, (), "id", "name")
    if isinstance(m.get("runtime"), str) and "execution" not in m:
        value, pos = _pop(m, "runtime")
        backend = _SHAPE2_RUNTIME.get(value, value)
        block = _new_map(pos)
        if backend is not None:
            _set(block, "backend", backend, pos)
            if backend == "langchain":
                _set(block, "runtime", "python", pos)
        _set(m, "execution", block, pos)
        ctx.alias(("execution", "backend"), f"runtime: {value}", "execution.backend", pos)
    if isinstance(m.get("instructions"), LMap):
        instr, pos = _pop(m, "instructions")
        pers = _as_map(m.get("personality")) or _new_map(pos)
        if "system" in instr:
            _set(pers, "systemPrompt", instr["system"], instr.key_pos.get("system", pos))
        if "goals" in instr:
            _set(pers, "goals", instr["goals"], instr.key_pos.get("goals", pos))
        for k, v in instr.items():
            if k not in ("system", "goals"):
                _set(pers, k, v, instr.key_pos.get(k))
        _set(m, "personality", pers, pos)
        ctx.alias(("personality", "systemPrompt"), "instructions.system", "personality.systemPrompt", pos)
    if "systemPrompt" in m:
        value, pos = _pop(m, "systemPrompt")
        pers = _as_map(m.get("personality")) or _new_map(pos)
        if "systemPrompt" not in pers:
            _set(pers, "systemPrompt", value, pos)
        _set(m, "personality", pers, _key_pos(m, "personality") or pos)
        ctx.alias(("personality", "systemPrompt"), "systemPrompt", "personality.systemPrompt", pos)
    if isinstance(m.get("tools"), list) and "toolset" not in m:
        tools, pos = _pop(m, "tools")
        seq = LSeq(pos=pos)
        for i, t in enumerate(tools):
            seq.item_pos.append(
                tools.item_pos[i] if isinstance(tools, LSeq) and i < len(tools.item_pos) else (pos or (0, 0))
            )
            if isinstance(t, LMap) and "name" in t:
                entry = _new_map(t.pos, {"connector": t["name"]}, t.key_pos.get("name"))
                if "input_schema" in t:
                    _set(entry, "inputSchema", t["input_schema"], t.key_pos.get("input_schema"))
                seq.append(entry)
            else:
                seq.append(t)
        _set(m, "toolset", seq, pos)
        ctx.alias(("toolset",), "tools", "toolset", pos)
    io = m.get("io")
    if isinstance(io, LMap):
        ctx.rename(io, ("io",), "output_schema", "outputSchema")
        ctx.rename(io, ("io",), "input_schema", "inputSchema")
    _norm_execution(m, (), ctx)
    _norm_model(m, (), ctx)
    toolset = m.get("toolset")
    if isinstance(toolset, LSeq):
        for i, entry in enumerate(toolset):
            if isinstance(entry, LMap):
                ctx.rename(entry, ("toolset", i), "tool_prefix", "toolPrefix")
    return m


# --------------------------------------------------------------------------------------------
# connectors


def normalise_connector(m: LMap, ctx: _Ctx) -> LMap:
    m.setdefault("type", "connector")
    normalise_mcp_connector(m, ctx)
    actions = m.get("actions")
    if isinstance(actions, LSeq):
        for i, action in enumerate(actions):
            if not isinstance(action, LMap):
                continue
            path: Path = ("actions", i)
            if "id" in action and "name" not in action:
                ctx.rename(action, path, "id", "name")
            for old, new in (
                ("inputSchema", "input"),
                ("input_schema", "input"),
                ("outputSchema", "output"),
                ("output_schema", "output"),
            ):
                ctx.rename(action, path, old, new)
            handler = action.get("handler")
            if isinstance(handler, LMap):
                _norm_handler(handler, path + ("handler",), ctx)
    caps = m.get("capabilities")
    if isinstance(caps, LMap) and isinstance(caps.get("frameworks"), LMap):
        for name, fw in caps["frameworks"].items():
            if isinstance(fw, LMap):
                p: Path = ("capabilities", "frameworks", name)
                for old, new in (
                    ("tool_prefix", "toolPrefix"),
                    ("supports_streaming", "supportsStreaming"),
                    ("schema_format", "schemaFormat"),
                ):
                    ctx.rename(fw, p, old, new)
    approval = m.get("approval")
    if isinstance(approval, LMap):
        ctx.rename(approval, ("approval",), "on_timeout", "onTimeout")
    return m


def _norm_handler(h: LMap, path: Path, ctx: _Ctx) -> None:
    ctx.rename(h, path, "working_dir", "workingDir")
    http = h.get("http")
    if isinstance(http, LMap):
        _norm_retry(http, path + ("http",), ctx)
        for old, new in (
            ("max_response_bytes", "maxResponseBytes"),
            ("maxResponseSize", "maxResponseBytes"),
            ("max_response_size", "maxResponseBytes"),
            ("max_redirects", "maxRedirects"),
        ):
            ctx.rename(http, path + ("http",), old, new)
        uv = http.get("urlValidation")
        ctx.rename(http, path + ("http",), "url_validation", "urlValidation")
        uv = http.get("urlValidation")
        if isinstance(uv, LMap):
            for old, new in (
                ("allowed_domains", "allowedDomains"),
                ("blocked_domains", "blockedDomains"),
                ("require_https", "requireHTTPS"),
                ("requireHttps", "requireHTTPS"),
            ):
                ctx.rename(uv, path + ("http", "urlValidation"), old, new)
    kafka = h.get("kafka")
    if isinstance(kafka, LMap):
        ctx.rename(kafka, path + ("kafka",), "response_topic", "responseTopic")


# --------------------------------------------------------------------------------------------
# workflows and steps

_STEP_TYPE_ALIASES = {
    "for_each": "forEach",
    "foreach": "forEach",
    "for-each": "forEach",
    "loop": "forEach",
    "condition": "if",
    "route": "switch",
    "map": "parallel",
    "delay": "wait",
    "until": "wait",
    "subworkflow": "workflow",
    "sub-workflow": "workflow",
    "sub_workflow": "workflow",
    **PATTERN_TYPE_ALIASES,
}

_STEP_KEYS = {
    "continue_on_error": "continueOnError",
    "depends_on": "needs",
    "dependsOn": "needs",
    "max_concurrency": "maxConcurrency",
    "select_agent": "selectAgent",
    "resume_after": "resumeAfter",
}

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value: Any) -> float | None:
    """Seconds for ``30``, ``"30s"``, ``"10m"``, ``"1.5h"``, ``"2d"``, ``"500ms"``; None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 else None
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    return None


def _infer_step_type(s: LMap) -> str | None:
    if "connector" in s or "plugin" in s:
        return "action"
    if "agent" in s and "reason" not in s and "context" not in s:
        return "agent"
    if "workflow" in s:
        return "workflow"
    if isinstance(s.get("parallel"), list) or "branches" in s:
        return "parallel"
    if "then" in s:
        return "if"
    if "cases" in s:
        return "switch"
    if "items" in s and "steps" in s:
        return "forEach"
    if "catch" in s or "finally" in s or ("steps" in s and "retry" in s):
        return "try"
    if "duration" in s or "until" in s:
        return "wait"
    if "expression" in s or "template" in s or "jq" in s or "jsonpath" in s:
        return "transform"
    if "selectAgent" in s or "select_agent" in s or "agent" in s:
        return "handoff"
    return None


def normalise_workflow(m: LMap, ctx: _Ctx) -> LMap:
    m.setdefault("type", "workflow")
    if "id" in m and "name" not in m:
        ctx.rename(m, (), "id", "name")
    _norm_execution(m, (), ctx)
    # triggers: `trigger:` singular and shorthand entries
    ctx.rename(m, (), "trigger", "triggers")
    trig = m.get("triggers")
    if isinstance(trig, str | LMap):
        pos = _key_pos(m, "triggers")
        seq = LSeq([trig], pos=pos)
        seq.item_pos.append(pos or (0, 0))
        _set(m, "triggers", seq, pos)
        ctx.alias(("triggers",), "triggers: <one trigger>", "triggers: [<trigger>]", pos)
        trig = seq
    if isinstance(trig, LSeq):
        for i, t in enumerate(trig):
            pos = trig.item_pos[i] if i < len(trig.item_pos) else trig.pos
            new = _norm_trigger(t, pos, ("triggers", i), ctx)
            if new is not t:
                trig[i] = new
    outputs = m.get("outputs")
    if isinstance(outputs, LMap):
        for name, spec in list(outputs.items()):
            if not isinstance(spec, dict):
                pos = outputs.key_pos.get(name)
                outputs[name] = _new_map(pos, {"value": spec}, pos)
    inputs = m.get("inputs")
    if isinstance(inputs, LSeq):  # a list of names, or of {name: ..., type: ...}
        pos = _key_pos(m, "inputs")
        as_map = LMap(pos=pos)
        for i, item in enumerate(inputs):
            ipos = inputs.item_pos[i] if i < len(inputs.item_pos) else pos
            if isinstance(item, str):
                _set(as_map, item, _new_map(ipos), ipos)
            elif isinstance(item, LMap) and isinstance(item.get("name") or item.get("id"), str):
                key = "name" if isinstance(item.get("name"), str) and item.get("name") else "id"
                name, _ = _pop(item, key)
                _set(as_map, name, item, ipos)
        if len(as_map) == len(inputs):
            _set(m, "inputs", as_map, pos)
            ctx.alias(("inputs",), "inputs: [list]", "inputs: {name: {type: ...}}", pos)
    steps = m.get("steps")
    if isinstance(steps, LSeq):
        _norm_steps(steps, ("steps",), ctx)
    return m


_TRIGGER_SHORTHAND = {"schedule": "cron", "webhook": "path", "event": "topic"}


def _norm_trigger(t: Any, pos: Pos | None, path: Path, ctx: _Ctx) -> Any:
    if isinstance(t, str):
        ctx.alias(path, f"'{t}'", f"{{type: {t}}}", pos)
        return _new_map(pos, {"type": t}, pos)
    if isinstance(t, LMap) and "type" not in t and len(t) >= 1:
        for kind, field_name in _TRIGGER_SHORTHAND.items():
            if kind in t and not isinstance(t[kind], dict):
                value, kpos = _pop(t, kind)
                out = _new_map(t.pos, {"type": kind, field_name: value}, kpos)
                for k, v in t.items():
                    _set(out, k, v, t.key_pos.get(k))
                ctx.alias(path, f"{kind}: ...", f"{{type: {kind}, {field_name}: ...}}", kpos)
                return out
        if "manual" in t:
            value, kpos = _pop(t, "manual")
            out = _new_map(t.pos, {"type": "manual"}, kpos)
            ctx.alias(path, "manual: ...", "{type: manual}", kpos)
            return out
    return t


def _norm_steps(steps: LSeq, path: Path, ctx: _Ctx) -> None:
    for i, s in enumerate(steps):
        if isinstance(s, LMap):
            _norm_step(s, path + (i,), ctx)


def _norm_step(s: LMap, path: Path, ctx: _Ctx) -> None:
    if "id" not in s and "name" in s:
        ctx.rename(s, path, "name", "id")
    elif "id" in s and "name" in s:
        ctx.rename(s, path, "name", "displayName")
    sid = s.get("id") if isinstance(s.get("id"), str) else None
    ctx.rename(s, path, "with", "input", sid)
    if "plugin" in s and "connector" not in s:
        ctx.rename(s, path, "plugin", "connector", sid)
    for old, new in _STEP_KEYS.items():
        ctx.rename(s, path, old, new, sid)
    stype = s.get("type")
    if isinstance(stype, str) and stype in _STEP_TYPE_ALIASES:
        canon = _STEP_TYPE_ALIASES[stype]
        s["type"] = canon
        ctx.alias(path + ("type",), f"type: {stype}", f"type: {canon}", _key_pos(s, "type"), sid)
    # inline `parallel: [steps]` → a parallel step whose branches are named after the child steps
    if isinstance(s.get("parallel"), LSeq) and s.get("type") in (None, "parallel"):
        children, pos = _pop(s, "parallel")
        branches = LMap(pos=pos)
        for j, child in enumerate(children):
            cpos = children.item_pos[j] if j < len(children.item_pos) else pos
            name = None
            if isinstance(child, LMap):
                name = child.get("id", child.get("name"))
            key = name if isinstance(name, str) else f"branch_{j}"
            while key in branches:
                key += "_"
            seq = LSeq([child], pos=cpos)
            seq.item_pos.append(cpos or (0, 0))
            _set(branches, key, seq, cpos)
        s.setdefault("type", "parallel")
        _set(s, "branches", branches, pos)
        ctx.alias(path + ("branches",), "parallel: [steps]", "type: parallel + branches: {name: [steps]}", pos, sid)
    if s.get("type") == "parallel" and isinstance(s.get("steps"), LSeq) and "branches" not in s:
        children, pos = _pop(s, "steps")
        branches = LMap(pos=pos)
        for j, child in enumerate(children):
            cpos = children.item_pos[j] if j < len(children.item_pos) else pos
            name = child.get("id", child.get("name")) if isinstance(child, LMap) else None
            key = name if isinstance(name, str) else f"branch_{j}"
            seq = LSeq([child], pos=cpos)
            seq.item_pos.append(cpos or (0, 0))
            _set(branches, key, seq, cpos)
        _set(s, "branches", branches, pos)
        ctx.alias(path + ("branches",), "steps (in a parallel step)", "branches: {name: [steps]}", pos, sid)
    # inline loops: for_each (+ parallel: true) → forEach: {items, parallel, maxConcurrency}
    if s.get("type") == "forEach" and "for_each" in s and "items" not in s:
        ctx.rename(s, path, "for_each", "items", sid)
    if "for_each" in s or ("forEach" in s and s.get("type") != "forEach"):
        key = "for_each" if "for_each" in s else "forEach"
        value, pos = _pop(s, key)
        loop = value if isinstance(value, LMap) else _new_map(pos, {"items": value}, pos)
        if isinstance(s.get("parallel"), bool):
            par, ppos = _pop(s, "parallel")
            _set(loop, "parallel", par, ppos)
        if "maxConcurrency" in s and s.get("type") not in ("forEach",):
            mc, mpos = _pop(s, "maxConcurrency")
            _set(loop, "maxConcurrency", mc, mpos)
        if s.get("type") is None or s.get("type") != "forEach":
            _set(s, "forEach", loop, pos)
        if key == "for_each":
            ctx.alias(path + ("forEach",), "for_each", "forEach: {items: ...}", pos, sid)
    if "type" not in s:
        inferred = _infer_step_type(s)
        if inferred:
            s["type"] = inferred
            s.key_pos.setdefault("type", s.pos or (0, 0))
    stype = s.get("type")
    _norm_execution(s, path, ctx, sid)
    _norm_retry(s, path, ctx, sid)
    if stype in PATTERN_TYPES:  # docs/patterns.md
        normalise_pattern(s, path, ctx, sid)
    if stype == "action":
        conn = s.get("connector")
        if isinstance(conn, str) and "action" not in s:
            match = re.fullmatch(r"(connector:[^@\s]+?(?:@\S+?)?)\.([A-Za-z_][\w-]*)", conn)
            if match and "/" in conn:
                s["connector"] = match.group(1)
                _set(s, "action", match.group(2), _key_pos(s, "connector"))
    elif stype == "transform":
        for lang in ("template", "jq", "jsonpath"):
            if lang in s and "expression" not in s:
                value, pos = _pop(s, lang)
                _set(s, "expression", value, pos)
                if "language" not in s:
                    _set(s, "language", lang, pos)
                ctx.alias(path + ("expression",), f"{lang}: ...", f"language: {lang} + expression: ...", pos, sid)
    elif stype == "parallel":
        join = s.get("join")
        if isinstance(join, str):
            match = re.fullmatch(r"\s*count\s*\(\s*(\d+)\s*\)\s*", join)
            if match:
                pos = _key_pos(s, "join")
                s["join"] = _new_map(pos, {"count": int(match.group(1))}, pos)
    elif stype == "handoff":
        sel = s.get("selectAgent")
        if isinstance(sel, LSeq):
            for entry in sel:
                if isinstance(entry, LMap) and "default" in entry and "agent" not in entry:
                    value, pos = _pop(entry, "default")
                    _set(entry, "agent", value, pos)
                    _set(entry, "default", True, pos)
    try_catch_keys = ("steps", "then", "else", "catch", "finally", "default")
    for key in try_catch_keys:
        block = s.get(key)
        if isinstance(block, LSeq):
            _norm_steps(block, path + (key,), ctx)
    for key in ("cases", "branches"):
        mapping = s.get(key)
        if isinstance(mapping, LMap):
            for name, block in mapping.items():
                if isinstance(block, LSeq):
                    _norm_steps(block, path + (key, name), ctx)


def normalise_bundle(m: LMap, ctx: _Ctx) -> LMap:
    m.setdefault("type", "bundle")
    return m


NORMALISERS = {
    "agent": normalise_agent,
    "connector": normalise_connector,
    "workflow": normalise_workflow,
    "bundle": normalise_bundle,
}
