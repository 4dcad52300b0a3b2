"""A workflow-runner ``WorkflowRequest`` as OpenWorkflow documents.

Every runner agent becomes an OpenWorkflow agent (namespace: the workflow's name) whose
``extensions.openaiAgents`` keeps what OpenWorkflow has no field for (handoffs, agents as tools,
hosted tools, MCP servers, guardrails, output_type); the request becomes a workflow named
``workflow.name`` with a ``query`` input (the request's query by default) and one agent step
(``run``) on the starting agent, whose ``metadata.openaiAgents`` carries the session, turns and
callback. The engine runs such a step as the Agents SDK runs a request (agents/multi.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from owf_magics.errors import DiagnosticBag
from owf_magics.formats.runner.validate import text, validate_request
from owf_magics.manifest.loader import LMap, LSeq, Pos, SourceDocument

EXTENSION = "openaiAgents"
DEFAULT_MODEL = "gpt-4o-mini"


def at(value: dict[str, Any], src: Any) -> LMap:
    """``value`` as an LMap at ``src``'s position, each key at the position of the same key in src."""
    pos: Pos | None = getattr(src, "pos", None)
    out = LMap(value, pos=pos)
    key_pos: dict[str, Pos] = getattr(src, "key_pos", {})
    for k in value:
        where = key_pos.get(k, pos)
        if where is not None:
            out.key_pos[k] = where
    return out


def model_spec(decl: Any) -> dict[str, Any]:
    m = decl if isinstance(decl, Mapping) else {}
    spec: dict[str, Any] = {
        "provider": text(m.get("provider")) or "openai",
        "id": text(m.get("model")) or DEFAULT_MODEL,
    }
    if m.get("temperature") is not None:
        spec["temperature"] = m["temperature"]
    if m.get("top_p") is not None:
        spec["topP"] = m["top_p"]
    if m.get("max_tokens") is not None:
        spec["maxTokens"] = m["max_tokens"]
    config: dict[str, Any] = dict(m.get("provider_config") or {})  # our extension (docs/formats.md)
    for key in ("extra_headers", "extra_query"):
        if m.get(key):
            config.setdefault("default_headers" if key == "extra_headers" else "default_query", dict(m[key]))
    if config:
        spec["providerConfig"] = config
    params = {k: m[k] for k in ("reasoning", "verbosity", "tool_choice", "metadata") if m.get(k)}
    if params:
        spec["params"] = params
    return spec


def mcp_label(server: Mapping[str, Any], namespace: str, agent: str) -> str:
    """The server's label; the Go runner's default is ``<workflow>_<agent>``."""
    return text(server.get("server_label")) or f"{namespace}_{agent}"


def mcp_connector(server: Mapping[str, Any], namespace: str, agent: str) -> LMap:
    """An ``mcp`` entry as an MCP connector (docs/mcp.md): streamable HTTP, or SSE when its type
    says so; ``require_approval`` (always | never | {always: [...], never: [...]}) kept."""
    transport = "sse" if text(server.get("type")).lower() == "sse" else "streamable-http"
    mcp: dict[str, Any] = {"transport": transport, "endpoint": text(server.get("address"))}
    if server.get("require_approval"):
        mcp["require_approval"] = server["require_approval"]
    doc = {
        "type": "connector",
        "kind": "mcp-server",
        "name": mcp_label(server, namespace, agent),
        "namespace": namespace,
        "mcp": at(mcp, server),
    }
    if server.get("additional"):
        doc["metadata"] = {"additional": dict(server["additional"])}
    return at(doc, server)


def agent_doc(decl: Mapping[str, Any], namespace: str) -> LMap:
    ext = {
        key: decl[key]
        for key in (
            "handoff",
            "handoff_description",
            "agent_tools",
            "tools",
            "mcp",
            "input_guardrails",
            "output_guardrails",
            "output_type",
            "prompt_id",
            "annotations",
        )
        if decl.get(key) is not None
    }
    if ext.get("mcp"):
        ext["mcp"] = [{**m, "server_label": mcp_label(m, namespace, decl["name"])} for m in decl["mcp"]]
    doc: dict[str, Any] = {
        "name": decl["name"],
        "namespace": namespace,
        "model": at(model_spec(decl.get("model")), decl.get("model") or decl),
        "extensions": {EXTENSION: ext},
    }
    if decl.get("display_name"):
        doc["displayName"] = decl["display_name"]
    if decl.get("handoff_description"):
        doc["description"] = decl["handoff_description"]
    if decl.get("instructions"):
        doc["personality"] = {"systemPrompt": decl["instructions"]}
    return at(doc, decl)


def sink_of(callback: Any) -> str | None:
    """The request's callback as a run's ``callback=``: a stdout mode, or the http target."""
    if not isinstance(callback, Mapping):
        return None
    mode = text(callback.get("mode")).lower() or "http"
    return mode if mode != "http" else text(callback.get("target")) or None


def convert_request(doc: SourceDocument, bag: DiagnosticBag) -> list[SourceDocument]:
    if not validate_request(doc, bag):
        return []
    req = doc.data
    wf = req["workflow"]
    name = text(wf["name"])
    session = req.get("session") or {}
    callback = req.get("callback")
    if isinstance(callback, str):
        callback = {"target": callback, "mode": "http"}
    agents = LSeq([agent_doc(a, name) for a in wf["agents"]], pos=getattr(wf["agents"], "pos", None))
    agents.item_pos = list(getattr(wf["agents"], "item_pos", []))
    run_meta = {
        EXTENSION: {
            "workflow_name": name,
            "session": {k: v for k, v in session.items() if k != "credentials"},
            "credentials": dict(session.get("credentials") or {}),
            "callback": dict(callback) if isinstance(callback, Mapping) else None,
            "metadata": dict(req.get("metadata") or {}),
            "context": dict(req.get("context") or {}),
            "workflow_metadata": dict(wf.get("metadata") or {}),
        }
    }
    step = at(
        {"id": "run", "type": "agent", "agent": f"{name}/{text(wf['starting_agent'])}", "input": "{{ inputs.query }}"},
        wf,
    )
    step["metadata"] = run_meta
    steps = LSeq([step], pos=getattr(wf, "pos", None))
    first: Pos = getattr(wf, "key_pos", {}).get("starting_agent") or getattr(wf, "pos", None) or (doc.line, 1)
    steps.item_pos = [first]
    workflow = at(
        {
            "name": name,
            "version": "1.0.0",
            "description": f"workflow-runner request (starting agent {wf['starting_agent']})",
            "inputs": {"query": {"type": "string", "default": req["query"]}},
            "steps": steps,
            "metadata": {EXTENSION: {"callback": sink_of(callback)}} if sink_of(callback) else {},
            "outputs": {
                "final_output": {"value": "{{ steps.run.output.final_output }}"},
                "summary": {"value": "{{ steps.run.output.summary }}"},
            },
        },
        wf,
    )
    root = LMap({"agents": agents, "workflows": LSeq([workflow], pos=workflow.pos)}, pos=getattr(req, "pos", None))
    servers = [mcp_connector(m, name, a["name"]) for a in wf["agents"] for m in (a.get("mcp") or [])]
    if servers:
        root["connectors"] = LSeq(servers, pos=getattr(wf, "pos", None))
        root["connectors"].item_pos = [s.pos or (doc.line, 1) for s in servers]
    return [SourceDocument(root, doc.file, doc.index, doc.line)]
