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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from owf_magics.api.guard import load_failure
from owf_magics.api.publish import publish_workflow
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
from owf_magics.plan.fragments import graph_signature, inline_fragments
from owf_magics.plan.handlers import allowed_handlers, check_handlers, check_http_urls
from owf_magics.plan.ports import check_ports
from owf_magics.plan.resolution import Plan
from owf_magics.plan.validation import Validator
from owf_magics.runtime.backend import Backend, BackendInfo
from owf_magics.runtime.registry import BackendRegistry

if TYPE_CHECKING:
    import pandas as pd

    from owf_magics.api.builder import WorkflowBuilder
    from owf_magics.plan.graph import Graph
    from owf_magics.runtime.results import RunResult


class OpenWorkflow(SessionMethods):  # sessions(), prune_sessions(): api/sessions.py
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

    # -- durable runs ----------------------------------------------------------------------------

    @property
    def store(self) -> Any:
        """The run store (a `RunStore`; SQLite at ``state``), opened on first use; None when
        ``state=False``."""
        if self._store is None and self.state is not False:
            with self._store_lock:  # the run queue's thread and the caller's may both ask first
                if self._store is None:
                    from owf_magics.runs.store import open_store

                    self._store = open_store(self.state)
        return self._store

    def _require_store(self) -> Any:
        store = self.store
        if store is None:
            raise OWFError(
                "this registry keeps no runs (state=False)",
                code="VALIDATION",
                details={"suggestion": "OpenWorkflow(state='runs.db') keeps runs to resume, replay and fork"},
            )
        return store

    def runs(self) -> pd.DataFrame:
        """The stored runs as a DataFrame (run_id, workflow, status, started_at, finished_at, ...)."""
        from owf_magics.runs.store import runs_frame

        return runs_frame(self._require_store())

    def run(self, run_id: str) -> RunResult:
        """A stored run as a `RunResult` (its steps, outputs, events and pending requests)."""
        from owf_magics.runs.store import run_result

        result = run_result(self._require_store(), run_id)
        if result is None:
            raise OWFError(f"no stored run '{run_id}'", code="VALIDATION", details={"run_id": run_id})
        try:  # the stored trace is in the order things happened; a loaded workflow gives graph order
            rank = {sid: i for i, sid in enumerate(self.workflow(result.workflow).plan().order)}
        except OWFError:
            return result

        def order(row: dict[str, Any]) -> tuple[Any, ...]:
            it = tuple(int(p) for p in str(row.get("iteration") or "").split(".") if p.isdigit())
            return (rank.get(str(row.get("step_id")), len(rank)), it, row.get("attempt") or 0)

        result.trace_rows.sort(key=order)
        return result

    def prune(self, older_than: timedelta | float) -> int:
        """Delete finished runs older than `older_than` (a timedelta or seconds); returns how many."""
        return int(self._require_store().prune(older_than))

    def resume(
        self,
        run_id: str,
        approvals: Mapping[str, bool] | None = None,
        event: Any = None,
        *,
        secrets: Mapping[str, str] | None = None,
        callback: Callback | None = None,
        inputs: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> RunResult:
        """Continue a waiting (or killed) run from where it stopped; works in a new process.

        Steps that completed are not run again: their recorded results are used. The manifests
        must be loaded in this registry, and secrets passed again (they are never stored).

        Args:
            run_id: The stored run.
            approvals: ``{request_id: True | False}`` answers to its approval requests.
            event: The payload of the event its ``wait`` awaits, or ``{event_name: payload}``.
            secrets: The run's secrets.
            callback: As for `Workflow.execute`.
            inputs: The run's inputs again, when they carried secret values (those are stored
                redacted); by default the stored inputs.
            force: Continue a ``running`` run that holds no lease (one stored before leases
                existed). A run whose process died is resumable without it once its lease
                expires (`SQLiteRunStore(lease_seconds=...)`, 30 s by default); a run whose
                lease is alive is never resumed, with ``force`` or without, so a run that is
                alive elsewhere is never run twice (docs/durable.md, "Leases").

        Raises:
            OWFError: VALIDATION for an unknown or finished run, an unknown request id, a run
                whose lease a live process holds (the message names it and the expiry), a run
                another resume claimed first, or a leaseless ``running`` run without ``force``.
        """
        from owf_magics.engine.executor import Resume
        from owf_magics.runs.leases import lease_refused

        store = self._require_store()
        record = store.get_run(run_id)
        if record is None:
            raise OWFError(f"no stored run '{run_id}'", code="VALIDATION", details={"run_id": run_id})
        if record.lease_owner is not None and record.lease_until is not None and record.lease_alive:
            raise lease_refused(run_id, record.lease_owner, record.lease_until.timestamp())
        # a running run whose lease expired (its process died) resumes without force; one without
        # a lease (stored before leases) only with it
        resumable = ("waiting_approval", "running") if force or record.lease_owner else ("waiting_approval",)
        if record.status not in resumable:
            hint = " (if its process died, resume it with force=True)" if record.status == "running" else ""
            raise OWFError(
                f"run '{run_id}' is {record.status}: only waiting runs resume{hint}",
                code="VALIDATION",
                details={"run_id": run_id, "status": record.status},
            )
        wf = self.workflow(record.workflow, record.workflow_version)  # before anything is changed
        wf.plan(prefer_backend=record.metadata.get("prefer_backend"))
        stored_graph = record.metadata.get("graph")
        if stored_graph is not None and stored_graph != graph_signature(wf.graph):
            raise OWFError(
                f"run '{run_id}' was stored by another graph of workflow '{wf.name}' v{wf.version} (its steps or "
                "edges changed, e.g. a recomposed part): its checkpoints do not fit this one; load the workflow "
                "it ran, or start a new run",
                code="VALIDATION",
                details={"run_id": run_id, "stored_graph": stored_graph, "graph": graph_signature(wf.graph)},
            )
        # one atomic compare-and-set: of two resumes at once exactly one gets here, under a lease
        store.claim_run(run_id, force=force)
        try:
            _answer_requests(store, run_id, approvals or {}, event)
        except BaseException:
            store.set_status(run_id, "waiting_approval", expected="running")  # releases the lease
            raise
        answers: dict[str, list[Any]] = {}
        for request in store.get_pending(run_id, include_resolved=True):
            answers.setdefault(request.step_id, []).append(request)
        resume = Resume(store.get_steps(run_id), answers, continuing=True, first_event=len(store.get_events(run_id)))
        given = dict(inputs) if inputs is not None else record.inputs
        try:
            result = wf._run(
                given,
                record.metadata.get("prefer_backend"),
                secrets,
                callback,
                None,
                run_id,
                resume,
                record.metadata.get("trigger"),
            )
        except BaseException:
            store.set_status(run_id, "waiting_approval", expected="running")  # it can be resumed again
            raise
        result.events = [e.event for e in store.get_events(run_id)]
        return result

    def replay(self, run_id: str, *, secrets: Mapping[str, str] | None = None) -> RunResult:
        """Run a stored run again as a new run, serving the recorded output of every step that
        succeeded (no model or handler is called for them; steps that failed or waited run
        again); fails loudly when a step's resolved input differs from the record."""
        return self._rerun(run_id, None, secrets, replay=True)

    def fork(self, run_id: str, from_step: str, *, secrets: Mapping[str, str] | None = None) -> RunResult:
        """A new run from a stored one: steps before `from_step` keep their recorded results,
        `from_step` and everything after it run again."""
        return self._rerun(run_id, from_step, secrets, replay=False)

    def _rerun(
        self, run_id: str, from_step: str | None, secrets: Mapping[str, str] | None, *, replay: bool
    ) -> RunResult:
        from owf_magics.engine.executor import Resume

        store = self._require_store()
        record = store.get_run(run_id)
        if record is None:
            raise OWFError(f"no stored run '{run_id}'", code="VALIDATION", details={"run_id": run_id})
        wf = self.workflow(record.workflow, record.workflow_version)
        recorded = store.get_steps(run_id)
        metadata: dict[str, Any] = {"replay_of": run_id} if replay else {"fork_of": run_id}
        if from_step is not None:
            if from_step not in wf.graph.nodes:
                raise OWFError(
                    f"workflow '{wf.name}' has no step '{from_step}'",
                    code="VALIDATION",
                    details={"step": from_step, "steps": sorted(wf.graph.nodes)},
                )
            again = _downstream(wf.graph, from_step)
            recorded = {k: r for k, r in recorded.items() if _top_step(r.step_id) not in again}
            metadata["from_step"] = from_step
        else:
            again = set()
        answers: dict[str, list[Any]] = {}
        for request in store.get_pending(run_id, include_resolved=True):
            # an answer belongs to the run it was given in: a step that runs again asks again
            if request.resolved and _top_step(request.step_id) not in again:
                answers.setdefault(request.step_id, []).append(request)
        resume = Resume(recorded, answers, replay=replay, metadata=metadata)
        trigger = record.metadata.get("trigger")
        return wf._run(record.inputs, record.metadata.get("prefer_backend"), secrets, None, None, None, resume, trigger)

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

    def publish(self, name: str | None = None, *, server: str, token: str | None = None) -> dict[str, Any]:
        """Publish a loaded workflow to ``owf serve`` at `server` (docs/service.md#publishing)."""
        return publish_workflow(self, name, server=server, token=token)

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


def _answer_requests(store: Any, run_id: str, approvals: Mapping[str, bool], event: Any) -> None:
    """Record the answers `resume` was given, and apply approval timeouts (``onTimeout``).

    Every answer is checked before any is recorded, so a bad one loses none of the others."""
    open_requests = {r.id: r for r in store.get_pending(run_id)}
    unknown = [request_id for request_id in approvals if request_id not in open_requests]
    if unknown:
        raise OWFError(
            f"run '{run_id}' has no open request '{unknown[0]}'",
            code="VALIDATION",
            details={"request_id": unknown[0], "open": sorted(open_requests)},
        )
    answers: list[tuple[str, Any]] = [(request_id, bool(value)) for request_id, value in approvals.items()]
    waiting = [r for r in open_requests.values() if r.kind == "event"]
    if event is not None:
        names: dict[Any, list[Any]] = {}
        for request in waiting:
            names.setdefault(request.payload.get("event"), []).append(request)
        if isinstance(event, Mapping) and event and set(event) <= set(names):
            answers += [(r.id, payload) for name, payload in event.items() for r in names[name]]
        elif len(names) == 1:
            answers += [(r.id, event) for r in waiting]  # every step waiting for that event gets it
        else:
            raise OWFError(
                f"run '{run_id}' waits for {len(names)} events: pass event={{name: payload}}"
                if names
                else f"run '{run_id}' waits for no event",
                code="VALIDATION",
                details={"events": sorted(str(n) for n in names)},
            )
    for request_id, value in answers:
        store.resolve_pending(request_id, value)
    answered = {request_id for request_id, _ in answers}
    now = datetime.now(UTC)
    for request in open_requests.values():
        timeout = request.payload.get("timeout")
        if request.id in answered or request.kind != "approval" or not isinstance(timeout, int | float):
            continue
        if (now - request.created_at).total_seconds() >= timeout:
            policy = request.payload.get("onTimeout", "reject")
            if policy in ("reject", "allow"):
                store.resolve_pending(request.id, policy == "allow")


def _downstream(graph: Graph, step_id: str) -> set[str]:
    """A step, the steps that depend on it (transitively), every step inside any of them, and
    the steps that hold it (the loop or branch it sits in runs again) with their dependents."""
    out: set[str] = set()
    todo = [step_id]
    while todo:
        sid = todo.pop()
        if sid in out:
            continue
        out.add(sid)
        todo.extend(graph.dependents.get(sid, ()))
        for key in graph.child_blocks.get(sid, ()):
            todo.extend(graph.order.get(key, ()))
        node = graph.nodes.get(sid)
        if node is not None and node.parent:
            todo.append(node.parent)
    return out


def _top_step(key: str) -> str:
    """The workflow's own step a step key belongs to: ``call/inner[2]`` -> ``call``."""
    return key.split("/", 1)[0].split("[", 1)[0]


class Workflows:
    """The SDK contract's file-level entry point."""

    @staticmethod
    def from_file(path: str | os.PathLike[str]) -> Workflow:
        """Load a file into a fresh `OpenWorkflow` and return its only workflow."""
        ow = OpenWorkflow()
        ow.load(Path(path))
        return ow.workflow()
