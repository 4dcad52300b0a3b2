"""`WorkflowBuilder`: the mutable authoring surface whose `build()` returns an immutable `Workflow`.

A builder holds a workflow as a manifest would write it; `add_workflow` adds a ``workflow:`` step
(with ``inline: true`` for a fragment) carrying the source's own data, so building is one ordinary
load: every check a YAML file gets, all at once, in one `ManifestError`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Protocol

from owf_magics.api.workflow import Workflow
from owf_magics.errors import OWFError
from owf_magics.runtime.results import plural


class Loader(Protocol):
    """What a builder needs of its `OpenWorkflow`."""

    def load(self, source: Any, *, name: str | None = None) -> Any: ...

    def workflow(self, name: str | None = None, version: str | None = None) -> Workflow: ...


#: Top-level workflow fields a builder keeps as they are (besides steps, inputs and outputs).
_KEPT = ("description", "triggers", "execution", "authorization", "testing", "policies", "guardrails", "timeout")
_KEPT_META = ("runtime", "metadata", "namespace", "tags", "categories")


def plain(value: Any) -> Any:
    """A deep copy of `value` as plain dicts and lists (no positions)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return copy.deepcopy(value)


def reads(value: Any, step_id: str) -> bool:
    """Whether `value` is exactly one template reading step `step_id` (``{{ steps.<id>... }}``)."""
    if not isinstance(value, str):
        return False
    text = value.strip()
    if not (text.startswith("{{") and text.endswith("}}")) or text.count("{{") != 1:
        return False
    inner = text[2:-2].strip()
    return inner.startswith((f"steps.{step_id}.", f"steps['{step_id}']", f'steps["{step_id}"]'))


