"""Workflows as agent tools: ``toolset: ["workflow:NAME"]`` (docs/patterns.md).

The tool is named after the workflow (non-alphanumerics as ``_``); its parameters are the
workflow's inputs as JSON Schema, its result the workflow's outputs. The native loop calls it
through the runner the engine binds around an agent (`bind`): the inner run's steps run in the
same run, under the calling agent step (their trace rows and records name it as their parent).
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from owf_magics.errors import OWFError
from owf_magics.manifest.models import Agent, InputSpec
from owf_magics.manifest.refs import RefError, parse_ref
from owf_magics.plan.patterns import is_workflow_entry
from owf_magics.runtime.context import Host

__all__ = ["Runner", "WorkflowTool", "bind", "call", "input_schema", "is_workflow_entry", "workflow_tools"]

#: ``(ref, tool name, arguments) -> outputs``: how the engine runs a workflow tool in this run.
Runner = Callable[[str, str, dict[str, Any]], Awaitable[Any]]
_RUNNER: contextvars.ContextVar[Runner | None] = contextvars.ContextVar("owf_workflow_tool_runner", default=None)


@dataclass(frozen=True)
class WorkflowTool:
    name: str
    description: str
    parameters: dict[str, Any]
    ref: str


def tool_name(name: str) -> str:
    return re.sub(r"\W", "_", name)


def input_schema(inputs: dict[str, InputSpec]) -> dict[str, Any]:
    """A workflow's inputs as the JSON Schema of a tool's parameters."""
    props: dict[str, Any] = {}
    required = []
    for key, spec in inputs.items():
        prop: dict[str, Any] = {}
        if spec.type == "file":
            prop["type"] = "string"
        elif spec.type not in (None, "any"):
            prop["type"] = spec.type
        for field in ("description", "enum", "items", "properties", "pattern", "minimum", "maximum"):
            value = getattr(spec, field)
            if value is not None:
                prop[field] = value
        if spec.default is not None:
            prop["default"] = spec.default
        props[key] = prop
        if spec.required and spec.default is None:
            required.append(key)
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    return schema


def workflow_tools(host: Host, agent: Agent) -> dict[str, WorkflowTool]:
    """The agent's ``workflow:`` toolset entries as tools (unknown ones are left out: load reports them)."""
    out: dict[str, WorkflowTool] = {}
    for entry in agent.toolset:
        if not is_workflow_entry(entry):
            continue
        assert isinstance(entry, str)
        try:
            loaded = host.catalog.workflow(parse_ref(entry, expected_kind="workflow"))
        except RefError:
            continue
        if loaded is None:
            continue
        wf = loaded.model
        name = tool_name(wf.name)
        out[name] = WorkflowTool(
            name, wf.description or f"Run the workflow '{wf.name}'", input_schema(wf.inputs), entry
        )
    return out


@contextlib.contextmanager
def bind(runner: Runner | None) -> Iterator[None]:
    """Run workflow tools called inside with `runner` (the engine binds one per agent step)."""
    token = _RUNNER.set(runner)
    try:
        yield
    finally:
        _RUNNER.reset(token)


async def call(tool: WorkflowTool, args: dict[str, Any]) -> Any:
    runner = _RUNNER.get()
    if runner is None:
        raise OWFError(f"workflow tool '{tool.name}' needs a workflow run", code="UNAVAILABLE")
    return await runner(tool.ref, tool.name, args)
