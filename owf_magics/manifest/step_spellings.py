"""Workflow and step spellings (normalisation, see `normalize`): triggers, inputs and outputs
shorthands, step type aliases and inferred types, inline ``parallel``/``for_each``, transform
languages, handoff defaults; pattern steps in `pattern_spellings`. Plus `parse_duration`.
"""

from __future__ import annotations

import re
from typing import Any

from owf_magics.manifest.loader import LMap, LSeq, Pos
from owf_magics.manifest.pattern_spellings import PATTERN_TYPE_ALIASES, PATTERN_TYPES, normalise_pattern
from owf_magics.manifest.reshape import (
    Path,
    SpellingContext,
    key_pos,
    new_map,
    norm_execution,
    norm_retry,
    pop_key,
    set_key,
)

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


def normalise_workflow(m: LMap, ctx: SpellingContext) -> LMap:
    m.setdefault("type", "workflow")
    if "id" in m and "name" not in m:
        ctx.rename(m, (), "id", "name")
    norm_execution(m, (), ctx)
    # triggers: `trigger:` singular and shorthand entries
    ctx.rename(m, (), "trigger", "triggers")
    trig = m.get("triggers")
    if isinstance(trig, str | LMap):
        pos = key_pos(m, "triggers")
        seq = LSeq([trig], pos=pos)
        seq.item_pos.append(pos or (0, 0))
        set_key(m, "triggers", seq, pos)
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
                outputs[name] = new_map(pos, {"value": spec}, pos)
    inputs = m.get("inputs")
    if isinstance(inputs, LSeq):  # a list of names, or of {name: ..., type: ...}
        pos = key_pos(m, "inputs")
        as_map = LMap(pos=pos)
        for i, item in enumerate(inputs):
            ipos = inputs.item_pos[i] if i < len(inputs.item_pos) else pos
            if isinstance(item, str):
                set_key(as_map, item, new_map(ipos), ipos)
            elif isinstance(item, LMap) and isinstance(item.get("name") or item.get("id"), str):
                key = "name" if isinstance(item.get("name"), str) and item.get("name") else "id"
                name, _ = pop_key(item, key)
                set_key(as_map, name, item, ipos)
        if len(as_map) == len(inputs):
            set_key(m, "inputs", as_map, pos)
            ctx.alias(("inputs",), "inputs: [list]", "inputs: {name: {type: ...}}", pos)
    steps = m.get("steps")
    if isinstance(steps, LSeq):
        _norm_steps(steps, ("steps",), ctx)
    return m


_TRIGGER_SHORTHAND = {"schedule": "cron", "webhook": "path", "event": "topic"}


def _norm_trigger(t: Any, pos: Pos | None, path: Path, ctx: SpellingContext) -> Any:
    if isinstance(t, str):
        ctx.alias(path, f"'{t}'", f"{{type: {t}}}", pos)
        return new_map(pos, {"type": t}, pos)
    if isinstance(t, LMap) and "type" not in t and len(t) >= 1:
        for kind, field_name in _TRIGGER_SHORTHAND.items():
            if kind in t and not isinstance(t[kind], dict):
                value, kpos = pop_key(t, kind)
                out = new_map(t.pos, {"type": kind, field_name: value}, kpos)
                for k, v in t.items():
                    set_key(out, k, v, t.key_pos.get(k))
                ctx.alias(path, f"{kind}: ...", f"{{type: {kind}, {field_name}: ...}}", kpos)
                return out
        if "manual" in t:
            value, kpos = pop_key(t, "manual")
            out = new_map(t.pos, {"type": "manual"}, kpos)
            ctx.alias(path, "manual: ...", "{type: manual}", kpos)
            return out
    return t


def _norm_steps(steps: LSeq, path: Path, ctx: SpellingContext) -> None:
    for i, s in enumerate(steps):
        if isinstance(s, LMap):
            _norm_step(s, path + (i,), ctx)


