"""An AgentFlow `Spec` as OpenWorkflow manifests: one workflow, its agents and one connector.

Each node becomes one step with the node's id, so traces and ``nodes_executed`` name the nodes:
``input`` and ``aggregator`` are transforms whose output is the whole state; ``llm`` (and an
``llm`` router, the classifier) is an agent step; ``router``, ``image`` and ``db`` are actions of
the spec's connector (``router``, ``image`` and ``sql`` handler kinds). A queue is an action step
``queue__<id>`` (``queue`` handler kind) between its two nodes. The state after a node is a
template expression over the steps that ran (`after`), so fan-out and joins merge the branches
that ran, in edge order. Every generated node carries the source node's line.
"""

# ruff: noqa: UP031  # templates are built with %-formatting: f-strings would double every Jinja brace
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from owf_magics.formats.agentflow.spec import Spec, source_id
from owf_magics.manifest.loader import LMap, LSeq, Pos

#: The GraphState keys of AgentFlow Core, with their starting values.
GRAPH_STATE: dict[str, Any] = {
    "user_input": "",
    "intent": None,
    "text_result": None,
    "image_result": None,
    "db_result": None,
    "final_output": None,
    "metadata": {},
}
#: the GraphState key each node type writes unless its ``output_key`` names another
DEFAULT_KEY = {"llm": "text_result", "image": "image_result", "db": "db_result", "aggregator": "final_output"}
#: what an aggregator without ``source_keys`` collects: final_output[name] = state[key]
AGGREGATE = (("text", "text_result"), ("image", "image_result"), ("db", "db_result"))
#: what an edge from a router into a node of this type means, when the edge has no condition
IMPLIED_INTENT = {"llm": "text", "image": "image"}
DEFAULT_RULES = ({"prefix": "img:", "intent": "image"},)
#: router settings read from ``metadata`` or ``metadata.config``
ROUTER_KEYS = ("strategy", "routes", "rules", "default_intent", "input_key", "intents")
_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def lit(value: Any) -> str:
    """A Python/JSON value as a Jinja literal (strings quoted, None as none)."""
    return json.dumps(value).replace("null", "none").replace("true", "true").replace("false", "false")


def positioned(data: Mapping[str, Any], pos: Pos | None, key_pos: Mapping[str, Pos] | None = None) -> LMap:
    """An LMap at `pos` whose keys sit at `key_pos` (or at `pos`)."""
    out = LMap(data, pos=pos)
    if pos is not None:
        out.key_pos = {k: (key_pos or {}).get(k, pos) for k in data}
    return out


