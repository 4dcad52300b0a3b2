"""Backend resolution: which backend runs each step, and why, frozen into a `Plan`.

Priority: step ``execution.backend`` > the agent's ``execution.backend`` > the workflow's
``execution.backend`` > ``prefer_backend`` > ``native``. A plan is what the graph view, the
resolution table and the executor share; it never changes after it is made.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from owf_magics.errors import UnavailableError
from owf_magics.manifest.models import AgentStep, HandoffStep, StepBase, Workflow
from owf_magics.plan.graph import Graph
from owf_magics.runtime.display import mimebundle
from owf_magics.runtime.registry import BackendRegistry
from owf_magics.runtime.results import plural

if TYPE_CHECKING:
    from owf_magics.manifest.catalog import Catalog, Loaded

Source = Literal["step", "agent", "workflow", "prefer", "default"]
#: What each source means. Every table, column and API says the source itself (`step`, `agent`,
#: `workflow`, `prefer`, `default`: the contract's words); this text only explains it.
SOURCE_TEXT = {
    "step": "the step's execution.backend",
    "agent": "the agent's execution.backend",
    "workflow": "the workflow's execution.backend",
    "prefer": "prefer_backend (--prefer-backend)",
    "default": "nothing named a backend",
}


@dataclass(frozen=True, slots=True)
class PlanEntry:
    """How one step will run.

    Attributes:
        step_id: The step.
        type: Its canonical type.
        backend: The resolved backend's canonical name.
        source: Which rule chose it: step, agent, workflow, prefer or default.
        requested: The name as written where it was chosen (``langgraph`` resolves to ``langchain``).
        runtime: python, node or None.
        adapter_version: The backend's version (``-`` when it is not installed).
        available: Whether that backend can run here now.
        agent: The agent reference the step uses, resolved (``agent:ns/name@1.2.0``).
        connector: The connector reference, resolved.
        action: The connector action.
        workflow: The sub-workflow reference, resolved.
        missing: What to install when not available.
        parent: The enclosing step, for nested steps.
    """

    step_id: str
    type: str
    backend: str
    source: Source
    requested: str | None
    runtime: str | None
    adapter_version: str
    available: bool
    agent: str | None = None
    connector: str | None = None
    action: str | None = None
    workflow: str | None = None
    missing: tuple[str, ...] = ()
    parent: str | None = None

    @property
    def reason(self) -> str:
        """Why this backend: the source, and the alias it resolved when there was one
        (``step (langgraph → langchain)``); the resolution table's ``source`` column."""
        text: str = self.source
        if self.requested and self.requested != self.backend:
            text += f" ({self.requested} → {self.backend})"
        return text

    @property
    def explanation(self) -> str:
        """The reason in words (``prefer: prefer_backend (--prefer-backend)``)."""
        text = f"{self.source}: {SOURCE_TEXT[self.source]}"
        if self.requested and self.requested != self.backend:
            text += f" ({self.requested} → {self.backend})"
        return text

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["reason"] = self.reason
        out["explanation"] = self.explanation
        return out


def _availability_hint(entry: PlanEntry) -> str:
    """What to do about a backend that cannot run: install it, or register one under a reserved name."""
    from owf_magics.runtime.registry import RESERVED

    if entry.backend in RESERVED:
        return (
            f"'{entry.backend}' is a name the spec reserves: register a backend under it with "
            f"ow.register_backend({entry.backend!r}, YourBackend())"
        )
    return f"Install what is missing: {', '.join(entry.missing) or entry.backend}"


