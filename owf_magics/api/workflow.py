"""`Workflow`, one loaded workflow bound to its `OpenWorkflow`: plan, execute, compile."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from owf_magics.errors import Diagnostic, DiagnosticBag, ManifestError
from owf_magics.manifest.catalog import Loaded
from owf_magics.manifest.models import Workflow as WorkflowModel
from owf_magics.plan.resolution import Plan, resolve_plan
from owf_magics.plan.validation import Validator
from owf_magics.runtime.context import Host
from owf_magics.runtime.registry import BackendRegistry
from owf_magics.runtime.results import plural

if TYPE_CHECKING:
    from owf_magics.engine.executor import Executor
    from owf_magics.plan.graph import Graph
    from owf_magics.runtime.results import RunResult

Source = str | os.PathLike[str] | dict[str, Any] | list[Any]
Callback = Callable[[dict[str, Any]], Any] | str


class Registry(Host, Protocol):
    """What a `Workflow` uses of the `OpenWorkflow` it belongs to (besides what a run's `Host` has)."""

    @property
    def backend_registry(self) -> BackendRegistry: ...
    @property
    def store(self) -> Any: ...
    @property
    def env(self) -> frozenset[str]: ...
    def builder(self, name: str, *, version: str = "1.0.0") -> Any: ...


class Workflow:
    """One loaded workflow, bound to the registry that resolves its references."""

    def __init__(self, ow: Registry, item: Loaded[WorkflowModel]) -> None:
        self.ow = ow
        self.item = item

    @property
    def name(self) -> str:
        return self.item.name

    @property
    def version(self) -> str:
        return self.item.version

    @property
    def manifest(self) -> WorkflowModel:
        """The canonical model."""
        return self.item.model

    @property
    def graph(self) -> Graph:
        """The neutral step graph (nodes, edges, groups)."""
        return self.item.graph  # type: ignore[no-any-return]

    @property
    def warnings(self) -> list[Diagnostic]:
        return list(self.item.warnings)

    def plan(self, prefer_backend: str | None = None) -> Plan:
        """Resolve the backend of every step (step > agent > workflow > prefer > native).

        Raises:
            UnavailableError: When `prefer_backend` names no known backend.
            ManifestError: When a reference no longer resolves (a manifest it uses was replaced).
        """
        self._recheck()
        # a plan is frozen and depends only on the catalog (checked above) and the backends known
        key = (prefer_backend, self.ow.backend_registry.generation)
        hit = self.item.plans.get(key)
        if hit is not None and hit[0] is self.ow.catalog:
            return hit[1]  # type: ignore[no-any-return]
        plan = resolve_plan(self.item, self.ow.catalog, self.ow.backend_registry, prefer_backend)
        self.item.plans[key] = (self.ow.catalog, plan)
        return plan

    def _recheck(self) -> None:
        """Re-validate references if the catalog changed since this workflow was loaded."""
        if self.item.checked_against is self.ow.catalog:
            return
        bag = DiagnosticBag()
        validator = Validator(self.ow.catalog, self.ow.backend_registry, bag, env=self.ow.env)
        validator.check([self.item])
        if bag.errors:
            raise ManifestError(bag.errors, bag.warnings)
        self.item.graph = validator.graphs.get(id(self.item), self.item.graph)
        self.item.checked_against = self.ow.catalog

    def execute(
        self,
        inputs: Mapping[str, Any] | None = None,
        prefer_backend: str | None = None,
        secrets: Mapping[str, str] | None = None,
        callback: Callback | None = None,
        events: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        trigger: Mapping[str, Any] | None = None,
    ) -> RunResult:
        """Run the workflow and wait for it; also works inside a running event loop (Jupyter).

        Args:
            inputs: Values for the workflow's declared inputs (defaults fill the rest).
            prefer_backend: The backend for steps that name none.
            secrets: Values templates read as ``secrets.NAME`` (redacted from every result).
            callback: Receives every event as it happens: a callable (given each event dict, as in
                ``result.events``), ``"stdout"``, ``"stdout_verbose"`` or an http(s) URL (sent the
                ``{type, timestamp, payload, metadata}`` envelope). Its failures never stop the run.
            events: Events already received, by name: a ``wait: {until: {event: NAME}}`` step whose
                event is here continues at once with it as ``eventReceived``.
            run_id: The run's id (default: a new timestamp-and-sequence id).
            trigger: What started the run, readable in templates as ``trigger.*`` (the spec's
                ``trigger.payload`` of a webhook, ``trigger.event`` of an event); default ``{}``.

        Raises:
            UnavailableError: A step's backend is not installed.
            OWFError: Inputs do not match the declaration (code VALIDATION).
        """
        return self._run(inputs, prefer_backend, secrets, callback, events, run_id, None, trigger)

    async def aexecute(
        self,
        inputs: Mapping[str, Any] | None = None,
        prefer_backend: str | None = None,
        secrets: Mapping[str, str] | None = None,
        callback: Callback | None = None,
        events: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        trigger: Mapping[str, Any] | None = None,
    ) -> RunResult:
        """Async form of `execute`."""
        executor, close = self._executor(inputs, prefer_backend, secrets, callback, events, run_id, None, trigger)
        try:
            return await executor.arun()
        finally:
            close()

    def _run(self, *args: Any) -> RunResult:
        """Run synchronously; the arguments are `_executor`'s."""
        executor, close = self._executor(*args)
        try:
            return executor.run()
        finally:
            close()

    def _executor(
        self,
        inputs: Mapping[str, Any] | None,
        prefer_backend: str | None,
        secrets: Mapping[str, str] | None,
        callback: Callback | None,
        events: Mapping[str, Any] | None,
        run_id: str | None,
        resume: Any,
        trigger: Mapping[str, Any] | None = None,
    ) -> tuple[Executor, Callable[[], None]]:
        from owf_magics.engine.executor import Executor

        plan = self.plan(prefer_backend=prefer_backend)
        if callback is None:  # a workflow-runner request names its own callback (formats/runner)
            callback = (self.manifest.metadata.get("openaiAgents") or {}).get("callback")
        emit, close = event_sinks(callback, secrets, plan)
        executor = Executor(
            self.ow,
            plan,
            inputs=inputs,
            secrets=secrets,
            callback=emit,
            events=events,
            item=self.item,
            run_id=run_id,
            store=self.ow.store,
            resume=resume,
            trigger=trigger,
        )
        return executor, close

    def to_langgraph(self, *, checkpointer: Any = None, name: str | None = None) -> Any:
        """The workflow compiled to a LangGraph graph (a compiled ``StateGraph``).

        ``graph.invoke({"inputs": {...}})`` returns a state whose ``outputs`` equal the native run's;
        secrets go in ``config={"configurable": {"secrets": {...}}}``. See docs/backends.md for
        what compiles.

        Args:
            checkpointer: A LangGraph checkpointer; a SQLite path for LangGraph's SQLite saver; or
                True for the registry's ``state`` file (default ``.owf/runs.db``). With one, pass
                ``config={"configurable": {"thread_id": ...}}`` when invoking.
            name: The graph's name (default: the workflow's).

        Raises:
            OWFError: Code VALIDATION naming the step and feature that do not compile.
            UnavailableError: LangGraph is not installed.
        """
        from owf_magics.backends.langgraph_cache import compiled_workflow

        return compiled_workflow(self.ow, self.item, checkpointer=checkpointer, name=name)

    @property
    def fragments(self) -> dict[str, dict[str, Any]]:
        """The inlined parts, by id: their source workflow, entry, exit and top-level step ids."""
        meta = self.item.model.metadata.get("owf.fragments")
        return dict(meta) if isinstance(meta, dict) else {}

    def as_tool(self) -> Any:
        """This workflow as an agent's tool (`WorkflowAsTool`: ``.ref`` for a toolset; callable)."""
        from owf_magics.api.workflow_agent import as_tool

        return as_tool(self)

    def as_agent(self, name: str | None = None) -> Any:
        """This workflow as a registered agent (named `name` or after the workflow)."""
        from owf_magics.api.workflow_agent import as_agent

        return as_agent(self, name)

    def to_builder(self) -> Any:
        """A mutable `WorkflowBuilder` copy of this workflow (this one never changes)."""
        return self.ow.builder(self.name, version=self.version).copy_of(self)

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r} v{self.version}: {plural(len(self.graph.nodes) if self.graph else 0, 'step')}>"