def _norm_step(s: LMap, path: Path, ctx: SpellingContext) -> None:
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
        ctx.alias(path + ("type",), f"type: {stype}", f"type: {canon}", key_pos(s, "type"), sid)
    # inline `parallel: [steps]` → a parallel step whose branches are named after the child steps
    if isinstance(s.get("parallel"), LSeq) and s.get("type") in (None, "parallel"):
        children, pos = pop_key(s, "parallel")
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
            set_key(branches, key, seq, cpos)
        s.setdefault("type", "parallel")
        set_key(s, "branches", branches, pos)
        ctx.alias(path + ("branches",), "parallel: [steps]", "type: parallel + branches: {name: [steps]}", pos, sid)
    if s.get("type") == "parallel" and isinstance(s.get("steps"), LSeq) and "branches" not in s:
        children, pos = pop_key(s, "steps")
        branches = LMap(pos=pos)
        for j, child in enumerate(children):
            cpos = children.item_pos[j] if j < len(children.item_pos) else pos
            name = child.get("id", child.get("name")) if isinstance(child, LMap) else None
            key = name if isinstance(name, str) else f"branch_{j}"
            seq = LSeq([child], pos=cpos)
            seq.item_pos.append(cpos or (0, 0))
            set_key(branches, key, seq, cpos)
        set_key(s, "branches", branches, pos)
        ctx.alias(path + ("branches",), "steps (in a parallel step)", "branches: {name: [steps]}", pos, sid)
    # inline loops: for_each (+ parallel: true) → forEach: {items, parallel, maxConcurrency}
    if s.get("type") == "forEach" and "for_each" in s and "items" not in s:
        ctx.rename(s, path, "for_each", "items", sid)
    if "for_each" in s or ("forEach" in s and s.get("type") != "forEach"):
        key = "for_each" if "for_each" in s else "forEach"
        value, pos = pop_key(s, key)
        loop = value if isinstance(value, LMap) else new_map(pos, {"items": value}, pos)
        if isinstance(s.get("parallel"), bool):
            par, ppos = pop_key(s, "parallel")
            set_key(loop, "parallel", par, ppos)
        if "maxConcurrency" in s and s.get("type") not in ("forEach",):
            mc, mpos = pop_key(s, "maxConcurrency")
            set_key(loop, "maxConcurrency", mc, mpos)
        if s.get("type") is None or s.get("type") != "forEach":
            set_key(s, "forEach", loop, pos)
        if key == "for_each":
            ctx.alias(path + ("forEach",), "for_each", "forEach: {items: ...}", pos, sid)
    if "type" not in s:
        inferred = _infer_step_type(s)
        if inferred:
            s["type"] = inferred
            s.key_pos.setdefault("type", s.pos or (0, 0))
    stype = s.get("type")
    norm_execution(s, path, ctx, sid)
    norm_retry(s, path, ctx, sid)
    if stype in PATTERN_TYPES:  # docs/patterns.md
        normalise_pattern(s, path, ctx, sid)
    if stype == "action":
        conn = s.get("connector")
        if isinstance(conn, str) and "action" not in s:
            match = re.fullmatch(r"(connector:[^@\s]+?(?:@\S+?)?)\.([A-Za-z_][\w-]*)", conn)
            if match and "/" in conn:
                s["connector"] = match.group(1)
                set_key(s, "action", match.group(2), key_pos(s, "connector"))
    elif stype == "transform":
        for lang in ("template", "jq", "jsonpath"):
            if lang in s and "expression" not in s:
                value, pos = pop_key(s, lang)
                set_key(s, "expression", value, pos)
                if "language" not in s:
                    set_key(s, "language", lang, pos)
                ctx.alias(path + ("expression",), f"{lang}: ...", f"language: {lang} + expression: ...", pos, sid)
    elif stype == "parallel":
        join = s.get("join")
        if isinstance(join, str):
            match = re.fullmatch(r"\s*count\s*\(\s*(\d+)\s*\)\s*", join)
            if match:
                pos = key_pos(s, "join")
                s["join"] = new_map(pos, {"count": int(match.group(1))}, pos)
    elif stype == "handoff":
        sel = s.get("selectAgent")
        if isinstance(sel, LSeq):
            for entry in sel:
                if isinstance(entry, LMap) and "default" in entry and "agent" not in entry:
                    value, pos = pop_key(entry, "default")
                    set_key(entry, "agent", value, pos)
                    set_key(entry, "default", True, pos)
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