class Builder:
    """Turns one checked `Spec` into the manifests of one load."""

    def __init__(self, spec: Spec, initial_keys: list[str]) -> None:
        self.spec = spec
        extra = [str(self.output_key(n)) for n in spec.nodes if self.ntype(n) in DEFAULT_KEY]
        self.state_keys = list(dict.fromkeys([*GRAPH_STATE, *initial_keys, *extra]))
        self.preds: dict[str, list[str]] = {n: [] for n in spec.nodes}
        self.incoming: dict[str, list[tuple[str, str | None, LMap]]] = {n: [] for n in spec.nodes}
        for src, dst, cond, edge in spec.edges:
            if src not in self.preds[dst]:
                self.preds[dst].append(src)
            self.incoming[dst].append((src, cond, edge))
        self.connector = f"agentflow-{spec.name}"
        self._after: dict[str, str] = {}

    # -- state expressions ---------------------------------------------------------------------
    def ntype(self, nid: str) -> str:
        return str(self.spec.nodes[nid]["type"])

    def config(self, nid: str) -> Mapping[str, Any]:
        meta = self.spec.nodes[nid].get("metadata") or {}
        cfg = dict(meta.get("config") or {})
        for key in ROUTER_KEYS + ("prompt_template", "system_prompt", "query", "params", "output_key", "source_keys"):
            if key in meta and key not in cfg:
                cfg[key] = meta[key]
        return cfg

    def output_key(self, nid: str) -> str:
        """The state key a node writes: AgentFlow's ``output_key``, else its type's GraphState key."""
        return str(self.config(nid).get("output_key") or DEFAULT_KEY[self.ntype(nid)])

    def ran(self, nid: str) -> str:
        return f"(steps[{lit(nid)}].status == 'success')"

    def before(self, nid: str) -> str:
        """The state a node starts from: the initial state, or the merge of its predecessors'."""
        if nid == self.spec.start or not self.preds[nid]:
            defaults = "{" + ", ".join(f"{lit(k)}: {lit(v)}" for k, v in GRAPH_STATE.items()) + "}"
            return f"dict({defaults}, **inputs)"
        parts = [f"({self.after(p)} if {self.ran(p)} else {{}})" for p in self.preds[nid]]
        expr = parts[0]
        for part in parts[1:]:
            expr = f"dict({expr}, **{_set(part)})"
        return expr if len(parts) > 1 else f"dict({expr})"

    def after(self, nid: str) -> str:
        """The state after a node, as a template expression over the steps' views."""
        hit = self._after.get(nid)
        if hit is not None:
            return hit
        kind = self.ntype(nid)
        if kind in ("input", "aggregator"):
            expr = f"steps[{lit(nid)}].output.result"
        elif kind == "router" and not self.classifier(nid):
            expr = f"dict({self.before(nid)}, intent=steps[{lit(nid)}].output.intent)"
        elif kind == "router":
            answer = f"(steps[{lit(nid)}].output|string|trim|lower)"
            intents = self.intents(nid)
            default = self.config(nid).get("default_intent", intents[-1] if intents else None)
            expr = f"dict({self.before(nid)}, intent=({answer} if {answer} in {lit(intents)} else {lit(default)}))"
        elif kind in ("llm", "image"):
            expr = f"dict({self.before(nid)}, **{{{lit(self.output_key(nid))}: steps[{lit(nid)}].output}})"
        else:  # db
            expr = f"dict({self.before(nid)}, **{{{lit(self.output_key(nid))}: steps[{lit(nid)}].output.rows}})"
        self._after[nid] = expr
        return expr

    def fill(self, text: str, nid: str) -> str:
        """AgentFlow's ``{user_input}`` prompt fields as templates over the node's starting state."""
        before = self.before(nid)
        return _FIELD.sub(lambda m: "{{ (%s).get(%s) }}" % (before, lit(m.group(1))), text)

    # -- conditions ----------------------------------------------------------------------------
    def edge_active(self, src: str, dst: str, cond: str | None, edge: Mapping[str, Any]) -> str:
        """When the edge src -> dst is taken: src ran, and (from a router) the intent leads to dst."""
        intent = f"({self.after(src)}).get('intent')"
        if cond is not None and cond != "intent":
            return f"({self.ran(src)} and {intent} == {lit(cond)})"
        targets = edge["to"] if isinstance(edge["to"], list) else [edge["to"]]
        if self.ntype(src) != "router" or self.strategy(src) == "default" or (len(targets) < 2 and cond is None):
            return self.ran(src)
        known = self.intents(src)
        mine = [i for i in known if self.route_target(src, i, targets) == dst]
        test = f"{intent} in {lit(mine)}"
        if dst == targets[0]:  # an intent nobody expects goes to the first target, as AgentFlow does
            test = f"({test} or {intent} not in {lit(known)})"
        return f"({self.ran(src)} and {test})"

    def route_target(self, src: str, intent: str, targets: list[str]) -> str:
        """AgentFlow's routing: a route's target_node, a target named like the intent, a target whose
        name contains it, the node type the intent implies (text: llm, image: image), else the first."""
        for r in self.config(src).get("routes") or ():
            if (
                isinstance(r, Mapping)
                and r.get("intent") == intent
                and (r.get("target_node") or r.get("to")) in targets
            ):
                return str(r.get("target_node") or r.get("to"))
        low = str(intent).lower()
        for test in (
            lambda t: t.lower() == low,
            lambda t: bool(low) and low in t.lower(),
            lambda t: IMPLIED_INTENT.get(self.ntype(t)) == low,
        ):
            hit = next((t for t in targets if test(t)), None)
            if hit is not None:
                return hit
        return targets[0]

    def condition(self, nid: str) -> str | None:
        if nid == self.spec.start or not self.incoming[nid]:
            return None
        return "{{ " + " or ".join(self.edge_active(s, nid, c, e) for s, c, e in self.incoming[nid]) + " }}"

    # -- nodes ---------------------------------------------------------------------------------
    def strategy(self, nid: str) -> str:
        """prefix (the seed's rule, the default), keyword, pattern, rules, llm or default."""
        cfg = self.config(nid)
        return str(cfg.get("strategy") or ("llm" if source_id(self.spec.nodes[nid]) else "prefix"))

    def classifier(self, nid: str) -> bool:
        return self.ntype(nid) == "router" and self.strategy(nid) == "llm"

    def intents(self, nid: str) -> list[str]:
        """Every intent the router can set (routes, rules, classifier intents, default_intent)."""
        cfg = self.config(nid)
        found: list[Any] = []
        if self.strategy(nid) == "prefix":
            rules = cfg.get("rules") or DEFAULT_RULES
            found += list(rules.values()) if isinstance(rules, Mapping) else [r.get("intent") for r in rules]
            found.append(cfg.get("default_intent", "text"))
        else:
            found += list(cfg.get("intents") or ())
            found += [r.get("intent") for r in cfg.get("routes") or () if isinstance(r, Mapping)]
            if not found:  # a classifier told nothing: the intents its edges and targets imply
                found += sorted({c for s, _, c, _ in self.spec.edges if s == nid and c and c != "intent"})
                found += sorted(
                    {
                        IMPLIED_INTENT[self.ntype(d)]
                        for s, d, _, _ in self.spec.edges
                        if s == nid and self.ntype(d) in IMPLIED_INTENT
                    }
                )
            found.append(cfg.get("default_intent"))
        return list(dict.fromkeys(str(i) for i in found if i is not None))

    def step(self, nid: str) -> tuple[LMap, list[LMap], list[LMap]]:
        """The node's step, plus the agents and connector actions it needs."""
        node = self.spec.nodes[nid]
        kind = self.ntype(nid)
        body: dict[str, Any] = {"id": nid}
        agents: list[LMap] = []
        actions: list[LMap] = []
        before = self.before(nid)
        if kind == "input":
            body |= {"type": "transform", "expression": "{{ %s }}" % before}
        elif kind == "aggregator":
            keys = self.config(nid).get("source_keys")
            pairs = [(str(k), str(k)) for k in keys] if isinstance(keys, list) else list(AGGREGATE)
            final = ", ".join(f"{lit(k)}: ({before}).get({lit(s)})" for k, s in pairs)
            out = lit(self.output_key(nid))
            body |= {"type": "transform", "expression": "{{ dict(%s, **{%s: {%s}}) }}" % (before, out, final)}
        elif kind == "router" and not self.classifier(nid):
            cfg = self.config(nid)
            handler = {k: cfg[k] for k in ROUTER_KEYS if k in cfg and k not in ("input_key", "intents")}
            handler["strategy"] = self.strategy(nid)
            actions.append(positioned({"name": nid, "handler": {"router": handler}}, node.pos))
            text = "{{ (%s).get(%s) }}" % (before, lit(cfg.get("input_key", "user_input")))
            body |= {"type": "action", "connector": self.connector, "action": nid, "input": {"text": text}}
        elif kind in ("llm", "router"):
            agent = self.agent(nid)
            agents.append(agent)
            if kind == "router":
                prompt = (
                    f"Classify the request into one of: {', '.join(self.intents(nid))}. Answer with that one word.\n"
                    "{{ (%s).get('user_input') }}" % before
                )
            else:
                prompt = self.fill(
                    str(self.config(nid).get("prompt_template") or self.config(nid).get("prompt") or "{user_input}"),
                    nid,
                )
            body |= {"type": "agent", "agent": agent["name"], "input": prompt}
        elif kind == "image":
            cfg = self.config(nid)
            # only what the image handler reads: an api_key in the source stays out of the manifest
            src = {k: v for k, v in self.source_config(nid).items() if k in ("provider", "model", "model_name", "size")}
            src.update({k: v for k, v in cfg.items() if k in ("provider", "model", "size")})
            src.setdefault("provider", "offline")
            actions.append(positioned({"name": nid, "handler": {"image": src}}, node.pos))
            prompt = self.fill(str(cfg.get("prompt_template") or cfg.get("prompt") or "{user_input}"), nid)
            body |= {"type": "action", "connector": self.connector, "action": nid, "input": {"prompt": prompt}}
        else:  # db
            cfg = self.config(nid)
            src = self.source_config(nid)
            handler = {k: v for k, v in src.items() if k in ("database", "connection_string", "driver")}
            if cfg.get("query") is not None:
                handler["query"] = cfg["query"]
            actions.append(positioned({"name": nid, "handler": {"sql": handler}}, node.pos))
            data: dict[str, Any] = {}
            if cfg.get("allow_state_query"):
                data["query"] = "{{ (%s).get('db_query') }}" % before
            params = cfg.get("params")
            data["params"] = (
                self.params(params, nid) if params is not None else "{{ (%s).get('db_params') or [] }}" % before
            )
            body |= {"type": "action", "connector": self.connector, "action": nid, "input": data}
        cond = self.condition(nid)
        if cond is not None:
            body["condition"] = cond
        needs = list(self.preds[nid]) + [f"queue__{q['id']}" for q in self.spec.queues if q["to"] == nid]
        if needs:
            body["needs"] = needs
        key_pos = dict(node.key_pos)
        if self.incoming[nid]:
            edge = self.incoming[nid][0][2]
            key_pos["condition"] = edge.key_pos.get("condition", edge.pos) if edge.pos else node.pos  # type: ignore[assignment]
        return positioned(body, node.pos, key_pos), agents, actions

    def params(self, value: Any, nid: str) -> Any:
        if isinstance(value, str):
            return self.fill(value, nid)
        if isinstance(value, list):
            return [self.params(v, nid) for v in value]
        if isinstance(value, Mapping):
            return {k: self.params(v, nid) for k, v in value.items()}
        return value

    def source_config(self, nid: str) -> dict[str, Any]:
        sid = source_id(self.spec.nodes[nid])
        src: Mapping[str, Any] = self.spec.sources.get(sid) or {} if sid else {}
        return dict(src.get("config") or {})

    def agent(self, nid: str) -> LMap:
        cfg = self.source_config(nid)
        node_cfg = self.config(nid)
        model: dict[str, Any] = {"provider": cfg.get("provider", "echo")}
        if cfg.get("model_name") or cfg.get("model"):
            model["id"] = cfg.get("model_name") or cfg.get("model")
        for key in ("responses", "pricing", "temperature"):
            if key in cfg:
                model[key] = cfg[key]
        # an OpenAI-compatible endpoint and its key (a source stored through the service's /sources)
        provider_config = {k: cfg[k] for k in ("base_url", "api_key", "max_retries", "timeout") if k in cfg}
        if provider_config:
            model["providerConfig"] = provider_config
        body: dict[str, Any] = {"name": f"agentflow-{self.spec.name}-{nid}", "model": model}
        system = node_cfg.get("system_prompt")
        if system:
            body["personality"] = {"systemPrompt": str(system)}
        return positioned(body, self.spec.nodes[nid].pos)

    def queue_step(self, q: LMap) -> tuple[LMap, LMap]:
        qid, src, dst = str(q["id"]), str(q["from"]), str(q["to"])
        ways = [(c, e) for s, c, e in self.incoming[dst] if s == src]
        active = " or ".join(self.edge_active(src, dst, c, e) for c, e in ways) or self.ran(src)
        handler: dict[str, Any] = {
            "id": qid,
            "key": f"{self.spec.name}/{qid}",
            "bandwidth": dict(q.get("bandwidth") or {}),
            "on_limit": q.get("on_limit", "wait"),
        }
        if q.get("subqueues"):
            handler["subqueues"] = [dict(s) for s in q["subqueues"]]
        action = positioned({"name": f"queue__{qid}", "handler": {"queue": handler}}, q.pos)
        meta = f"(({self.after(src)}).get('metadata') or {{}})"
        step = positioned(
            {
                "id": f"queue__{qid}",
                "type": "action",
                "connector": self.connector,
                "action": f"queue__{qid}",
                "needs": [src],
                "condition": "{{ %s }}" % active,
                "input": {
                    "subqueue": "{{ %s.get('subqueue') or '' }}" % meta,
                    "tokens": "{{ %s.get('tokens') or 0 }}" % meta,
                },
            },
            q.pos,
            q.key_pos,
        )
        return step, action

    def final_state(self) -> str:
        sinks = [n for n in self.spec.nodes if not any(e[0] == n for e in self.spec.edges)]
        parts = [f"({self.after(n)} if {self.ran(n)} else {{}})" for n in sinks]
        expr = parts[0] if parts else "{}"
        for part in parts[1:]:
            expr = f"dict({expr}, **{_set(part)})"
        return expr


