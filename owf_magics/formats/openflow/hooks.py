"""The OpenFlow executor hooks as Python callbacks: pass ``FlowHooks(...)`` as ``callback=`` to
``execute``. ``before_node(node_id, event)``, ``after_node(node_id, event)`` and
``on_error(node_id, event)`` are called for the flow's nodes (steps whose id has no ``__``: the
generated helper steps are not nodes), ``on_complete(event)`` with the run's final event.
``after_node`` and ``on_error`` return ``"CONTINUE"`` (or None) or ``"STOP"``: STOP cancels the
run (status ``canceled``; steps not started never run, a step already on its way ends canceled
and its hooks are not called).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

NodeHook = Callable[[str, dict[str, Any]], Any]


@dataclass
class FlowHooks:
    before_node: NodeHook | None = None
    after_node: NodeHook | None = None
    on_error: NodeHook | None = None
    on_complete: Callable[[dict[str, Any]], Any] | None = None
    stopped_at: str | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        kind = str(event.get("type", ""))
        step = str(event.get("step_id") or "")
        node = step.rsplit(".", 1)[-1]
        if kind.startswith("run.") and kind not in ("run.started", "run.resumed"):
            if self.on_complete is not None:
                self.on_complete(event)
            return
        if not node or "__" in node or self.stopped_at is not None:
            return
        decision: Any = None
        if kind == "step.started" and self.before_node is not None:
            self.before_node(node, event)
        elif kind == "step.execution.completed" and self.after_node is not None:
            decision = self.after_node(node, event)
        elif kind == "step.failed" and self.on_error is not None:
            decision = self.on_error(node, event)
        if str(decision).upper() == "STOP" and self.stopped_at is None:
            self.stopped_at = node
            task = asyncio.current_task()
            if task is not None:
                task.cancel()
