"""What the service answers, as JSON: a run's result and record, a workflow with its plan and its
graph as mermaid text, and pending requests."""

from __future__ import annotations

from typing import Any

from owf_magics.api import Workflow
from owf_magics.service.errors import diagnostic, jsonable


def pending_view(request: Any) -> dict[str, Any]:
    """One open request (an approval, an event or a time the run waits for)."""
    return {
        "id": request.id,
        "step_id": request.step_id,
        "kind": request.kind,
        "payload": jsonable(request.payload),
        "created_at": request.created_at.isoformat(),
    }


def nodes_executed(trace_rows: list[dict[str, Any]]) -> list[str]:
    """Step ids in the order they first ran (each once, however often it ran); a skipped step (a
    branch not taken, e.g. an AgentFlow router's other targets) did not run."""
    seen: dict[str, None] = {}
    for row in trace_rows:
        if row.get("status") != "skipped":
            seen.setdefault(str(row.get("step_id")), None)
    return list(seen)


def result_view(result: Any) -> dict[str, Any]:
    """``POST /workflows/execute`` and ``POST /runs/{id}/resume``: a `RunResult` with its metrics."""
    return _dict(
        {
            "status": result.status,
            "execution_id": result.run_id,
            "workflow": result.workflow,
            "outputs": result.outputs,
            "metrics": {
                "execution_time_ms": result.duration_ms,
                "tokens_used": result.total_tokens,
                "cost_usd": result.cost_usd,
                "nodes_executed": nodes_executed(result.trace_rows),
            },
            "error": result.error.to_dict() if result.error else None,
            "pending": [pending_view(p) for p in result.pending],
        }
    )


def record_view(record: Any) -> dict[str, Any]:
    """One run in ``GET /runs``."""
    return _dict(
        {
            "run_id": record.run_id,
            "workflow": record.workflow,
            "workflow_version": record.workflow_version,
            "status": record.status,
            "started_at": record.started_at,
            "finished_at": record.finished_at,
            "duration_ms": record.duration_ms,
            "error_code": (record.error or {}).get("code"),
        }
    )


def run_view(record: Any, result: Any) -> dict[str, Any]:
    """``GET /runs/{id}``: the stored record, its steps, its trace rows and its open requests."""
    out = record_view(record)
    out.update(
        _dict(
            {
                "inputs": record.inputs,
                "outputs": record.outputs or {},
                "error": record.error,
                "steps": {
                    sid: {
                        "status": s.status,
                        "output": s.output,
                        "error": s.error.to_dict() if s.error else None,
                        "attempts": s.attempts,
                        "backend": s.backend,
                    }
                    for sid, s in result.steps.items()
                },
                "trace": result.trace_rows,
                "pending": [pending_view(p) for p in result.pending],
                "metrics": {
                    "execution_time_ms": record.duration_ms,
                    "tokens_used": result.total_tokens,
                    "cost_usd": result.cost_usd,
                    "nodes_executed": nodes_executed(result.trace_rows),
                },
            }
        )
    )
    return out


def workflow_summary(wf: Workflow) -> dict[str, Any]:
    """One workflow in ``GET /workflows``: name, version, description, inputs and outputs."""
    model = wf.manifest
    return _dict(
        {
            "name": wf.name,
            "version": wf.version,
            "namespace": model.namespace,
            "description": model.description,
            "inputs": {k: v.model_dump(exclude_none=True, exclude_defaults=True) for k, v in model.inputs.items()},
            "outputs": sorted(model.outputs),
            "steps": len(wf.graph.nodes) if wf.graph else 0,
        }
    )


def workflow_detail(wf: Workflow, prefer_backend: str | None = None) -> dict[str, Any]:
    """``GET /workflows/{name}``: the summary, the plan (a backend per step, and why) and the graph."""
    plan = wf.plan(prefer_backend=prefer_backend)
    out = workflow_summary(wf)
    out["plan"] = jsonable(plan.rows())
    out["mermaid"] = to_mermaid(plan)
    out["warnings"] = [jsonable(diagnostic(d)) for d in wf.warnings]
    return out


def to_mermaid(plan: Any) -> str:
    """The plan's step graph as a mermaid flowchart: one node per step (id, type and backend),
    nested steps inside their parent's subgraph, dependency edges (ordering edges dotted)."""
    graph = plan.graph
    ids = {sid: f"n{i}" for i, sid in enumerate(graph.nodes)}
    children: dict[str | None, list[str]] = {}
    for sid, node in graph.nodes.items():
        children.setdefault(node.parent, []).append(sid)
    lines = ["flowchart TD"]

    def label(sid: str) -> str:
        node = graph.nodes[sid]
        entry = plan.entries.get(sid)
        backend = f" · {entry.backend}" if entry is not None else ""
        return _escape(f"{sid}") + "<br/>" + _escape(f"{node.type}{backend}")

    def draw(parent: str | None, depth: int) -> None:
        pad = "    " * depth
        for sid in children.get(parent, []):
            if sid in children:
                lines.append(f'{pad}subgraph {ids[sid]}_g["{label(sid)}"]')
                lines.append(f'{pad}    {ids[sid]}["{label(sid)}"]')
                draw(sid, depth + 1)
                lines.append(f"{pad}end")
            else:
                lines.append(f'{pad}{ids[sid]}["{label(sid)}"]')

    draw(None, 1)
    for edge in graph.edges:
        arrow = "-.->" if edge.kind == "order" else "-->"
        lines.append(f"    {ids[edge.source]} {arrow} {ids[edge.target]}")
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")


def _dict(value: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = jsonable(value)
    return out
