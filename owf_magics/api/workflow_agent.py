"""A workflow as an agent's tool or as an agent (``Workflow.as_tool()``, ``Workflow.as_agent()``;
docs/patterns.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from owf_magics.agents.workflow_tools import input_schema, tool_name
from owf_magics.errors import OWFError


@dataclass(frozen=True)
class WorkflowAsTool:
    """A workflow as a tool: ``ref`` goes in an agent's ``toolset``; ``name``, ``description`` and
    ``parameters`` (the inputs as JSON Schema) are what a model sees; calling it runs the workflow
    and returns its outputs (or raises the run's error)."""

    workflow: Any
    name: str
    description: str
    parameters: dict[str, Any]
    ref: str

    def __call__(self, **inputs: Any) -> dict[str, Any]:
        result = self.workflow.execute(inputs=inputs)
        if result.status != "completed":
            failed = next((s.error for s in result.steps.values() if s.error is not None), None)
            raise OWFError(
                f"workflow '{self.workflow.name}' ended {result.status}"
                + (f": {failed.message}" if failed is not None else ""),
                code=failed.code if failed is not None else "BACKEND_ERROR",
                details={"run_id": result.run_id, "status": result.status},
            )
        outputs: dict[str, Any] = result.outputs
        return outputs


def as_tool(wf: Any) -> WorkflowAsTool:
    model = wf.manifest
    return WorkflowAsTool(
        wf,
        tool_name(wf.name),
        model.description or f"Run the workflow '{wf.name}'",
        input_schema(model.inputs),
        f"workflow:{wf.name}@{wf.version}",
    )


def as_agent(wf: Any, name: str | None = None) -> Any:
    """Register (and return) an agent that runs `wf`: a participant, a handoff target or an agent
    step like any other. Its model is the ``workflow`` provider (no tokens, no cost)."""
    agent_name = name or wf.name
    doc = {
        "type": "agent",
        "name": agent_name,
        "version": wf.version,
        "description": wf.manifest.description or f"Runs the workflow '{wf.name}'",
        "toolset": [f"workflow:{wf.name}@{wf.version}"],
        "model": {"provider": "workflow", "id": wf.name},
    }
    wf.ow.load(doc, name=f"<{wf.name}.as_agent()>")
    return wf.ow.load_agent(agent_name)