@dataclass(frozen=True)
class Plan(Mapping[str, PlanEntry]):
    """The frozen resolution of one workflow: ``plan["step_id"].backend``."""

    workflow: str
    version: str
    prefer_backend: str | None
    graph: Graph
    entries: Mapping[str, PlanEntry]
    order: tuple[str, ...]
    targets: Mapping[str, Any] = field(default_factory=dict, repr=False)
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # executor's per-plan data

    def __getitem__(self, step_id: str) -> PlanEntry:
        return self.entries[step_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)

    def rows(self) -> list[dict[str, Any]]:
        """The resolution table: one dict per step, in graph order."""
        return [self.entries[s].to_dict() for s in self.order]

    def backends_used(self) -> list[str]:
        return sorted({e.backend for e in self.entries.values()})

    def check_available(self) -> None:
        """Raise `UnavailableError` for the first step whose backend cannot run here."""
        for sid in self.order:
            e = self.entries[sid]
            if not e.available:
                raise UnavailableError(
                    f"Backend '{e.backend}' is not installed or configured (step '{sid}', {e.explanation})",
                    details={
                        "backend": e.backend,
                        "step_id": sid,
                        "missing": list(e.missing),
                        "suggestion": _availability_hint(e),
                    },
                )

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for e in self.entries.values():
            counts[e.backend] = counts.get(e.backend, 0) + 1
        summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        return f"<Plan {self.workflow!r} {plural(len(self), 'step')} ({summary})>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        """Notebook display: the graph and the resolution table (see owf_magics.notebook.views)."""
        return mimebundle(self)

    def to_text(self) -> str:
        """A plain-text resolution table."""
        head = ("step", "type", "backend", "source", "runtime", "adapter", "target")
        rows = [head]
        for sid in self.order:
            e = self.entries[sid]
            target = e.agent or (f"{e.connector}.{e.action}" if e.connector else None) or e.workflow or ""
            rows.append((sid, e.type, e.backend, e.reason, e.runtime or "", e.adapter_version, target))
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
        return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def resolve_plan(
    item: Loaded[Workflow],
    catalog: Catalog,
    backends: BackendRegistry,
    prefer_backend: str | None = None,
) -> Plan:
    """Resolve every step of a validated workflow (see the module docstring for the rules)."""
    from owf_magics.manifest.refs import Ref, parse_ref
    from owf_magics.plan.steps import walk_steps

    wf = item.model
    graph: Graph = item.graph
    if prefer_backend is not None:
        if not backends.is_known(prefer_backend):
            raise backends.unavailable(prefer_backend)
        prefer_backend = backends.canonical(prefer_backend)
    info_cache: dict[str, tuple[str, bool, tuple[str, ...], str | None]] = {}

    def backend_info(name: str) -> tuple[str, bool, tuple[str, ...], str | None]:
        if name not in info_cache:
            try:
                info = backends.info(name)
                info_cache[name] = (info.version, info.installed, info.missing, info.runtime)
            except UnavailableError:
                info_cache[name] = ("-", False, (name,), None)
        return info_cache[name]

    wf_exec = wf.execution
    entries: dict[str, PlanEntry] = {}
    targets: dict[str, Any] = {}
    for step, _path in walk_steps(wf.steps):
        agent_item = None
        agent_text = step.agent if isinstance(step, AgentStep | HandoffStep) and getattr(step, "agent", None) else None
        if agent_text:
            agent_item = catalog.agent(parse_ref(agent_text, expected_kind="agent"))
        requested: str | None
        source: Source
        runtime: str | None = None
        if step.execution and step.execution.backend:
            requested, source = step.execution.backend, "step"
            runtime = step.execution.runtime
        elif agent_item is not None and agent_item.model.execution and agent_item.model.execution.backend:
            requested, source = agent_item.model.execution.backend, "agent"
        elif wf_exec is not None and wf_exec.backend:
            requested, source = wf_exec.backend, "workflow"
        elif prefer_backend is not None:
            requested, source = prefer_backend, "prefer"
        else:
            requested, source = None, "default"
        backend = backends.canonical(requested) if requested else "native"
        if runtime is None:
            for ex in (step.execution, agent_item.model.execution if agent_item else None, wf_exec):
                if ex is not None and ex.runtime:
                    runtime = ex.runtime
                    break
        version, installed, missing, default_runtime = backend_info(backend)
        connector_ref = action = workflow_ref = None
        if step.type == "action":  # type: ignore[attr-defined]
            ref = parse_ref(step.connector, expected_kind="connector", allow_action=True)  # type: ignore[attr-defined]
            conn = catalog.connector(ref)
            if conn is not None:
                connector_ref, action = conn.ref, step.action  # type: ignore[attr-defined]
                targets[step.id] = conn
        elif step.type == "workflow":  # type: ignore[attr-defined]
            text = step.workflow  # type: ignore[attr-defined]
            wref = (
                parse_ref(text, expected_kind="workflow")
                if text.startswith("workflow:")
                else Ref("workflow", None, text, None)
            )
            wref = Ref(wref.kind, wref.namespace, wref.name, step.version or wref.range)  # type: ignore[attr-defined]
            sub = catalog.workflow(wref)
            if sub is not None:
                workflow_ref = sub.ref
                targets[step.id] = sub
        if agent_item is not None:
            targets[step.id] = agent_item
        node = graph.nodes.get(step.id)
        entries[step.id] = PlanEntry(
            step_id=step.id,
            type=step.type,  # type: ignore[attr-defined]
            backend=backend,
            source=source,
            requested=requested,
            runtime=runtime or default_runtime,
            adapter_version=version,
            available=installed,
            agent=agent_item.ref if agent_item else None,
            connector=connector_ref,
            action=action,
            workflow=workflow_ref,
            missing=missing,
            parent=node.parent if node else None,
        )
    order = tuple(s for s in graph.topological() if s in entries)
    plan = Plan(wf.name, wf.version, prefer_backend, graph, MappingProxyType(entries), order, MappingProxyType(targets))
    plan.memo["env_names"] = frozenset(v.name for v in wf.runtime.environment) if wf.runtime else frozenset()
    return plan


def step_models(wf: Workflow) -> dict[str, StepBase]:
    """Every step of a workflow by id."""
    from owf_magics.plan.steps import walk_steps

    return {step.id: step for step, _ in walk_steps(wf.steps)}
