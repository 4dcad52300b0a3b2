"""The OpenFlow executor hooks as Python callbacks: pass ``FlowHooks(...)`` as ``callback=`` to
``execute``.

Each hook gets one context, a dict with the SDK's keys (``FlowHooks`` in the TypeScript SDK):

- ``before_node({node, flowId, event})`` before a node runs;
- ``after_node({node, flowId, executionTime, output, event})`` after it succeeded: ``output`` is
  what the node's id reads in the flow (an LLM node's parsed output, a CONDITION's
  ``{matched_branch, results}``...), ``executionTime`` in milliseconds;
- ``on_error({error, node, flowId, event})`` when it failed: ``error`` an `OWFError` (``.code``,
  ``.message``, ``.details``);
- ``on_complete({flowId, executionTime, outputs, nodeOutputs, event})`` when the run ends:
  ``outputs`` keyed by the flow's ``output`` ids, ``nodeOutputs`` every node's last output.

``node`` is the node's definition from the flow when ``FlowHooks(flow=...)`` is given (the flow
as a dict or its file), else ``{"id": node_id}``; ``flowId`` is the run id; ``event`` the
engine's event the hook was called on. Only the flow's nodes are reported: the helper steps the
conversion adds (ids with ``__``) are folded into their node: a node starts with its first
step (a CONDITION's test, before its branch nodes), an LLM node is done when its output is
parsed, a failing helper step is the node's error. ``after_node`` and ``on_error`` return
``"CONTINUE"`` (or None) or ``"STOP"``: STOP cancels the run (status ``canceled``; steps not
started never run, a step already on its way ends canceled and its hooks are not called). A
hook that raises is logged and ignored, as in the SDK.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from owf_magics.errors import OWFError

log = logging.getLogger(__name__)

Hook = Callable[[dict[str, Any]], Any]
#: The steps a node's conversion adds after the node's own step: its output is the node's output.
OUTPUT_SUFFIX = "__out"


def index_nodes(flow: Any) -> dict[str, dict[str, Any]]:
    """The node definitions of a flow (a mapping or a file), by id, loop and branch nodes included."""
    if isinstance(flow, str | os.PathLike):
        from owf_magics.errors import DiagnosticBag
        from owf_magics.manifest.loader import parse_path

        docs = parse_path(flow, bag=DiagnosticBag())
        flow = docs[0].data if docs else {}
    out: dict[str, dict[str, Any]] = {}

    def walk(nodes: Any) -> None:
        for n in nodes if isinstance(nodes, list) else []:
            if isinstance(n, Mapping) and isinstance(n.get("id"), str):
                out[n["id"]] = dict(n)
                walk(n.get("each_nodes"))
                branches = n.get("branches")
                for b in branches.values() if isinstance(branches, Mapping) else []:
                    walk(b.get("nodes") if isinstance(b, Mapping) else None)

    walk(flow.get("nodes") if isinstance(flow, Mapping) else None)
    return out


@dataclass
class FlowHooks:
    before_node: Hook | None = None
    after_node: Hook | None = None
    on_error: Hook | None = None
    on_complete: Hook | None = None
    flow: Any = None  # the flow (dict or file) whose node definitions the hooks receive
    stopped_at: str | None = None
    node_outputs: dict[str, Any] = field(default_factory=dict)
    _nodes: dict[str, dict[str, Any]] | None = field(default=None, repr=False)
    _pending: dict[str, float] = field(default_factory=dict, repr=False)  # LLM nodes awaiting __out
    _started: set[tuple[str, str]] = field(default_factory=set, repr=False)  # (iteration, node)

    def node(self, node_id: str) -> dict[str, Any]:
        if self._nodes is None:
            self._nodes = index_nodes(self.flow) if self.flow is not None else {}
        return dict(self._nodes.get(node_id) or {"id": node_id})

    def _call(self, hook: Hook | None, context: dict[str, Any]) -> Any:
        if hook is None:
            return None
        try:
            return hook(context)
        except Exception:  # as the SDK: a failing hook is logged, the flow goes on
            log.warning("OpenFlow hook %s failed", getattr(hook, "__name__", hook), exc_info=True)
            return None

    def __call__(self, event: dict[str, Any]) -> None:
        kind = str(event.get("type", ""))
        run_id = str(event.get("run_id") or (event.get("payload") or {}).get("run_id") or "")
        if kind.startswith("run.") and kind not in ("run.started", "run.resumed"):
            payload = event.get("payload") or {}
            context = {
                "flowId": run_id,
                "executionTime": (event.get("metadata") or {}).get("duration_ms"),
                "outputs": dict(payload.get("outputs") or {}),
                "nodeOutputs": dict(self.node_outputs),
                "event": event,
            }
            self._call(self.on_complete, context)
            return
        step = str(event.get("step_id") or "").rsplit(".", 1)[-1]
        if not step or self.stopped_at is not None:
            return
        if kind == "step.started":  # a node starts with its first step (a CONDITION's test...)
            started = (str(event.get("iteration") or ""), step.split("__", 1)[0])
            if started not in self._started:
                self._started.add(started)
                node_def = self.node(started[1])
                self._call(self.before_node, {"node": node_def, "flowId": run_id, "event": event})
            return
        node = step.split("__", 1)[0]
        helper = step == node + OUTPUT_SUFFIX
        if step != node and not helper and kind != "step.failed":
            return  # a helper step's completion: the node is not done yet
        base = {"node": self.node(node), "flowId": run_id, "event": event}
        decision: Any = None
        if kind == "step.execution.completed":
            took = float((event.get("execution") or {}).get("duration_ms") or 0.0)
            if event.get("step_type") == "agent" and not helper:  # an LLM node: done once parsed
                self._pending[node] = took
                return
            took += self._pending.pop(node, 0.0)
            output = (event.get("result") or {}).get("output")
            self.node_outputs[node] = output
            decision = self._call(self.after_node, {**base, "executionTime": took, "output": output})
        elif kind == "step.failed":
            self._pending.pop(node, None)
            err = event.get("error") or {}
            error = OWFError(
                str(err.get("message") or "node failed"),
                code=str(err.get("code") or "BACKEND_ERROR"),
                details=dict(err.get("details") or {}),
            )
            decision = self._call(self.on_error, {**base, "error": error})
        if str(decision).upper() == "STOP" and self.stopped_at is None:
            self.stopped_at = node
            task = asyncio.current_task()
            if task is not None:
                task.cancel()
