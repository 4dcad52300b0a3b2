"""The OpenFlow validator: every problem of a flow at once, each with the flow file's line.

Phases as the protocol orders them: structure (root fields, variables, nodes and their fields),
references and dependencies (unknown variables or nodes, forward references in sequential
blocks, cycles), providers and output schemas; then the complexity warning.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from owf_magics.errors import Diagnostic, DiagnosticBag
from owf_magics.formats.openflow.convert import PROVIDERS, VAR_TYPES, VECTOR_NODES, as_map, node_deps
from owf_magics.formats.openflow.custom import RESERVED_NAMESPACES, custom_function
from owf_magics.formats.openflow.nodes import MEMORY_OPERATIONS
from owf_magics.formats.openflow.ops import CONDITIONS, OPERATIONS
from owf_magics.formats.openflow.provider_rules import llm_tools, vector_provider
from owf_magics.formats.openflow.refs import refs_in
from owf_magics.manifest.loader import LSeq
from owf_magics.manifest.providers import known_chat_provider

NAME = re.compile(r"^[A-Za-z0-9_]+$")
SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
NODE_TYPES = (
    "LLM",
    "FOR_EACH",
    "CONDITION",
    "UPDATE_VARIABLE",
    "FLOW_CALL",
    "CONVERSATION_MEMORY",
    "TEXT_EMBEDDING",
    "VECTOR_INSERT",
    "VECTOR_SEARCH",
    "VECTOR_UPDATE",
    "VECTOR_DELETE",
    "DOCUMENT_SPLITTER",
)
#: node types this converter runs (all twelve)
SUPPORTED = NODE_TYPES
FORMATS = ("email", "url", "date", "uuid", "base64")
OUTPUT_TYPES = (*VAR_TYPES, "integer")


def _line(node: Any, key: str | None = None) -> int | None:
    if key is not None and hasattr(node, "key_pos") and key in node.key_pos:
        return int(node.key_pos[key][0])
    pos = getattr(node, "pos", None)
    return int(pos[0]) if pos else None


class FlowValidator:
    def __init__(self, flow: Mapping[str, Any], file: str, bag: DiagnosticBag) -> None:
        self.flow, self.file, self.bag = flow, file, bag
        self.count = 0

    def add(
        self,
        code: str,
        message: str,
        node: Any,
        key: str | None = None,
        step: str | None = None,
        hint: str | None = None,
        severity: str = "error",
    ) -> None:
        self.count += 1
        self.bag.add(
            Diagnostic(code, message, file=self.file, line=_line(node, key), step_id=step, hint=hint, severity=severity)  # type: ignore[arg-type]
        )

    def run(self) -> None:
        flow = self.flow
        self.root(flow)
        variables = self.variables(flow)
        nodes = flow.get("nodes")
        if not isinstance(nodes, list):
            self.add(
                "MISSING_REQUIRED_FIELD" if nodes is None else "INVALID_TYPE",
                "a flow needs 'nodes', an array of nodes",
                flow,
                "nodes",
            )
            return
        ids: dict[str, Any] = {}
        self.nodes(nodes, ids)
        self.references(nodes, set(variables), ids, [], top=True)
        total = len(ids)
        if total > 10:
            level = "high" if total > 20 else "medium"
            self.add(
                "COMPLEXITY",
                f"the flow has {total} nodes ({level} complexity)",
                flow,
                "nodes",
                hint="split it with FLOW_CALL",
                severity="warning",
            )

    def root(self, flow: Mapping[str, Any]) -> None:
        name = flow.get("name")
        if name is None:
            self.add("MISSING_REQUIRED_FIELD", "a flow needs a 'name'", flow)
        elif not isinstance(name, str):
            self.add("INVALID_TYPE", "'name' must be a string", flow, "name")
        elif not NAME.match(name):
            self.add("INVALID_FORMAT", f"flow name '{name}' must be letters, digits and underscores", flow, "name")
        version = flow.get("version")
        if version is None:
            self.add("MISSING_REQUIRED_FIELD", "a flow needs a 'version'", flow)
        elif not isinstance(version, str) or not SEMVER.match(version):
            self.add("INVALID_FORMAT", f"version {version!r} is not a semantic version (like 1.2.0)", flow, "version")
        for key in ("description", "author"):
            if key in flow and not isinstance(flow[key], str):
                self.add("INVALID_TYPE", f"'{key}' must be a string", flow, key)
        for key in ("variables", "input", "output", "tags"):
            if key in flow and not isinstance(flow[key], list):
                self.add("INVALID_TYPE", f"'{key}' must be an array", flow, key)
        timeout = flow.get("timeout")
        if timeout is not None:
            if not isinstance(timeout, int) or isinstance(timeout, bool):
                self.add("INVALID_TYPE", "'timeout' must be an integer (milliseconds)", flow, "timeout")
            elif not 10_000 <= timeout <= 3_600_000:
                self.add("INVALID_VALUE", f"timeout {timeout} ms is outside 10000-3600000", flow, "timeout")

    def variables(self, flow: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        raw = flow.get("variables")
        for v in raw if isinstance(raw, list) else []:
            if not isinstance(v, Mapping):
                self.add("INVALID_TYPE", "a variable must be an object", raw)
                continue
            vid = v.get("id")
            if not isinstance(vid, str) or not vid:
                self.add("MISSING_REQUIRED_FIELD", "a variable needs an 'id'", v)
                continue
            if not NAME.match(vid):
                self.add("INVALID_FORMAT", f"variable id '{vid}' must be letters, digits and underscores", v, "id")
            if vid in out:
                self.add("DUPLICATE_VARIABLE_ID", f"variable '{vid}' is declared twice", v, "id")
            out[vid] = v
            vtype = v.get("type", "string")
            if vtype not in VAR_TYPES:
                self.add("INVALID_TYPE", f"variable type {vtype!r} is not one of {', '.join(VAR_TYPES)}", v, "type")
            rules = v.get("validation")
            if rules is not None and not isinstance(rules, Mapping):
                self.add("INVALID_TYPE", "'validation' must be an object", v, "validation")
            elif isinstance(rules, Mapping):
                fmt = rules.get("format")
                if fmt is not None and fmt not in FORMATS:
                    self.add("INVALID_VALUE", f"format {fmt!r} is not one of {', '.join(FORMATS)}", rules, "format")
                for key in ("items", "properties"):  # JSON-Schema-like sub-schemas (engine/input_rules)
                    if key in rules and not isinstance(rules[key], Mapping):
                        self.add("INVALID_TYPE", f"validation '{key}' must be an object (a schema)", rules, key)
                listed = rules.get("required")
                if listed is not None and not (isinstance(listed, list) and all(isinstance(k, str) for k in listed)):
                    self.add("INVALID_TYPE", "validation 'required' must list property names", rules, "required")
                pattern = rules.get("pattern")
                if pattern is not None:
                    try:
                        re.compile(str(pattern))
                    except re.error:
                        self.add("INVALID_FORMAT", f"pattern {pattern!r} is not a regular expression", rules, "pattern")
        for key in ("input", "output"):
            listed = flow.get(key)
            for i, name in enumerate(listed if isinstance(listed, list) else []):
                if name not in out:
                    self.bag.add(
                        Diagnostic(
                            "INVALID_VARIABLE_REFERENCE",
                            f"{key} names '{name}', which is not a declared variable",
                            file=self.file,
                            line=int(listed.item_pos[i][0]) if isinstance(listed, LSeq) else _line(flow, key),
                        )
                    )
        return out

    def nodes(self, nodes: list[Any], ids: dict[str, Any]) -> None:
        for n in nodes:
            if not isinstance(n, Mapping):
                self.add("INVALID_TYPE", "a node must be an object", nodes)
                continue
            nid = n.get("id")
            if not isinstance(nid, str) or not nid:
                self.add("MISSING_REQUIRED_FIELD", "a node needs an 'id'", n)
            elif nid in ids:
                self.add("DUPLICATE_NODE_ID", f"node id '{nid}' is used twice", n, "id", step=nid)
            else:
                ids[nid] = n
            ntype = n.get("type")
            step = nid if isinstance(nid, str) else None
            if ntype is None:
                self.add("MISSING_REQUIRED_FIELD", "a node needs a 'type'", n, step=step)
                continue
            if not isinstance(ntype, str) or (ntype not in NODE_TYPES and ":" not in ntype):
                self.add(
                    "INVALID_NODE_TYPE",
                    f"node type {ntype!r} is not an OpenFlow node type",
                    n,
                    "type",
                    step=step,
                    hint=", ".join(NODE_TYPES),
                )
                continue
            if ":" in ntype and custom_function(ntype) is not None:
                continue
            if ":" in ntype:
                ns = ntype.split(":", 1)[0]
                hint = "namespaces core, std and openflow are reserved" if ns in RESERVED_NAMESPACES else None
                self.add(
                    "INVALID_NODE_TYPE",
                    f"custom node type {ntype!r} is not registered",
                    n,
                    "type",
                    step=step,
                    hint=hint,
                )
                continue
            if ntype not in SUPPORTED:
                self.add(
                    "INVALID_NODE_TYPE", f"node type {ntype} is not supported by this engine yet", n, "type", step=step
                )
                continue
            if ntype in VECTOR_NODES:
                self.node_vector(n, step)
            else:
                getattr(self, f"node_{ntype.lower()}")(n, step)
            self.nodes(list(n.get("each_nodes") or []) if isinstance(n.get("each_nodes"), list) else [], ids)
            branches = n.get("branches")
            if isinstance(branches, Mapping):
                for b in branches.values():
                    if isinstance(b, Mapping) and isinstance(b.get("nodes"), list):
                        self.nodes(b["nodes"], ids)

    def _need(self, n: Mapping[str, Any], step: str | None, *path: str) -> Any:
        cur: Any = n
        for i, key in enumerate(path):
            if not isinstance(cur, Mapping) or key not in cur:
                where = cur if isinstance(cur, Mapping) else n
                self.add("MISSING_REQUIRED_FIELD", f"{n.get('type')} node needs '{'.'.join(path)}'", where, step=step)
                return None
            cur = cur[key]
            del i
        return cur

    def node_llm(self, n: Mapping[str, Any], step: str | None) -> None:
        config = n.get("config")
        if not isinstance(config, Mapping) or "provider" not in config:
            self.add(
                "MISSING_PROVIDER_CONFIG",
                "an LLM node needs config.provider and config.model",
                n,
                "config" if "config" in n else None,
                step=step,
            )
        else:
            if not isinstance(config["provider"], str) or not known_chat_provider(config["provider"]):
                self.add(
                    "UNKNOWN_PROVIDER",
                    f"provider {config['provider']!r} is not one LangChain's init_chat_model knows, nor one "
                    f"of {', '.join(PROVIDERS)}",
                    config,
                    "provider",
                    step=step,
                )
            if "model" not in config and config["provider"] not in ("echo", "scripted"):
                self.add("MISSING_PROVIDER_CONFIG", "an LLM node needs config.model", config, step=step)
        for code, message, where, key in llm_tools(n):
            self.add(code, message, where, key, step=step)
        messages = n.get("messages")
        if not isinstance(messages, list) or not messages:
            self.add(
                "MISSING_REQUIRED_FIELD",
                "an LLM node needs a non-empty 'messages' array",
                n,
                "messages" if "messages" in n else None,
                step=step,
            )
        output = n.get("output")
        if output is None:
            self.add("MISSING_REQUIRED_FIELD", "an LLM node needs an 'output' schema", n, step=step)
        elif not isinstance(output, Mapping):
            self.add(
                "INVALID_OUTPUT_SCHEMA",
                "'output' must map property names to {type, description}",
                n,
                "output",
                step=step,
            )
        else:
            for key, prop in output.items():
                if not isinstance(prop, Mapping) or prop.get("type") not in OUTPUT_TYPES:
                    self.add(
                        "INVALID_OUTPUT_SCHEMA",
                        f"output property '{key}' needs a type of {', '.join(VAR_TYPES)}",
                        output,
                        key,
                        step=step,
                    )

    def node_for_each(self, n: Mapping[str, Any], step: str | None) -> None:
        self._need(n, step, "config", "each_key")
        self._need(n, step, "input", "items")
        if not isinstance(n.get("each_nodes"), list):
            self.add("MISSING_REQUIRED_FIELD", "FOR_EACH node needs 'each_nodes' (an array)", n, step=step)

    def node_condition(self, n: Mapping[str, Any], step: str | None) -> None:
        self._need(n, step, "input", "switch_value")
        branches = n.get("branches")
        if not isinstance(branches, Mapping):
            self.add("MISSING_REQUIRED_FIELD", "CONDITION node needs 'branches'", n, step=step)
            return
        for name, b in branches.items():
            if not isinstance(b, Mapping):
                self.add("INVALID_TYPE", f"branch '{name}' must be an object", branches, name, step=step)
                continue
            op = b.get("condition")
            if name != "default" and op not in CONDITIONS:
                self.add(
                    "INVALID_VALUE",
                    f"branch '{name}' condition {op!r} is not one of {', '.join(CONDITIONS)}",
                    b,
                    "condition" if "condition" in b else None,
                    step=step,
                )
        if "default" in branches and list(branches)[-1] != "default":
            self.add("INVALID_VALUE", "the 'default' branch must be the last one", branches, "default", step=step)

    def node_update_variable(self, n: Mapping[str, Any], step: str | None) -> None:
        config = self._need(n, step, "config", "variable_id")
        del config
        cfg = as_map(n.get("config"))
        op = cfg.get("type")
        if op not in OPERATIONS:
            self.add(
                "INVALID_VALUE",
                f"operation {op!r} is not one of {', '.join(OPERATIONS)}",
                cfg,
                "type" if "type" in cfg else None,
                step=step,
            )
        if "value" not in n:
            self.add("MISSING_REQUIRED_FIELD", "UPDATE_VARIABLE node needs 'value'", n, step=step)

    def node_vector(self, n: Mapping[str, Any], step: str | None) -> None:
        self._need(n, step, "config", "provider")
        if n.get("type") != "TEXT_EMBEDDING":
            self._need(n, step, "config", "index_name")
        self._need(n, step, "input")
        for code, message, where, key in vector_provider(n):
            self.add(code, message, where, key, step=step)

    def node_document_splitter(self, n: Mapping[str, Any], step: str | None) -> None:
        if "document" not in n and "text" not in as_map(n.get("input")):
            self.add("MISSING_REQUIRED_FIELD", "DOCUMENT_SPLITTER node needs 'document' or 'input.text'", n, step=step)

    def node_conversation_memory(self, n: Mapping[str, Any], step: str | None) -> None:
        self._need(n, step, "config", "variable_id")
        cfg = as_map(n.get("config"))
        if "operation" in cfg and cfg["operation"] not in MEMORY_OPERATIONS:
            self.add(
                "INVALID_VALUE",
                f"operation {cfg['operation']!r} is not one of {', '.join(MEMORY_OPERATIONS)}",
                cfg,
                "operation",
                step=step,
            )

    def node_flow_call(self, n: Mapping[str, Any], step: str | None) -> None:
        if "flow_id" not in n and "flow_id" not in as_map(n.get("config")):  # the SDK reads config.flow_id
            self.add("MISSING_REQUIRED_FIELD", "FLOW_CALL node needs 'flow_id'", n, step=step)
        selection = n.get("output_selection")
        if selection is not None and not (isinstance(selection, list) and all(isinstance(k, str) for k in selection)):
            self.add(
                "INVALID_TYPE", "output_selection must be an array of output ids", n, "output_selection", step=step
            )

    def references(
        self, nodes: list[Any], variables: set[str], ids: dict[str, Any], loop_keys: list[str], top: bool
    ) -> None:
        seen: set[str] = set()
        sibling_ids = {str(n.get("id")) for n in nodes if isinstance(n, Mapping)}
        for n in nodes:
            if not isinstance(n, Mapping):
                continue
            nid = str(n.get("id"))
            own = {k: v for k, v in n.items() if k not in ("each_nodes", "branches")}
            for name, parts in refs_in(own):
                bare = name.lstrip("@")
                if loop_keys and bare in (loop_keys[-1], f"{loop_keys[-1]}_index"):
                    continue
                if name.startswith("@") or (bare in variables and bare not in ids):
                    if bare not in variables:
                        self.add(
                            "INVALID_VARIABLE_REFERENCE", f"'{{{{{name}}}}}' names no declared variable", n, step=nid
                        )
                    continue
                if bare not in ids:
                    self.add("MISSING_DEPENDENCY", f"'{{{{{name}}}}}' names no node of the flow", n, step=nid)
                    continue
                if not top and bare in sibling_ids and bare not in seen:
                    self.add(
                        "FORWARD_REFERENCE",
                        f"node '{nid}' reads '{bare}', which runs after it in the same block",
                        n,
                        step=nid,
                    )
                    continue
                target = ids[bare]
                schema = target.get("output") if target.get("type") == "LLM" else None
                if isinstance(schema, Mapping) and parts:
                    prop = parts[1] if parts[0] == "output" and "output" not in schema and len(parts) > 1 else parts[0]
                    if parts != ["output"] and prop not in schema:
                        self.add(
                            "MISSING_OUTPUT_PROPERTY",
                            f"'{bare}' has no output property '{prop}'",
                            n,
                            step=nid,
                            hint=f"it declares {', '.join(schema) or 'none'}",
                        )
            seen.add(nid)
            if isinstance(n.get("each_nodes"), list):
                key = as_map(n.get("config")).get("each_key")
                self.references(n["each_nodes"], variables, ids, [*loop_keys, str(key or "current")], top=False)
            if isinstance(n.get("branches"), Mapping):
                for b in n["branches"].values():
                    if isinstance(b, Mapping) and isinstance(b.get("nodes"), list):
                        self.references(b["nodes"], variables, ids, loop_keys, top=False)
        if top:
            self.cycles([n for n in nodes if isinstance(n, Mapping)])

    def cycles(self, nodes: list[Mapping[str, Any]]) -> None:
        ids = {str(n.get("id")) for n in nodes}
        deps = {str(n.get("id")): node_deps(n, ids) for n in nodes}
        state: dict[str, int] = {}
        by_id = {str(n.get("id")): n for n in nodes}

        def visit(u: str, stack: list[str]) -> None:
            state[u] = 1
            for v in sorted(deps.get(u, ())):
                if state.get(v) == 1:
                    cycle = [*stack[stack.index(v) :], v] if v in stack else [u, v]
                    self.add(
                        "CIRCULAR_DEPENDENCY", f"nodes depend on each other: {' -> '.join(cycle)}", by_id[v], step=v
                    )
                elif v not in state:
                    visit(v, [*stack, v])
            state[u] = 2

        for n in nodes:
            nid = str(n.get("id"))
            if nid not in state:
                visit(nid, [nid])


def validate_flow(flow: Mapping[str, Any], file: str, bag: DiagnosticBag) -> None:
    FlowValidator(flow, file, bag).run()