def event_sinks(
    callback: Callback | None, secrets: Mapping[str, str] | None, plan: Plan
) -> tuple[Callable[[dict[str, Any]], Any] | None, Callable[[], None]]:
    """The run's event consumers: the caller's callback (a callable gets the event dicts; a
    ``stdout``/URL sink the envelope) and OpenTelemetry spans when the program configured a tracer
    provider. Returns the function the executor calls and the one that closes the sinks."""
    consumers: list[Callable[[dict[str, Any]], Any]] = []
    closers: list[Callable[[], Any]] = []
    if isinstance(callback, str):
        from owf_magics.runs.callbacks import make_sink

        sink = make_sink(callback, secrets=dict(secrets or {}))
        if sink is not None:
            consumers.append(sink)
            closers.append(sink.close)
    elif callback is not None:
        consumers.append(callback)
    if "opentelemetry.trace" in sys.modules:  # only a program that uses OpenTelemetry pays for spans
        from owf_magics.runs.telemetry import tracing_configured

        if tracing_configured():
            from owf_magics.runs.telemetry import RunTracer

            tracer = RunTracer(plan=plan)
            consumers.append(tracer)
            closers.append(tracer.close)

    def close() -> None:
        for fn in closers:
            try:
                fn()
            except Exception:  # closing a sink never fails the run
                logging.getLogger(__name__).warning("closing an event sink failed", exc_info=True)

    if not consumers:
        return None, close
    if len(consumers) == 1:
        return consumers[0], close

    def fan_out(event: dict[str, Any]) -> None:
        for fn in consumers:
            try:
                fn(event)
            except Exception:  # one consumer's failure never stops the others, or the run
                logging.getLogger(__name__).warning("an event consumer failed", exc_info=True)

    return fan_out, close