def build(spec: Spec, root: LMap) -> LMap:
    """The OpenWorkflow file-form document for a checked spec (at the spec's positions)."""
    initial = root.get("initial_state")
    builder = Builder(spec, list(initial) if isinstance(initial, Mapping) else [])
    steps = LSeq(pos=getattr(root.get("nodes"), "pos", root.pos))
    agents = LSeq(pos=root.pos)
    actions = LSeq(pos=root.pos)
    order = _topological(spec)
    for nid in order:
        for q in spec.queues:
            if q["to"] == nid:
                qstep, qaction = builder.queue_step(q)
                steps.append(qstep)
                steps.item_pos.append(q.pos)  # type: ignore[arg-type]
                actions.append(qaction)
        step, new_agents, new_actions = builder.step(nid)
        steps.append(step)
        steps.item_pos.append(spec.nodes[nid].pos)  # type: ignore[arg-type]
        agents.extend(new_agents)
        actions.extend(new_actions)
    final = builder.final_state()
    inputs: dict[str, Any] = {}
    for key in builder.state_keys:
        default = (
            (initial or {}).get(key, GRAPH_STATE.get(key)) if isinstance(initial, Mapping) else GRAPH_STATE.get(key)
        )
        inputs[key] = {"default": default} if default is not None else {}
    outputs = {k: {"value": "{{ (%s).get(%s) }}" % (final, lit(k))} for k in builder.state_keys}
    wf = positioned(
        {
            "name": spec.name,
            "version": str(root.get("version") or "1.0.0"),
            "description": str(root.get("description") or f"AgentFlow spec {spec.name}"),
            "inputs": inputs,
            "steps": steps,
            "outputs": outputs,
            "metadata": {"format": "agentflow", "start_node": spec.start},
        },
        root.pos,
        root.key_pos,
    )
    doc: dict[str, Any] = {"workflows": LSeq([wf], pos=root.pos)}
    if agents:
        doc["agents"] = agents
    if actions:
        doc["connectors"] = LSeq(
            [
                positioned(
                    {"name": builder.connector, "version": "1.0.0", "kind": "custom", "actions": actions}, root.pos
                )
            ],
            pos=root.pos,
        )
    return positioned(doc, root.pos)


def _set(expr: str) -> str:
    """The keys of a branch's state that hold a value: a join never erases with a branch's None."""
    return f"dict({expr}|items|rejectattr('1', 'none'))"


def _topological(spec: Spec) -> list[str]:
    order: list[str] = []
    seen: set[str] = set()
    after: dict[str, list[str]] = {n: [] for n in spec.nodes}
    for src, dst, _, _ in spec.edges:
        after[src].append(dst)
    indeg = dict.fromkeys(spec.nodes, 0)
    for _, dst, _, _ in spec.edges:
        indeg[dst] += 1
    ready = [n for n in spec.nodes if indeg[n] == 0]
    ready.sort(key=lambda n: n != spec.start)
    while ready:
        n = ready.pop(0)
        if n in seen:
            continue
        seen.add(n)
        order.append(n)
        for m in after[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    return order