class WorkflowBuilder:
    """A workflow being composed: steps, whole workflows (inline or nested), edges and ports.

    Example:
        >>> b = ow.builder("pipeline")                                   # doctest: +SKIP
        >>> b.add_workflow("fetch", id="f", inputs={"topic": "{{ inputs.topic }}"})  # doctest: +SKIP
        >>> wf = b.build()                                               # doctest: +SKIP
    """

    def __init__(self, ow: Loader, name: str, *, version: str = "1.0.0") -> None:
        self._ow = ow
        self.name = name
        self.version = version
        self._steps: list[dict[str, Any]] = []
        self._inputs: dict[str, Any] = {}
        self._outputs: dict[str, Any] = {}
        self._edges: list[tuple[str, str]] = []
        self._extra: dict[str, Any] = {}

    # -- authoring -----------------------------------------------------------------------------

    def add_step(self, step: Mapping[str, Any]) -> WorkflowBuilder:
        """Add a step written as in a manifest (every alias accepted); returns the builder."""
        if not isinstance(step, Mapping):
            raise TypeError(f"add_step takes a mapping, not {type(step).__name__}")
        self._steps.append(plain(step))
        return self

    def add_workflow(
        self,
        source: Workflow | WorkflowBuilder | str,
        *,
        id: str | None = None,
        inputs: Mapping[str, Any] | None = None,
        inline: bool = True,
    ) -> WorkflowBuilder:
        """Add a whole workflow as the part `id`.

        Args:
            source: A built `Workflow`, a `WorkflowBuilder`, or a loaded workflow's name
                (``"name"`` or ``"name@range"``). It is copied: adding it twice gives two parts.
            id: The part's id; inlined steps are ``<id>/<step>``. Default: the source's name.
            inputs: The source's inputs, as values or templates read in this workflow.
            inline: True merges its steps into this graph; False runs it as a nested sub-workflow.
        """
        if id is None:
            id = source.name if isinstance(source, WorkflowBuilder | Workflow) else str(source).partition("@")[0]
        step: dict[str, Any] = {"id": id, "type": "workflow", "input": plain(inputs or {})}
        if isinstance(source, WorkflowBuilder):
            if inline:
                step["workflow"] = source.to_document()
            else:  # a nested child is a workflow of its own: build (and register) it
                built = source.build()
                step["workflow"], step["version"] = built.name, built.version
        elif isinstance(source, Workflow):
            if inline:
                step["workflow"] = plain(source.item.raw.data)
            else:
                step["workflow"], step["version"] = source.name, source.version
        elif isinstance(source, str):
            name, _, rng = source.partition("@")
            step["workflow"] = name
            if rng:
                step["version"] = rng
        else:
            raise TypeError(f"add_workflow takes a Workflow, a WorkflowBuilder or a name, not {type(source).__name__}")
        if inline:
            step["inline"] = True
        self._steps.append(step)
        return self

    def add_adapter(
        self, source_id: str, target_id: str, template: str, *, id: str | None = None, type: str | None = None
    ) -> WorkflowBuilder:
        """Put a transform step between two parts (docs/patterns.md, "Adapters").

        The adapter runs after `source_id` and before `target_id`; its output is `template`
        rendered (read as ``{{ steps.<id>.output }}``), of the declared `type` (checked against
        the inputs it is bound to, like any port). The target's inputs that were exactly one
        template reading `source_id` now read the adapter.
        """
        aid = id or f"{source_id}_to_{target_id}"
        meta: dict[str, Any] = {"adapter": True}
        if type is not None:
            meta["outputType"] = type
        self._steps.append({"id": aid, "type": "transform", "template": template, "metadata": meta})
        read = f"{{{{ steps.{aid}.output }}}}"
        for step in self._steps:
            if (step.get("id") or step.get("name")) == target_id and isinstance(step.get("input"), dict):
                step["input"] = {k: read if reads(v, source_id) else v for k, v in step["input"].items()}
        return self.add_edge(source_id, aid).add_edge(aid, target_id)

    def add_edge(self, source_id: str, target_id: str) -> WorkflowBuilder:
        """`target_id` runs after `source_id` (step or part ids; a part's entries / its single exit)."""
        self._edges.append((source_id, target_id))
        return self

    def inputs(self, spec: Mapping[str, Any]) -> WorkflowBuilder:
        """Declare (add to) the composite's inputs, as a manifest's ``inputs:``."""
        self._inputs.update(plain(spec))
        return self

    def outputs(self, spec: Mapping[str, Any]) -> WorkflowBuilder:
        """Declare (add to) the composite's outputs, as a manifest's ``outputs:``."""
        self._outputs.update(plain(spec))
        return self

    # -- building ------------------------------------------------------------------------------

    def to_document(self) -> dict[str, Any]:
        """The workflow as a manifest (plain data; inline parts carry their source's data)."""
        steps = plain(self._steps)
        by_id = {s.get("id") or s.get("name"): s for s in steps}
        for source_id, target_id in self._edges:
            target = by_id.get(target_id)
            if target is None:  # validation reports the unknown step; keep the edge visible to it
                target = next((s for s in steps if s.get("id") == source_id), None)
                if target is None:
                    raise OWFError(f"add_edge: no step or part '{target_id}'", code="VALIDATION")
                continue
            key = next((k for k in ("needs", "depends_on", "dependsOn") if k in target), "needs")
            target[key] = [*target.get(key, []), source_id]
        doc: dict[str, Any] = {"name": self.name, "version": self.version, **plain(self._extra)}
        if self._inputs:
            doc["inputs"] = plain(self._inputs)
        doc["steps"] = steps
        if self._outputs:
            doc["outputs"] = plain(self._outputs)
        return doc

    def build(self) -> Workflow:
        """Validate everything at once, register the workflow in its `OpenWorkflow`, return it.

        Raises:
            ManifestError: Every problem found (`TYPE_MISMATCH`, `AMBIGUOUS_EXIT`,
                `DUPLICATE_STEP_ID`...); nothing is registered then.
        """
        self._ow.load({"workflows": [self.to_document()]}, name=f"<builder {self.name}>")
        return self._ow.workflow(self.name, self.version)

    def copy_of(self, wf: Workflow) -> WorkflowBuilder:
        """Make this builder a copy of a built or loaded workflow (inlined parts stay prefixed steps)."""
        data = plain(wf.item.raw.data)
        b = self
        b._steps = data.get("steps", [])
        b._inputs = data.get("inputs", {})
        b._outputs = data.get("outputs", {})
        b._extra = {k: data[k] for k in (*_KEPT, *_KEPT_META) if k in data}
        return b

    def __repr__(self) -> str:
        return f"<WorkflowBuilder {self.name}@{self.version}: {plural(len(self._steps), 'step')}>"
