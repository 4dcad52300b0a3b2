"""An OpenFlow flow as one OpenWorkflow document: a workflow, the agents of its LLM nodes and
the ``openflow/ops`` connector whose functions (``ops.py``) run what templates cannot.

Variables are converted statically: each reference to ``@var`` reads the value the variable has at
that point of the flow (the workflow input, or the ``new_value`` of the last UPDATE_VARIABLE before
it; after a CONDITION, the branch that ran; after a FOR_EACH, every iteration's update folded in
item order). Nodes are converted in dependency order (a stable topological sort of the references),
so a consumer declared before its producer still runs after it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from owf_magics.formats.openflow.custom import action_name, custom_function
from owf_magics.formats.openflow.images import has_images, image_messages
from owf_magics.formats.openflow.refs import Scope, path_expr, refs_in
from owf_magics.manifest.loader import LMap, LSeq, Pos

OPS_REF = "connector:openflow/ops@1.0.0"
OPS_MODULE = "owf_magics.formats.openflow.ops"
NODES_MODULE = "owf_magics.formats.openflow.nodes"
VAR_TYPES = ("string", "number", "boolean", "array", "object", "file", "null", "any")
#: The `validation` keys a variable's input keeps (`items`/`properties`: JSON-Schema-like schemas).
RULE_KEYS = ("pattern", "minLength", "maxLength", "minimum", "maximum", "enum", "format", "items", "properties")
OFFLINE = ("echo", "scripted")
#: the providers named in messages; any provider LangChain knows is accepted (manifest/providers.py)
PROVIDERS = ("openai", "anthropic", "grok", "azure", "openai_compatible", *OFFLINE)
#: the ops connector's actions that call `nodes.py`
NODE_FUNCTIONS = (
    "document_splitter",
    "conversation_memory",
    "seed_variables",
    "collect_variables",
    "fold_memory",
    "fold_variables",
)
#: the LLM node's builtin tools (`tools.builtin_tools`)
BUILTIN_TOOLS = ("set_variable", "get_variable")
#: nested FLOW_CALLs a run may make (the SDK's limit)
MAX_CALL_DEPTH = 5
#: the embedded vector store and offline embedder (`connectors/vector_store.py`), by node type
VECTOR_MODULE = "owf_magics.connectors.vector_store"
VECTOR_NODES = {
    "TEXT_EMBEDDING": "text_embedding",
    "VECTOR_INSERT": "vector_insert",
    "VECTOR_SEARCH": "vector_search",
    "VECTOR_UPDATE": "vector_update",
    "VECTOR_DELETE": "vector_delete",
}


def tpl(expr: str) -> str:
    """A template that is one expression (so its value keeps its type)."""
    return "{{ " + expr + " }}"


def as_map(value: Any) -> Mapping[str, Any]:
    """`value` when it is a mapping, else an empty one (malformed parts are the validator's)."""
    return value if isinstance(value, Mapping) else {}


def _pos(node: Any) -> Pos | None:
    return getattr(node, "pos", None)


def _lmap(data: dict[str, Any], pos: Pos | None) -> LMap:
    out = LMap(data, pos=pos)
    if pos is not None:
        out.key_pos = dict.fromkeys(data, pos)
    return out


def _lseq(items: list[Any], pos: Pos | None) -> LSeq:
    out = LSeq(items, pos=pos)
    out.item_pos = [getattr(i, "pos", None) or pos for i in items]  # type: ignore[misc]
    return out


def node_deps(node: Mapping[str, Any], ids: set[str]) -> set[str]:
    """The node ids a node (and its nested nodes) reads."""
    return {name for name, _ in refs_in(dict(node)) if not name.startswith("@") and name in ids}


def topo_order(nodes: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Stable topological order by references (declaration order among independent nodes);
    nodes in a cycle keep their place (the validator reports the cycle)."""
    ids = {str(n.get("id")) for n in nodes}
    deps = {str(n.get("id")): node_deps(n, ids) - {str(n.get("id"))} for n in nodes}
    done: set[str] = set()
    out: list[Mapping[str, Any]] = []
    pending = list(nodes)
    while pending:
        for n in pending:
            if deps[str(n.get("id"))] <= done:
                break
        else:
            n = pending[0]
        pending.remove(n)
        done.add(str(n.get("id")))
        out.append(n)
    return out


def input_spec(var: Mapping[str, Any], is_input: bool) -> LMap:
    """A flow variable as a workflow input with its validation rules, keeping each rule's line.

    ``validation.items`` and ``validation.properties`` are JSON-Schema-like schemas
    (`engine.input_rules`); a JSON-Schema ``required: [names]`` list beside ``properties`` marks
    those properties ``required: true``.
    """
    spec: dict[str, Any] = {}
    vtype = var.get("type", "string")
    if vtype in VAR_TYPES:
        spec["type"] = vtype
    if var.get("description"):
        spec["description"] = str(var["description"])
    if "default" in var:
        spec["default"] = var["default"]
    required = var.get("required")
    spec["required"] = bool(required) if required is not None else is_input and "default" not in var
    rules = var.get("validation")
    key_pos: dict[str, Any] = dict.fromkeys(spec, _pos(var)) | dict(getattr(var, "key_pos", {}))
    if isinstance(rules, Mapping):
        for key in RULE_KEYS:
            if key in rules:
                spec[key] = rules[key]
                key_pos[key] = getattr(rules, "key_pos", {}).get(key) or key_pos.get(key)
        listed = rules.get("required")
        if isinstance(listed, list) and isinstance(spec.get("properties"), Mapping):
            props = spec["properties"]
            marked = LMap(
                {k: {**v, "required": True} if k in listed and isinstance(v, Mapping) else v for k, v in props.items()},
                pos=getattr(props, "pos", None),
            )
            marked.key_pos = dict(getattr(props, "key_pos", {}))
            spec["properties"] = marked
    out = LMap(spec, pos=_pos(var))
    out.key_pos = {k: p for k, p in key_pos.items() if k in spec and p is not None}
    return out


class FlowConverter:
    """One flow's conversion (see the module docstring)."""

    def __init__(self, flow: Mapping[str, Any]) -> None:
        self.flow = flow
        self.name = str(flow.get("name"))
        self.version = str(flow.get("version") or "1.0.0")
        self.kinds: dict[str, str] = {}
        self.llm_schemas: dict[str, Any] = {}
        self.agents: list[LMap] = []
        self.mcp: dict[str, LMap] = {}
        self.custom: dict[str, str] = {}  # custom node type -> function
        self.builtin: set[str] = set()  # builtin tools some LLM node uses
        self._index(flow.get("nodes") or [])

    def _index(self, nodes: list[Any]) -> None:
        for n in nodes:
            if not isinstance(n, Mapping):
                continue
            self.kinds[str(n.get("id"))] = str(n.get("type"))
            if n.get("type") == "LLM":
                self.llm_schemas[str(n.get("id"))] = n.get("output") or {}
            self._index(list(n.get("each_nodes") or []))
            for branch in as_map(n.get("branches")).values():
                if isinstance(branch, Mapping):
                    self._index(list(branch.get("nodes") or []))

    def node_expr(self, node_id: str, parts: list[str]) -> str | None:
        kind = self.kinds.get(node_id)
        if kind is None:
            return None
        if kind == "LLM":
            schema = self.llm_schemas.get(node_id) or {}
            if parts[:1] == ["output"] and "output" not in schema:
                parts = parts[1:]  # the protocol's {{llm.output.text}} spelling
            return path_expr(f"steps.{node_id}__out.output", parts)
        if kind == "CONDITION" and parts[:1] in (["matched_branch"], ["switch_value"]):  # known before the branches
            return path_expr(f"steps.{node_id}__test.output", parts)
        return path_expr(f"steps.{node_id}.output", parts)

    # -- the document -------------------------------------------------------------------------

    def document(self) -> LMap:
        flow = self.flow
        pos = _pos(flow)
        inputs_listed = [str(i) for i in flow.get("input") or []]
        variables = [v for v in flow.get("variables") or [] if isinstance(v, Mapping)]
        scope = Scope({str(v.get("id")): f"inputs.{v.get('id')}" for v in variables}, self.node_expr)
        steps = self.block(list(flow.get("nodes") or []), scope, top=True)
        inputs = _lmap({str(v.get("id")): input_spec(v, str(v.get("id")) in inputs_listed) for v in variables}, pos)
        outputs = _lmap(
            {str(o): {"value": "{{ " + scope.variables.get(str(o), "none") + " }}"} for o in flow.get("output") or []},
            getattr(flow.get("output"), "pos", pos),
        )
        wf: dict[str, Any] = {"name": self.name, "version": self.version}
        if flow.get("description"):
            wf["description"] = str(flow["description"])
        wf.update({"inputs": inputs, "steps": steps, "outputs": outputs})
        meta = {k: flow[k] for k in ("author", "tags", "metadata") if k in flow}
        if meta:
            wf["metadata"] = {"openflow": meta}
        if isinstance(flow.get("timeout"), int | float):
            wf["timeout"] = float(flow["timeout"]) / 1000
        wf_map = _lmap(wf, pos)
        if pos is not None and hasattr(flow, "key_pos"):
            wf_map.key_pos.update({k: p for k, p in flow.key_pos.items() if k in wf_map})
        builtin = [self.builtin_connector(t, pos) for t in BUILTIN_TOOLS if t in self.builtin]
        doc: dict[str, Any] = {"connectors": [self.ops_connector(pos), *self.mcp.values(), *builtin]}
        if self.agents:
            doc["agents"] = _lseq(self.agents, pos)
        doc["workflows"] = _lseq([wf_map], pos)
        return _lmap(doc, pos)

    def builtin_connector(self, tool: str, pos: Pos | None) -> LMap:
        """`set_variable` / `get_variable` as connectors `set` / `get` with the action `variable`,
        so the model sees the SDK's tool names (a toolset names tools `<connector>_<action>`)."""
        verb = tool.split("_", 1)[0]
        props: dict[str, Any] = {"name": {"type": "string", "description": "Variable name"}}
        if verb == "set":
            props["value"] = {"description": "Variable value"}
        action = {
            "name": "variable",
            "description": f"{verb.capitalize()} a flow variable",
            "input": {"type": "object", "properties": props, "required": list(props)},
            "handler": {"function": f"{NODES_MODULE}.{tool}"},
        }
        conn = {"name": verb, "namespace": "openflow", "version": "1.0.0", "kind": "sdk", "actions": [action]}
        return _lmap(conn, pos)

    def ops_connector(self, pos: Pos | None) -> LMap:
        def action(name: str) -> dict[str, Any]:
            return {"name": name, "input": {"type": "object"}, "handler": {"function": f"{OPS_MODULE}.{name}"}}

        names = (
            "update_variable",
            "fold",
            "condition",
            "llm_output",
            "foreach_result",
            "select_outputs",
            "condition_result",
        )
        actions = [action(n) for n in names]
        for node_type, function in self.custom.items():
            actions.append(
                {"name": action_name(node_type), "input": {"type": "object"}, "handler": {"function": function}}
            )
        for name in NODE_FUNCTIONS:
            actions.append(
                {"name": name, "input": {"type": "object"}, "handler": {"function": f"{NODES_MODULE}.{name}"}}
            )
        parts = f"{NODES_MODULE.rsplit('.', 1)[0]}.images.message_parts"  # an LLM node's image messages
        actions.append({"name": "message_parts", "input": {"type": "object"}, "handler": {"function": parts}})
        for name in VECTOR_NODES.values():
            actions.append(
                {"name": name, "input": {"type": "object"}, "handler": {"function": f"{VECTOR_MODULE}.{name}"}}
            )
        return _lmap(
            {"name": "ops", "namespace": "openflow", "version": "1.0.0", "kind": "sdk", "actions": actions}, pos
        )

    # -- nodes --------------------------------------------------------------------------------

    def block(self, nodes: list[Any], scope: Scope, top: bool = False) -> LSeq:
        ordered = (
            topo_order([n for n in nodes if isinstance(n, Mapping)])
            if top
            else [n for n in nodes if isinstance(n, Mapping)]
        )
        out: list[Any] = []
        for node in ordered:
            out.extend(self.node(node, scope))
        return _lseq(out, getattr(nodes, "pos", None))

    def node(self, node: Mapping[str, Any], scope: Scope) -> list[LMap]:
        kind = node.get("type")
        nid = str(node.get("id"))
        pos = _pos(node)
        base: dict[str, Any] = {"id": nid}
        if node.get("name"):
            base["displayName"] = str(node["name"])
        if isinstance(node.get("timeout"), int | float):
            base["timeout"] = float(node["timeout"]) / 1000
        retry = (
            node.get("retry")
            if isinstance(node.get("retry"), Mapping)
            else (node.get("config") or {}).get("retry")
            if isinstance(node.get("config"), Mapping)
            else None
        )
        if isinstance(retry, Mapping):
            base["retry"] = self.retry(retry)
        if isinstance(kind, str) and custom_function(kind) is not None:
            self.custom[kind] = str(custom_function(kind))
            data = {
                "config": scope.translate(dict(as_map(node.get("config")))),
                "input": scope.translate(node.get("input")),
            }
            return [_lmap(self._action(base, action_name(kind), data), pos)]
        if kind in VECTOR_NODES:
            data = {
                "config": scope.translate(dict(as_map(node.get("config")))),
                "input": scope.translate(dict(as_map(node.get("input")))),
            }
            return [_lmap(self._action(base, VECTOR_NODES[str(kind)], data), pos)]
        method = getattr(self, f"node_{str(kind).lower()}", None)
        if method is None:
            return []
        steps: list[LMap] = [_lmap(s, pos) for s in method(node, nid, base, scope)]
        return steps

    def retry(self, retry: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"maxAttempts": int(retry.get("max_attempts", 3))}
        if retry.get("backoff") in ("linear", "exponential", "fixed"):
            out["backoff"] = retry["backoff"]
        if isinstance(retry.get("base_delay"), int | float):
            out["initialDelay"] = float(retry["base_delay"]) / 1000
        if isinstance(retry.get("max_delay"), int | float):
            out["maxDelay"] = float(retry["max_delay"]) / 1000
        if isinstance(retry.get("retry_on"), list):
            out["retryOn"] = [str(r) for r in retry["retry_on"]]
        return out

    def _action(self, base: dict[str, Any], action: str, data: dict[str, Any]) -> dict[str, Any]:
        return {**base, "type": "action", "connector": OPS_REF, "action": action, "input": data}

    def node_update_variable(
        self, node: Mapping[str, Any], nid: str, base: dict[str, Any], scope: Scope
    ) -> list[dict[str, Any]]:
        config = dict(node.get("config") or {})
        var = str(config.pop("variable_id", ""))
        op = str(config.pop("type", "update"))
        prev = scope.variables.get(var, "none")
        data = {
            "variable_id": var,
            "operation": op,
            "current": "{{ " + prev + " }}",
            "value": scope.translate(node.get("value")),
            "config": scope.translate(config),
        }
        scope.variables[var] = f"steps.{nid}.output.new_value"
        return [self._action(base, "update_variable", data)]

    def node_document_splitter(
        self, node: Mapping[str, Any], nid: str, base: dict[str, Any], scope: Scope
    ) -> list[dict[str, Any]]:
        data: dict[str, Any] = {"config": scope.translate(dict(as_map(node.get("config"))))}
        if "document" in node:
            data["document"] = scope.translate(node.get("document"))
        text = as_map(node.get("input")).get("text")
        if text is not None:
            data["text"] = scope.translate(text)
        return [self._action(base, "document_splitter", data)]

    def node_conversation_memory(
        self, node: Mapping[str, Any], nid: str, base: dict[str, Any], scope: Scope
    ) -> list[dict[str, Any]]:
        config = dict(as_map(node.get("config")))
        var = str(config.pop("variable_id", ""))
        data = {
            "operation": str(config.pop("operation", "append")),
            "current": "{{ " + scope.variables.get(var, "none") + " }}",
            "input": scope.translate(node.get("input")),
            "config": scope.translate(config),
        }
        if var:
            scope.variables[var] = f"steps.{nid}.output.messages"
        return [self._action(base, "conversation_memory", data)]

    def node_condition(
        self, node: Mapping[str, Any], nid: str, base: dict[str, Any], scope: Scope
    ) -> list[dict[str, Any]]:
        raw = as_map(node.get("branches"))
        branches = []
        for name, raw_branch in raw.items():
            b = as_map(raw_branch)
            entry = {"name": str(name), "condition": b.get("condition")}
            if "value" in b:
                entry["value"] = scope.translate(b["value"])
            branches.append(entry)
        value = scope.translate((node.get("input") or {}).get("switch_value"))
        test = {"id": f"{nid}__test", **self._action({}, "condition", {"value": value, "branches": branches})}
        cases: dict[str, Any] = {}
        default: Any = []
        before = dict(scope.variables)
        after = dict(scope.variables)
        for name, b in raw.items():
            inner = scope.child()
            nodes = list(as_map(b).get("nodes") or [])
            steps = self.block(nodes, inner)
            if name == "default":
                default = steps
            else:
                cases[str(name)] = steps
            for var, expr in inner.variables.items():
                if expr != before.get(var):
                    after[var] = (
                        f"({expr} if steps.{nid}__test.output.matched_branch == '{name}' else {after.get(var, 'none')})"
                    )
        scope.variables.update(after)
        switch: dict[str, Any] = {"id": f"{nid}__branches", "type": "switch"}
        switch["value"] = tpl(f"steps.{nid}__test.output.matched_branch")
        switch["cases"] = cases
        if default:
            switch["default"] = default
        # the matched branch's node outputs, by id (a lazy conditional: skipped branches are not read)
        chosen = "{}"
        for name, b in reversed(list(raw.items())):
            ids = [str(n.get("id")) for n in as_map(b).get("nodes") or [] if isinstance(n, Mapping)]
            row = "{" + ", ".join(f"'{i}': {self.node_expr(i, [])}" for i in ids) + "}"
            chosen = f"({row} if steps.{nid}__test.output.matched_branch == '{name}' else {chosen})"
        result = self._action(
            base, "condition_result", {"test": tpl(f"steps.{nid}__test.output"), "results": tpl(chosen)}
        )
        return [test, switch, result]

    def node_for_each(
        self, node: Mapping[str, Any], nid: str, base: dict[str, Any], scope: Scope
    ) -> list[dict[str, Any]]:
        config = as_map(node.get("config"))
        key = str(config.get("each_key") or "current")
        items = scope.translate((node.get("input") or {}).get("items"))
        inner = scope.child(key)
        each = [n for n in node.get("each_nodes") or [] if isinstance(n, Mapping)]
        body = list(self.block(each, inner))
        collected = ", ".join(f"'{n.get('id')}': {self.node_expr(str(n.get('id')), [])}" for n in each)
        setters = [str(n.get("id")) for n in each if n.get("type") == "LLM" and self.sets_variables(n)]
        # what each LLM node's builtin set_variable started from and ended with, per iteration
        pairs = [(i, f"steps.{i}__seed.output.variables", f"steps.{i}__vars.output.variables") for i in setters]
        tables = ", ".join(f"'{i}': " + "{'seed': " + seed + ", 'set': " + got + "}" for i, seed, got in pairs)
        extra = ", 'variables': {" + tables + "}" if setters else ""
        body.append(
            {
                "id": f"{nid}__iteration",
                "type": "transform",
                "expression": "{{ {'item': item, 'index': index, 'results': {" + collected + "}" + extra + "} }}",
            }
        )
        delay = config.get("delay_between")
        if isinstance(delay, int | float) and not isinstance(delay, bool) and delay > 0 and not config.get("parallel"):
            wait = {
                "id": f"{nid}__delay",
                "type": "wait",
                "duration": float(delay) / 1000,
                "condition": "{{ not isLast }}",
            }
            body.insert(len(body) - 1, wait)  # before the collector, whose output is the iteration's
        loop: dict[str, Any] = {"id": f"{nid}__loop", "type": "forEach", "items": items, "steps": body}
        if not config.get("parallel"):
            loop["maxConcurrency"] = 1
        out_steps = [
            loop,
            self._action(base, "foreach_result", {"items": items, "loop": tpl(f"steps.{nid}__loop.output")}),
        ]
        for n in each:
            if n.get("type") != "UPDATE_VARIABLE" or not isinstance(n.get("config"), Mapping):
                continue
            var = str(n["config"].get("variable_id"))
            uid = str(n.get("id"))
            cfg = {k: v for k, v in n["config"].items() if k not in ("variable_id", "type")}
            data = {
                "operation": str(n["config"].get("type", "update")),
                "current": "{{ " + scope.variables.get(var, "none") + " }}",
                "loop": tpl(f"steps.{nid}__loop.output"),
                "update": uid,
                "config": inner.translate(cfg),
            }
            fold_id = f"{nid}__{uid}"
            out_steps.append(self._action({"id": fold_id}, "fold", data))
            scope.variables[var] = f"steps.{fold_id}.output.new_value"
        out_steps.extend(self.fold_memory_and_tools(nid, each, setters, scope, inner))
        return out_steps

    def sets_variables(self, node: Mapping[str, Any]) -> bool:
        return "set_variable" in self.builtin_tools(node, as_map(node.get("config")))

    def fold_memory_and_tools(
        self, nid: str, each: list[Mapping[str, Any]], setters: list[str], scope: Scope, inner: Scope
    ) -> list[dict[str, Any]]:
        """After a FOR_EACH: each CONVERSATION_MEMORY node's operations and each LLM node's
        ``set_variable`` calls applied in item order (`nodes.fold_memory`, `nodes.fold_variables`),
        as UPDATE_VARIABLE's are (`ops.fold`)."""
        out: list[dict[str, Any]] = []
        loop = tpl(f"steps.{nid}__loop.output")
        for n in each:
            config = as_map(n.get("config"))
            var = str(config.get("variable_id") or "")
            if n.get("type") != "CONVERSATION_MEMORY" or not var:
                continue
            uid = str(n.get("id"))
            cfg = {k: v for k, v in config.items() if k not in ("variable_id", "operation")}
            data = {
                "operation": str(config.get("operation", "append")),
                "current": "{{ " + scope.variables.get(var, "none") + " }}",
                "loop": loop,
                "update": uid,
                "config": inner.translate(cfg),
            }
            out.append(self._action({"id": f"{nid}__{uid}"}, "fold_memory", data))
            scope.variables[var] = f"steps.{nid}__{uid}.output.messages"
        for uid in setters:
            values = {var: "{{ " + expr + " }}" for var, expr in scope.variables.items()}
            fold_id = f"{nid}__{uid}__vars"
            out.append(self._action({"id": fold_id}, "fold_variables", {"current": values, "loop": loop, "node": uid}))
            for var in list(scope.variables):
                scope.variables[var] = f"steps.{fold_id}.output.variables.{var}"
        return out

    def node_llm(self, node: Mapping[str, Any], nid: str, base: dict[str, Any], scope: Scope) -> list[dict[str, Any]]:
        config = dict(node.get("config") or {})
        provider = str(config.get("provider", "echo"))
        model: dict[str, Any] = {"provider": provider}
        if config.get("model"):
            model["id"] = str(config["model"])
        for src, dst in (("temperature", "temperature"), ("max_tokens", "maxTokens"), ("top_p", "topP")):
            if src in config:
                model[dst] = config[src]
        for key in ("responses", "pricing"):
            if key in config:
                model[key] = config[key]
        # extensions (docs/formats.md): base_url, api_key, max_retries, and provider_config (passed
        # to the provider's chat model: api_version, region_name...); grok's base URL is its default
        provider_config = dict(as_map(config.get("provider_config")))
        provider_config.update({k: config[k] for k in ("base_url", "api_key", "max_retries") if k in config})
        if "timeout" in config and isinstance(config["timeout"], int | float):
            provider_config["timeout"] = float(config["timeout"]) / 1000
        if provider_config:
            model["providerConfig"] = provider_config
        if as_map(config.get("tools", node.get("tools"))).get("tool_selection") == "manual":
            model["params"] = {"tool_choice": "required"}  # the model must call one of available_tools
        mapping = as_map(node.get("prompt_mapping"))
        texts: list[str] = []
        system: list[str] = []
        for m in node.get("messages") or []:
            if not isinstance(m, Mapping):
                continue
            text = str(m.get("text") or m.get("image_url") or m.get("image_path") or "")
            for k, v in mapping.items():
                text = text.replace("{{" + str(k) + "}}", str(v))
            (system if m.get("role") == "system" and "{{" not in text else texts).append(text)
        agent_name = f"{self.name}-{nid}".replace("_", "-")
        agent: dict[str, Any] = {"name": agent_name, "namespace": "openflow", "version": self.version, "model": model}
        toolset = self.mcp_toolset(node, config)
        if toolset:
            agent["toolset"] = toolset
        if system:
            agent["personality"] = {"systemPrompt": "\n".join(system)}
        builtin = self.builtin_tools(node, config)
        if builtin:
            toolset = [*toolset, *(f"connector:openflow/{t.split('_')[0]}@1.0.0" for t in builtin)]
            agent["toolset"] = toolset
        self.agents.append(_lmap(agent, _pos(node)))
        joined = "\n".join(texts)
        user = scope.translate(joined)
        if has_images(node):  # text and image parts, built at run time (images.py)
            data = {"messages": image_messages(node, scope.translate, mapping)}
            parts = self._action({"id": f"{nid}__parts"}, "message_parts", data)
            user = tpl(f"steps.{nid}__parts.output.parts")
        call = {**base, "type": "agent", "agent": f"agent:openflow/{agent_name}@{self.version}", "input": user}
        schema = as_map(node.get("output"))
        shaped = self._action(
            {"id": f"{nid}__out"}, "llm_output", {"content": tpl(f"steps.{nid}.output"), "schema": dict(schema)}
        )
        if has_images(node):
            call["needs"] = [f"{nid}__parts"]
            if not builtin:
                return [parts, call, shaped]
        if not builtin:
            return [call, shaped]
        values = {var: "{{ " + expr + " }}" for var, expr in scope.variables.items()}
        seed = self._action({"id": f"{nid}__seed"}, "seed_variables", {"node": nid, "values": values})
        call["needs"] = [*call.get("needs", []), f"{nid}__seed"]
        collect = {**self._action({"id": f"{nid}__vars"}, "collect_variables", {"node": nid}), "needs": [nid]}
        if "set_variable" in builtin:
            for var in list(scope.variables):
                scope.variables[var] = f"steps.{nid}__vars.output.variables.{var}"
        return [seed, *([parts] if has_images(node) else []), call, shaped, collect]

    def builtin_tools(self, node: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
        tools = as_map(config.get("tools", node.get("tools")))
        names = tools.get("builtin_tools", config.get("builtin_tools"))
        found = [t for t in BUILTIN_TOOLS if isinstance(names, list) and t in names]
        self.builtin.update(found)
        return found

    def mcp_toolset(self, node: Mapping[str, Any], config: Mapping[str, Any]) -> list[Any]:
        """The node's ``mcp_servers`` as MCP connectors (one per server, shared by name) and the
        agent's toolset entries, narrowed by ``tools``: ``mcp_servers`` picks servers,
        ``available_tools`` whitelists, ``filter`` blacklists, ``auto_discover: false`` exposes
        only ``available_tools``."""
        servers = config.get("mcp_servers", node.get("mcp_servers"))
        tools = config.get("tools", node.get("tools"))
        tools = as_map(tools)
        wanted = tools.get("mcp_servers")
        out: list[Any] = []
        for server in servers if isinstance(servers, list) else []:
            if not isinstance(server, Mapping) or not server.get("name"):
                continue
            name = str(server["name"])
            if isinstance(wanted, list) and name not in wanted:
                continue
            if name not in self.mcp:
                url = str(server.get("url", ""))
                mcp: dict[str, Any] = {
                    "transport": "sse" if url.rstrip("/").endswith("/sse") else "streamable-http",
                    "endpoint": url,
                }
                if isinstance(server.get("timeout"), int):
                    mcp["timeout"] = server["timeout"]
                if isinstance(server.get("retry_attempts"), int):
                    mcp["retry_attempts"] = server["retry_attempts"]
                conn: dict[str, Any] = {
                    "type": "connector",
                    "kind": "mcp-server",
                    "name": name,
                    "namespace": "openflow",
                    "version": "1.0.0",
                    "mcp": mcp,
                }
                if server.get("description"):
                    conn["description"] = str(server["description"])
                if isinstance(server.get("auth"), Mapping):
                    conn["auth"] = dict(server["auth"])
                self.mcp[name] = _lmap(conn, _pos(server))
            entry: dict[str, Any] = {"connector": f"connector:openflow/{name}@1.0.0"}
            available = tools.get("available_tools")
            if isinstance(available, list):
                entry["actions"] = [str(t) for t in available]
            elif tools.get("auto_discover") is False:
                entry["actions"] = []
            if isinstance(tools.get("filter"), list):
                entry["deny"] = [str(t) for t in tools["filter"]]
            out.append(entry if len(entry) > 1 else entry["connector"])
        return out

    def node_flow_call(
        self, node: Mapping[str, Any], nid: str, base: dict[str, Any], scope: Scope
    ) -> list[dict[str, Any]]:
        mapping = as_map(node.get("input_mapping"))
        if not mapping and isinstance(node.get("input"), Mapping):
            mapping = node["input"]
        flow_id = node.get("flow_id", as_map(node.get("config")).get("flow_id"))
        call = {
            **base,
            "id": f"{nid}__call",
            "type": "workflow",
            "workflow": str(flow_id),
            "input": scope.translate(dict(mapping)),
            "metadata": {"maxCallDepth": MAX_CALL_DEPTH},
        }
        selection = node.get("output_selection")
        keys = [str(k) for k in selection] if isinstance(selection, list) else []
        pick = self._action(
            {"id": nid}, "select_outputs", {"outputs": tpl(f"steps.{nid}__call.output"), "selection": keys}
        )
        return [call, pick]


SAFE = re.compile(r"[^A-Za-z0-9_-]")
