"""Agent and connector spellings (normalisation, see `normalize`): the agent-schema.md shape,
``runtime:``, ``instructions``, ``tools``, model keys; connector actions, handlers, frameworks and
approvals (MCP connectors in `mcp_spec`), each alias rewritten with an ``ALIAS`` warning.
"""

from __future__ import annotations

import re

from owf_magics.manifest.loader import LMap, LSeq
from owf_magics.manifest.mcp_spec import normalise_mcp_connector
from owf_magics.manifest.reshape import (
    Path,
    SpellingContext,
    as_map,
    key_pos,
    new_map,
    norm_execution,
    norm_retry,
    pop_key,
    set_key,
)


def _norm_model(m: LMap, path: Path, ctx: SpellingContext) -> None:
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


def normalise_agent(m: LMap, ctx: SpellingContext) -> LMap:
    m.setdefault("type", "agent")
    # the agent-schema.md JSON Schema shape
    if isinstance(m.get("agent"), LMap):
        block, pos = pop_key(m, "agent")
        ident = block.get("id")
        if isinstance(ident, str) and "name" not in m:
            ref = re.fullmatch(r"(?:agent:)?(?:([\w.-]+)/)?([\w.-]+)(?:@(.+))?", ident)
            if ref:
                ns, name, ver = ref.groups()
                set_key(m, "name", name, block.key_pos.get("id", pos))
                if ns and "namespace" not in m:
                    set_key(m, "namespace", ns, pos)
                if ver and "version" not in m:
                    set_key(m, "version", ver, pos)
            else:
                set_key(m, "name", ident, pos)
            ctx.alias(("name",), "agent.id", "name", pos)
        for k, v in block.items():
            if k != "id":
                set_key(m, k, v, block.key_pos.get(k))
    if "id" in m and "name" not in m:
        ctx.rename(m, (), "id", "name")
    if isinstance(m.get("runtime"), str) and "execution" not in m:
        value, pos = pop_key(m, "runtime")
        backend = _SHAPE2_RUNTIME.get(value, value)
        block = new_map(pos)
        if backend is not None:
            set_key(block, "backend", backend, pos)
            if backend == "langchain":
                set_key(block, "runtime", "python", pos)
        set_key(m, "execution", block, pos)
        ctx.alias(("execution", "backend"), f"runtime: {value}", "execution.backend", pos)
    if isinstance(m.get("instructions"), LMap):
        instr, pos = pop_key(m, "instructions")
        pers = as_map(m.get("personality")) or new_map(pos)
        if "system" in instr:
            set_key(pers, "systemPrompt", instr["system"], instr.key_pos.get("system", pos))
        if "goals" in instr:
            set_key(pers, "goals", instr["goals"], instr.key_pos.get("goals", pos))
        for k, v in instr.items():
            if k not in ("system", "goals"):
                set_key(pers, k, v, instr.key_pos.get(k))
        set_key(m, "personality", pers, pos)
        ctx.alias(("personality", "systemPrompt"), "instructions.system", "personality.systemPrompt", pos)
    if "systemPrompt" in m:
        value, pos = pop_key(m, "systemPrompt")
        pers = as_map(m.get("personality")) or new_map(pos)
        if "systemPrompt" not in pers:
            set_key(pers, "systemPrompt", value, pos)
        set_key(m, "personality", pers, key_pos(m, "personality") or pos)
        ctx.alias(("personality", "systemPrompt"), "systemPrompt", "personality.systemPrompt", pos)
    if isinstance(m.get("tools"), list) and "toolset" not in m:
        tools, pos = pop_key(m, "tools")
        seq = LSeq(pos=pos)
        for i, t in enumerate(tools):
            seq.item_pos.append(
                tools.item_pos[i] if isinstance(tools, LSeq) and i < len(tools.item_pos) else (pos or (0, 0))
            )
            if isinstance(t, LMap) and "name" in t:
                entry = new_map(t.pos, {"connector": t["name"]}, t.key_pos.get("name"))
                if "input_schema" in t:
                    set_key(entry, "inputSchema", t["input_schema"], t.key_pos.get("input_schema"))
                seq.append(entry)
            else:
                seq.append(t)
        set_key(m, "toolset", seq, pos)
        ctx.alias(("toolset",), "tools", "toolset", pos)
    io = m.get("io")
    if isinstance(io, LMap):
        ctx.rename(io, ("io",), "output_schema", "outputSchema")
        ctx.rename(io, ("io",), "input_schema", "inputSchema")
    norm_execution(m, (), ctx)
    _norm_model(m, (), ctx)
    toolset = m.get("toolset")
    if isinstance(toolset, LSeq):
        for i, entry in enumerate(toolset):
            if isinstance(entry, LMap):
                ctx.rename(entry, ("toolset", i), "tool_prefix", "toolPrefix")
    return m


# --------------------------------------------------------------------------------------------
# connectors


def normalise_connector(m: LMap, ctx: SpellingContext) -> LMap:
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


def _norm_handler(h: LMap, path: Path, ctx: SpellingContext) -> None:
    ctx.rename(h, path, "working_dir", "workingDir")
    http = h.get("http")
    if isinstance(http, LMap):
        norm_retry(http, path + ("http",), ctx)
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
