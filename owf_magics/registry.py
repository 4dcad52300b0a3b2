"""`OpenWorkflow`, the registry users hold, and `Workflow`, one loaded workflow bound to it.

A load parses, normalises, builds the models and validates against a copy of the catalog; only
when nothing is wrong does the copy replace the registry's catalog. A failed load changes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .backends.base import Backend, BackendInfo
from .backends.registry import BackendRegistry
from .catalog import Catalog, Loaded
from .errors import Diagnostic, DiagnosticBag, ManifestError, OWFError, sort_diagnostics, suggestion
from .loader import SourceDocument, looks_like_path, parse_path, parse_text
from .models import Agent, Connector
from .models import Workflow as WorkflowModel
from .normalize import RawManifest, split_document, wrap
from .refs import Ref, parse_ref
from .resolution import Plan, resolve_plan
from .validation import Validator

if TYPE_CHECKING:
    from .executor import Executor
    from .graph import Graph
    from .results import RunResult

Source = str | os.PathLike[str] | dict[str, Any] | list[Any]


class OpenWorkflow:
    """A registry of agents, connectors and workflows, and the backends that run them.

    Args:
        state: Where runs are stored (a SQLite path, ``":memory:"``); used by durable runs.
        max_concurrent_runs: The global limit on runs executing at once.
        environment: Variables templates read as ``env.*`` (default: the process environment).
        max_workers: Threads for synchronous action handlers (shared by this registry's runs).
        prices: Model prices in USD per 1M tokens, by ``provider/model`` or model id, e.g.
            ``{"openai/gpt-4o": {"input": 2.5, "output": 10}}``; they override the shipped table.

    Example:
        >>> ow = OpenWorkflow()
        >>> ow.load("flows/")          # doctest: +SKIP
        >>> ow.workflow("Daily Report").plan()["fetch"].backend   # doctest: +SKIP
        'native'
    """

    def __init__(
        self,
        state: str | os.PathLike[str] | None = None,
        max_concurrent_runs: int | None = None,
        *,
        environment: dict[str, str] | None = None,
        max_workers: int = 8,
        prices: Mapping[str, Mapping[str, float]] | None = None,
    ) -> None:
        from .providers import Prices

        self.prices = Prices(prices)
        self.state = state
        self.max_concurrent_runs = max_concurrent_runs
        self.environment = environment
        self._catalog = Catalog()
        self._backends = BackendRegistry()
        self.warnings: list[Diagnostic] = []
        self.max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None

    # -- loading -------------------------------------------------------------------------------

    def load(self, source: Source, *, name: str | None = None, line_offset: int = 0) -> list[Loaded[Any]]:
        """Load manifests from a path (file or directory), YAML/JSON text, or Python data.

        Args:
            source: A ``.yaml``/``.yml``/``.json`` file, a directory of them, manifest text
                (multi-document YAML allowed), or an already-parsed dict/list.
            name: The name diagnostics use for text sources (default ``<string>``).
            line_offset: Added to line numbers of text sources (a cell's magic line, say).

        Returns:
            The loaded manifests, in document order.

        Raises:
            ManifestError: Every problem found; nothing is registered then.
        """
        return self.load_many([source], name=name, line_offset=line_offset)

    def load_many(
        self, sources: Iterable[Source], *, name: str | None = None, line_offset: int = 0
    ) -> list[Loaded[Any]]:
        """Load several sources as one batch, so references between them resolve (all or nothing)."""
        bag = DiagnosticBag()
        docs: list[SourceDocument] = []
        for source in sources:
            docs.extend(self._parse(source, bag, name=name, line_offset=line_offset))
        raws: list[RawManifest] = []
        for doc in docs:
            raws.extend(split_document(doc, bag))
        catalog = self._catalog.fork()
        validator = Validator(catalog, self._backends, bag)
        items = validator.build(raws)
        for item in items:
            catalog.add(item)
        validator.check(items)
        bag.raise_if_errors()
        for item in items:
            item.graph = validator.graphs.get(id(item))
            item.warnings = [
                w for w in bag.warnings if w.file == item.file and w.path.startswith(_prefix_text(item.raw))
            ]
        for item in items:
            item.checked_against = catalog
        self._catalog = catalog
        self.warnings = sort_diagnostics(bag.warnings)
        return items

    def validate(self, source: Source, *, name: str | None = None, line_offset: int = 0) -> list[Diagnostic]:
        """Check manifests against this registry without registering them; returns the warnings.

        Raises:
            ManifestError: Every problem found.
        """
        saved = self._catalog, self.warnings
        try:
            self.load(source, name=name, line_offset=line_offset)
            return self.warnings
        finally:
            self._catalog, self.warnings = saved

    def register_connector(self, source: Source) -> Loaded[Connector]:
        """Load one connector (the SDK contract's spelling)."""
        items = [i for i in self.load(source) if i.kind == "connector"]
        if len(items) != 1:
            raise OWFError(f"expected one connector, found {len(items)}", code="VALIDATION")
        return items[0]

    def _parse(self, source: Source, bag: DiagnosticBag, *, name: str | None, line_offset: int) -> list[SourceDocument]:
        if isinstance(source, dict | list):
            items = source if isinstance(source, list) else [source]
            try:
                return [SourceDocument(wrap(d), name or "<object>", i, 0) for i, d in enumerate(items)]
            except ValueError as exc:  # too deep, or a structure that contains itself
                bag.add(Diagnostic("INVALID_VALUE", str(exc), file=name or "<object>", hint="use plain, acyclic data"))
                return []
        if isinstance(source, os.PathLike) or (isinstance(source, str) and looks_like_path(source)):
            return parse_path(Path(source).expanduser(), bag=bag)
        if isinstance(source, str):
            return parse_text(source, file=name or "<string>", line_offset=line_offset, bag=bag)
        raise TypeError(f"cannot load manifests from {type(source).__name__}")

    # -- backends ------------------------------------------------------------------------------

    def register_backend(self, name: str, backend: Backend) -> None:
        """Register a backend instance under `name` (replacing any earlier one)."""
        self._backends.register(name, backend)

    def backends(self) -> list[BackendInfo]:
        """Every backend this registry knows, installed or not."""
        return self._backends.infos()

    def backend(self, name: str) -> Backend:
        """The backend instance for `name`; raises `UnavailableError` with what to install."""
        return self._backends.get(name)

    def thread_pool(self) -> ThreadPoolExecutor:
        """The bounded pool sync handlers run in (created on first use)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="owf-handler")
        return self._pool

    def close(self) -> None:
        """Shut the handler thread pool down."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    @property
    def backend_registry(self) -> BackendRegistry:
        return self._backends

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    # -- lookup --------------------------------------------------------------------------------

    def workflows(self) -> list[Workflow]:
        return [Workflow(self, item) for item in self._catalog.all("workflow")]

    def agents(self) -> list[Loaded[Agent]]:
        return self._catalog.all("agent")

    def connectors(self) -> list[Loaded[Connector]]:
        return self._catalog.all("connector")

    def workflow(self, name: str | None = None, version: str | None = None) -> Workflow:
        """A loaded workflow by name (highest version, or one matching `version`).

        With no name, the only loaded workflow.
        """
        if name is None:
            items = self._catalog.all("workflow")
            if len(items) != 1:
                names = sorted({i.name for i in items})
                raise OWFError(
                    f"{len(items)} workflows are loaded ({', '.join(names) or 'none'}); name the one you want",
                    code="VALIDATION",
                )
            return Workflow(self, items[0])
        ref = (
            parse_ref(name, expected_kind="workflow")
            if name.startswith("workflow:")
            else Ref("workflow", None, name, version)
        )
        if version is not None:
            ref = Ref(ref.kind, ref.namespace, ref.name, version)
        found = self._catalog.workflow(ref)
        if found is None:
            names = sorted({i.name for i in self._catalog.all("workflow")})
            raise OWFError(
                f"workflow '{name}' is not loaded.{suggestion(name, names)}",
                code="VALIDATION",
                details={"loaded": names},
            )
        return Workflow(self, found)

    def agent(self, ref: str) -> Loaded[Agent]:
        found = self._catalog.agent(parse_ref(ref, expected_kind="agent"))
        if found is None:
            raise OWFError(f"agent '{ref}' is not loaded", code="VALIDATION")
        return found

    def connector(self, ref: str) -> Loaded[Connector]:
        found = self._catalog.connector(parse_ref(ref, expected_kind="connector", allow_action=True))
        if found is None:
            raise OWFError(f"connector '{ref}' is not loaded", code="VALIDATION")
        return found

    def __repr__(self) -> str:
        counts = {k: len(self._catalog.all(k)) for k in ("agent", "connector", "workflow")}
        return (
            f"<OpenWorkflow agents={counts['agent']} connectors={counts['connector']} workflows={counts['workflow']}>"
        )


def _prefix_text(raw: RawManifest) -> str:
    from .errors import format_path

    return format_path(raw.prefix)


class Workflow:
    """One loaded workflow, bound to the registry that resolves its references."""

    def __init__(self, ow: OpenWorkflow, item: Loaded[WorkflowModel]) -> None:
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
        validator = Validator(self.ow.catalog, self.ow.backend_registry, bag)
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
        callback: Callable[[dict[str, Any]], Any] | None = None,
        events: Mapping[str, Any] | None = None,
    ) -> RunResult:
        """Run the workflow and wait for it; also works inside a running event loop (Jupyter).

        Args:
            inputs: Values for the workflow's declared inputs (defaults fill the rest).
            prefer_backend: The backend for steps that name none.
            secrets: Values templates read as ``secrets.NAME`` (redacted from every result).
            callback: Called with every event as it happens; its failures never stop the run.
            events: Events already received, by name: a ``wait: {until: {event: NAME}}`` step whose
                event is here continues at once with it as ``eventReceived``.

        Raises:
            UnavailableError: A step's backend is not installed.
            OWFError: Inputs do not match the declaration (code VALIDATION).
        """
        return self._executor(inputs, prefer_backend, secrets, callback, events).run()

    async def aexecute(
        self,
        inputs: Mapping[str, Any] | None = None,
        prefer_backend: str | None = None,
        secrets: Mapping[str, str] | None = None,
        callback: Callable[[dict[str, Any]], Any] | None = None,
        events: Mapping[str, Any] | None = None,
    ) -> RunResult:
        """Async form of `execute`."""
        return await self._executor(inputs, prefer_backend, secrets, callback, events).arun()

    def _executor(
        self,
        inputs: Mapping[str, Any] | None,
        prefer_backend: str | None,
        secrets: Mapping[str, str] | None,
        callback: Callable[[dict[str, Any]], Any] | None,
        events: Mapping[str, Any] | None,
    ) -> Executor:
        from .executor import Executor

        plan = self.plan(prefer_backend=prefer_backend)
        return Executor(self.ow, plan, inputs=inputs, secrets=secrets, callback=callback, events=events, item=self.item)

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
        from .compile_langgraph import compile_workflow

        return compile_workflow(self.ow, self.item, checkpointer=checkpointer, name=name)

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r} v{self.version}: {len(self.graph.nodes) if self.graph else 0} steps>"


class Workflows:
    """The SDK contract's file-level entry point."""

    @staticmethod
    def from_file(path: str | os.PathLike[str]) -> Workflow:
        """Load a file into a fresh `OpenWorkflow` and return its only workflow."""
        ow = OpenWorkflow()
        ow.load(Path(path))
        return ow.workflow()


def loaded_kinds(items: Iterable[Loaded[Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in items:
        out[i.kind] = out.get(i.kind, 0) + 1
    return out
