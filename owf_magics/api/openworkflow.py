"""`OpenWorkflow`, the registry users hold, and `Workflow`, one loaded workflow bound to it.

A load parses, normalises, builds the models and validates against a copy of the catalog; only
when nothing is wrong does the copy replace the registry's catalog. A failed load changes nothing.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from owf_magics.api.durable import DurableRunMethods
from owf_magics.api.guard import load_failure
from owf_magics.api.publish import PublishMethods
from owf_magics.api.sessions import SessionMethods
from owf_magics.api.workflow import Callback, Source, Workflow
from owf_magics.connectors.http_limits import HttpLimits
from owf_magics.errors import (
    Diagnostic,
    DiagnosticBag,
    ManifestError,
    OWFError,
    sort_diagnostics,
    suggestion,
)
from owf_magics.formats import convert_documents
from owf_magics.manifest.budget import TemplateLimits
from owf_magics.manifest.catalog import Catalog, Loaded
from owf_magics.manifest.credentials import literal_credentials
from owf_magics.manifest.loader import SourceDocument, looks_like_path, parse_path, parse_text
from owf_magics.manifest.models import Agent, Connector
from owf_magics.manifest.normalize import RawManifest, split_document, wrap
from owf_magics.manifest.refs import Ref, parse_ref
from owf_magics.plan.fragments import inline_fragments
from owf_magics.plan.handlers import allowed_handlers, check_handlers, check_http_urls
from owf_magics.plan.ports import check_ports
from owf_magics.plan.resolution import Plan
from owf_magics.plan.validation import Validator
from owf_magics.runtime.backend import Backend, BackendInfo
from owf_magics.runtime.registry import BackendRegistry

if TYPE_CHECKING:
    from owf_magics.api.builder import WorkflowBuilder


class OpenWorkflow(DurableRunMethods, SessionMethods, PublishMethods):
    # the mixins: store, runs(), run(), prune(), resume(), replay(), fork() (api/durable.py);
    # sessions(), prune_sessions() (api/sessions.py); publish() (api/publish.py)
    """A registry of agents, connectors and workflows, and the backends that run them.

    Args:
        state: Where runs are stored (a SQLite path, ``":memory:"``); used by durable runs.
        max_concurrent_runs: The global limit on runs executing at once.
        environment: Where ``env.*`` values come from (default: the process environment).
        env: Environment variable names every workflow's templates may read as ``env.NAME``,
            besides those a workflow declares in ``runtime.environment``; no other name is
            readable. A name containing KEY, TOKEN, SECRET, PASSWORD or CREDENTIAL is a secret.
        template_limits: The budget of every template evaluation (`TemplateLimits`, or a dict of
            its fields: max_string, max_items, max_int_bits, max_total, max_iterations,
            max_seconds); see docs/security.md for the defaults.
        max_workers: Threads for synchronous action handlers (shared by this registry's runs;
            default 64, see docs/decisions.md). Mark cheap handlers ``@inline`` instead.
        prices: Model prices in USD per 1M tokens, by ``provider/model`` or model id, e.g.
            ``{"openai/gpt-4o": {"input": 2.5, "output": 10}}``; they override the shipped table.
        allow_handlers: The connector handler kinds (``function``, ``http``, ``command``,
            ``kafka``, ``mcp``) that manifests loaded into this registry may use; None allows
            every kind. A server that loads manifests it receives passes e.g. ``{"http"}``, so
            no manifest can run code in its process (see docs/security.md).
        http_limits: The bounds of ``http`` handler requests: an `HttpLimits` or a mapping of
            some of its fields (``timeout`` 30 s, ``max_response_bytes`` 10 MiB,
            ``max_redirects`` 5, ``enforce``); actions may set their own (docs/security.md).

    Example:
        >>> ow = OpenWorkflow()
        >>> ow.load("flows/")          # doctest: +SKIP
        >>> ow.workflow("Daily Report").plan()["fetch"].backend   # doctest: +SKIP
        'native'
    """

    def __init__(
        self,
        state: str | os.PathLike[str] | Literal[False] | Any | None = None,
        max_concurrent_runs: int | None = None,
        *,
        environment: dict[str, str] | None = None,
        max_workers: int = 64,  # engine.DEFAULT_MAX_WORKERS: sized for handlers that wait on I/O
        prices: Mapping[str, Mapping[str, float]] | None = None,
        allow_handlers: Collection[str] | None = None,
        http_limits: HttpLimits | Mapping[str, Any] | None = None,
        env: Iterable[str] | None = None,
        template_limits: TemplateLimits | Mapping[str, Any] | None = None,
        files_root: str | os.PathLike[str] | None = None,  # where `file` inputs must be (default: cwd)
    ) -> None:
        from owf_magics.agents.providers import Prices

        if isinstance(env, str):
            raise TypeError("env= takes a list of variable names, e.g. env=['REGION']")
        self.env: frozenset[str] = frozenset(env or ())
        self.template_limits = TemplateLimits.coerce(template_limits)

        self.prices = Prices(prices)
        self.allow_handlers = allowed_handlers(allow_handlers)
        self.http_limits = HttpLimits.of(http_limits)
        self.state, self.files_root = state, files_root
        self.max_concurrent_runs = max_concurrent_runs
        self.environment = environment
        self._catalog = Catalog()
        self._backends = BackendRegistry()
        self.warnings: list[Diagnostic] = []
        self.max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None
        self._store: Any = None
        self._store_lock = threading.Lock()
        self._queue: Any = None
        self._limiter: Any = None

    @property
    def rate_limiter(self) -> Any:
        """The `RateLimiter` shared by this registry's runs (agents' ``policies.rateLimit``)."""
        if self._limiter is None:
            from owf_magics.agents.limits import RateLimiter

            self._limiter = RateLimiter()
        return self._limiter

    # -- loading -------------------------------------------------------------------------------

    def load(
        self,
        source: Source,
        *,
        name: str | None = None,
        line_offset: int = 0,
        allow_handlers: Collection[str] | None = None,
    ) -> list[Loaded[Any]]:
        """Load manifests from a path (file or directory), YAML/JSON text, or Python data.

        Args:
            source: A ``.yaml``/``.yml``/``.json`` file, a directory of them, manifest text
                (multi-document YAML allowed), or an already-parsed dict/list.
            name: The name diagnostics use for text sources (default ``<string>``).
            line_offset: Added to line numbers of text sources (a cell's magic line, say).
            allow_handlers: The handler kinds this load's connectors may use (None: the
                registry's ``allow_handlers``). A connector action with another kind is a
                ``HANDLER_NOT_ALLOWED`` diagnostic.

        Returns:
            The loaded manifests, in document order.

        Raises:
            ManifestError: Every problem found; nothing is registered then.
        """
        return self.load_many([source], name=name, line_offset=line_offset, allow_handlers=allow_handlers)

    def load_many(
        self,
        sources: Iterable[Source],
        *,
        name: str | None = None,
        line_offset: int = 0,
        allow_handlers: Collection[str] | None = None,
    ) -> list[Loaded[Any]]:
        """Load several sources as one batch, so references between them resolve (all or nothing).

        `allow_handlers` as for `load`.

        Raises:
            ManifestError: Every problem found (and nothing else: see `owf_magics.api.guard`).
        """
        allowed = self.allow_handlers if allow_handlers is None else allowed_handlers(allow_handlers)
        sources = list(sources)
        for source in sources:
            if not isinstance(source, dict | list | str | os.PathLike):
                raise TypeError(f"cannot load manifests from {type(source).__name__}")
        bag = DiagnosticBag()
        # A load builds tens of thousands of acyclic containers (the positioned YAML tree, models):
        # with the collector on, each burst triggers full collections over the whole heap, a fifth
        # of a cold load. Nothing here needs one; whatever cycles a load leaves are collected after.
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._load_many(sources, bag, allowed, name=name, line_offset=line_offset)
        except ManifestError:
            raise
        except Exception as exc:  # the last resort: a bug or a library limit is still a ManifestError
            raise load_failure(exc, sources, name, bag) from None
        finally:
            if enabled:
                gc.enable()

    def _load_many(
        self,
        sources: list[Source],
        bag: DiagnosticBag,
        allowed: frozenset[str] | None,
        *,
        name: str | None,
        line_offset: int,
    ) -> list[Loaded[Any]]:
        docs: list[SourceDocument] = []
        for source in sources:
            docs.extend(self._parse(source, bag, name=name, line_offset=line_offset))
        bag.extend(literal_credentials(docs))  # a warning in every entry point (docs/security.md)
        docs = convert_documents(docs, bag)  # OpenFlow, AgentFlow, ... become OpenWorkflow documents
        raws: list[RawManifest] = []
        for doc in docs:
            raws.extend(split_document(doc, bag))
        catalog = self._catalog.fork()
        check_ports(raws, catalog, bag)  # TYPE_MISMATCH, before inline parts dissolve their bindings
        inline_fragments(raws, catalog, bag)  # `workflow:` steps with `inline: true` become prefixed steps
        validator = Validator(catalog, self._backends, bag, env=self.env)
        items = validator.build(raws)
        check_handlers(items, allowed, bag)
        if (allowed is None or "mcp" in allowed) and any(i.kind == "connector" and i.model.mcp for i in items):
            from owf_magics.connectors.mcp import list_at_load

            list_at_load(self, items, bag.warnings)  # MCP servers' tools become their actions
        for item in items:
            catalog.add(item)
        validator.check(items)
        check_http_urls(items, bag)
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

    def validate(
        self,
        source: Source,
        *,
        name: str | None = None,
        line_offset: int = 0,
        allow_handlers: Collection[str] | None = None,
    ) -> list[Diagnostic]:
        """Check manifests against this registry without registering them; returns the warnings.

        Raises:
            ManifestError: Every problem found (``HANDLER_NOT_ALLOWED`` included, as for `load`).
        """
        saved = self._catalog, self.warnings
        try:
            self.load(source, name=name, line_offset=line_offset, allow_handlers=allow_handlers)
            return self.warnings
        finally:
            self._catalog, self.warnings = saved

    def load_detached(self, source: Source, *, name: str | None = None) -> list[Loaded[Any]]:
        """Load manifests checked against this registry without registering them (the one-step
        workflow an agent runs as on its own, say); returns them."""
        saved = self._catalog, self.warnings
        try:
            return self.load(source, name=name)
        finally:
            self._catalog, self.warnings = saved

    def load_agent(self, ref_or_name: str) -> Any:
        """A loaded agent, runnable on its own: ``.execute(input)``, ``.stream(input)``.

        Args:
            ref_or_name: ``agent:ns/name@range`` or a loaded agent's name (its newest version).

        Raises:
            OWFError: Code VALIDATION when no such agent is loaded.
        """
        from owf_magics.api.agent import load_agent

        return load_agent(self, ref_or_name)

    def unload(self, items: Iterable[Loaded[Any]]) -> None:
        """Forget loaded manifests (a notebook cell that no longer defines them, say).

        Workflows that referenced them are checked again the next time they are planned.
        """
        catalog = self._catalog.fork()
        for item in items:
            catalog.remove(item)
        self._catalog = catalog

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

    def builder(self, name: str, *, version: str = "1.0.0") -> WorkflowBuilder:
        """A mutable `WorkflowBuilder` whose `build()` registers an immutable workflow here.

        See docs/composition.md: steps, whole workflows (inline or nested), edges, typed ports.
        """
        from owf_magics.api.builder import WorkflowBuilder

        return WorkflowBuilder(self, name, version=version)

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
        """Shut the run queue, the handler thread pool, MCP sessions and the run store down."""
        self.shutdown()
        from owf_magics.connectors.mcp import close_pool

        close_pool(self)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._store is not None:
            self._store.close()
            self._store = None

    # -- the run queue ---------------------------------------------------------------------------

    def map(
        self,
        workflow: Workflow | str,
        inputs: Iterable[Mapping[str, Any]],
        *,
        client: Any = None,
        cluster: str | None = None,
        concurrency: int | None = None,
        chunk_size: int | None = None,
        prefer_backend: str | None = None,
        secrets: Mapping[str, str] | None = None,
        progress: Any = None,
    ) -> Any:
        """Run a workflow once per input mapping; returns a `BatchResult` (results in input order,
        ``.frame``, ``.trace``, ``.usage``, ``retry_failed()``). A failed input never fails the batch.

        Args:
            workflow: A loaded `Workflow` or its name.
            inputs: One mapping of inputs per run.
            client: A ``distributed.Client`` (or a scheduler address) to run on that cluster.
            cluster: ``"local"``: a ``LocalCluster`` (2 worker processes) started and closed for
                this call. Neither: in this process.
            concurrency: Runs at once in this process, or per task on a worker (default 32).
            chunk_size: Inputs per cluster task (default: about four tasks per worker, at most
                `concurrency`).
            prefer_backend: The backend for steps that name none.
            secrets: Values templates read as ``secrets.NAME`` (shipped with each task to workers).
            progress: None: a tqdm text bar in a terminal or a notebook; True/False to force;
                or a callable given ``(done, total)`` after each run (in-process) or task (Dask).
        """
        from owf_magics.api.batch import run_batch

        return run_batch(
            self,
            workflow,
            list(inputs),
            client=client,
            cluster=cluster,
            concurrency=concurrency,
            chunk_size=chunk_size,
            prefer_backend=prefer_backend,
            secrets=secrets,
            progress=progress,
        )

    def submit(
        self,
        workflow: Workflow | str,
        inputs: Mapping[str, Any] | None = None,
        *,
        prefer_backend: str | None = None,
        secrets: Mapping[str, str] | None = None,
        callback: Callback | None = None,
    ) -> Any:
        """Queue a run: at most ``max_concurrent_runs`` (default 3) run at once, the rest wait in
        FIFO order. Returns a handle with ``run_id``, ``status``, ``result(timeout=None)``, ``cancel()``."""
        from owf_magics.runs.queue import DEFAULT_MAX_CONCURRENT, RunQueue

        wf = self.workflow(workflow) if isinstance(workflow, str) else workflow
        if self._queue is None:
            self._queue = RunQueue(self.max_concurrent_runs or DEFAULT_MAX_CONCURRENT)
        from owf_magics.runtime.context import new_run_id

        run_id = new_run_id()  # one generator for execute() and submit(): ids never collide in a process
        return self._queue.submit(
            lambda: wf.aexecute(inputs, prefer_backend, secrets, callback, run_id=run_id),
            run_id=run_id,
            label=wf.name,
        )

    def queue_status(self) -> Any:
        """What the run queue holds: running and queued run ids, and finished counts."""
        from owf_magics.runs.queue import DEFAULT_MAX_CONCURRENT, QueueStatus

        if self._queue is None:
            return QueueStatus(self.max_concurrent_runs or DEFAULT_MAX_CONCURRENT, [], [], 0, 0, 0)
        return self._queue.queue_status()

    def shutdown(self, *, cancel_queued: bool = True, wait: bool = True) -> None:
        """Stop the run queue: queued runs are canceled (by default), running ones finish."""
        if self._queue is not None:
            self._queue.shutdown(cancel_queued=cancel_queued, wait=wait)
            self._queue = None

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

    def plan_loaded(self, item: Loaded[Any], prefer_backend: str | None = None) -> Plan:
        """The plan of a loaded workflow (a sub-workflow's, for the engine)."""
        return Workflow(self, item).plan(prefer_backend=prefer_backend)

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
    from owf_magics.errors import format_path

    return format_path(raw.prefix)


def loaded_kinds(items: Iterable[Loaded[Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in items:
        out[i.kind] = out.get(i.kind, 0) + 1
    return out


class Workflows:
    """The SDK contract's file-level entry point."""

    @staticmethod
    def from_file(path: str | os.PathLike[str]) -> Workflow:
        """Load a file into a fresh `OpenWorkflow` and return its only workflow."""
        ow = OpenWorkflow()
        ow.load(Path(path))
        return ow.workflow()
