"""Batch runs: `run_batch` (``ow.map(workflow, inputs)``) runs a workflow once per input mapping,
in this process (bounded concurrency) or on a Dask distributed cluster, and returns a `BatchResult`.

On a cluster, every task carries the registry's manifests as text (each loaded workflow, agent and
connector as JSON), never pickled engine objects: a worker loads them into an `OpenWorkflow` of its
own once (cached by the texts' hash) and runs a chunk of inputs with the same bounded concurrency
as in-process. Run ids are given by the batch (``<batch>-<index>``): a chunk redone after its worker
died first looks its inputs' runs up in the store, so an input whose run completed is read back,
not run again, and every input ends with exactly one completed run (docs/scale.md).

A failed input never fails the batch: its result has status ``failed`` and an error (an input the
workflow refuses gets code ``VALIDATION``); `BatchResult.retry_failed` runs those again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import math
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from owf_magics.api.batch_wire import Opaque, PackedRuns, fewer_collections, unpacked
from owf_magics.errors import OWFError
from owf_magics.runtime.frames import typed_frame
from owf_magics.runtime.results import RunResult, StepError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["BatchResult", "run_batch", "run_chunk"]

#: Runs at once per process (in-process) or per worker task (on a cluster), unless told otherwise.
DEFAULT_CONCURRENCY = 32
_FIXED_COLUMNS = ("index", "run_id", "status", "duration_ms", "tokens", "cost_usd", "error_code")

Progress = Callable[[int, int], None]


class BatchResult:
    """The runs of one batch, in input order.

    Attributes:
        results: One `RunResult` per input, in input order.
        inputs: The inputs, in order.
        workflow: The workflow's name.
        batch_id: The prefix of the batch's run ids.
        duration_ms: Wall time of the batch.
        dashboard: The Dask dashboard's address when the batch ran on a cluster that has one.
        limiter: On a cluster, what the batch's shared rate limiter did (``reservations``: how many
            limited calls it paced, ``keys``: which limiter keys); None in-process, or when the
            limiter was lost (each worker then used its own).
    """

    def __init__(
        self,
        results: list[RunResult],
        inputs: list[dict[str, Any]],
        *,
        workflow: str,
        batch_id: str,
        duration_ms: float,
        where: str,
        dashboard: str | None = None,
        rerun: Callable[[list[int]], BatchResult] | None = None,
        limiter: dict[str, Any] | None = None,
    ) -> None:
        self.results = results
        self.inputs = inputs
        self.workflow = workflow
        self.batch_id = batch_id
        self.duration_ms = duration_ms
        self.where = where
        self.dashboard = dashboard
        self.limiter = limiter
        self._rerun = rerun

    def __len__(self) -> int:
        return len(self.results)

    @property
    def statuses(self) -> dict[str, int]:
        """How many runs ended in each status."""
        counts: dict[str, int] = {}
        for r in self.results:
            counts[r.status] = counts.get(r.status, 0) + 1
        return counts

    @property
    def failed(self) -> list[int]:
        """The indexes of the inputs whose run did not complete."""
        return [i for i, r in enumerate(self.results) if r.status != "completed"]

    @property
    def frame(self) -> pd.DataFrame:
        """One row per run: index, run_id, status, each output (flattened to its key), duration_ms,
        tokens, cost_usd, error_code."""
        rows = []
        for i, r in enumerate(self.results):
            row: dict[str, Any] = {
                "index": i,
                "run_id": r.run_id,
                "status": r.status,
                "duration_ms": round(r.duration_ms, 3),
                "tokens": r.total_tokens,
                "cost_usd": r.cost_usd,
                "error_code": r.error.code if r.error else None,
            }
            for key, value in (r.outputs or {}).items():
                row[key if key not in _FIXED_COLUMNS else f"output.{key}"] = value
            rows.append(row)
        return typed_frame(rows, kind="batch")  # one dtype per column, None for a missing text

    def _concat(self, attr: str) -> pd.DataFrame:
        rows = [{"index": i, "run_id": r.run_id, **row} for i, r in enumerate(self.results) for row in getattr(r, attr)]
        return typed_frame(rows, kind=attr.removesuffix("_rows"))

    @property
    def trace(self) -> pd.DataFrame:
        """Every run's trace rows, concatenated in input order, with ``index`` and ``run_id``."""
        return self._concat("trace_rows")

    @property
    def usage(self) -> pd.DataFrame:
        """Every run's usage rows (tokens, cost), concatenated, with ``index`` and ``run_id``."""
        return self._concat("usage_rows")

    def retry_failed(self) -> BatchResult:
        """Run the inputs that did not complete again (the same way); returns a new `BatchResult`
        with their new results in place and the completed ones unchanged."""
        todo = self.failed
        if not todo or self._rerun is None:
            return self
        again = self._rerun(todo)
        results = list(self.results)
        for pos, i in enumerate(todo):
            results[i] = again.results[pos]
        return BatchResult(
            results,
            self.inputs,
            workflow=self.workflow,
            batch_id=self.batch_id,
            duration_ms=self.duration_ms + again.duration_ms,
            where=self.where,
            dashboard=self.dashboard,
            rerun=self._rerun,
        )

    def summary(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items()))
        tokens = sum(r.total_tokens for r in self.results)
        cost = round(sum(r.cost_usd for r in self.results), 6)
        text = (
            f"BatchResult: workflow '{self.workflow}', {len(self.results)} runs ({counts or 'none'})"
            f" {self.where} in {self.duration_ms / 1000:.2f} s; {tokens} tokens, ${cost}"
        )
        if self.failed:
            text += f"; failed inputs {self.failed[:10]}{' ...' if len(self.failed) > 10 else ''}: batch.retry_failed()"
        if self.dashboard:
            text += f"; dashboard {self.dashboard}"
        return text

    def __repr__(self) -> str:
        return self.summary()


# -- running one input ----------------------------------------------------------------------------


def _failed(run_id: str, workflow: str, exc: BaseException) -> RunResult:
    code = exc.code if isinstance(exc, OWFError) else "INTERNAL_ERROR"
    message = exc.message if isinstance(exc, OWFError) else f"{type(exc).__name__}: {exc}"
    details = dict(exc.details) if isinstance(exc, OWFError) and isinstance(exc.details, dict) else {}
    return RunResult(run_id, workflow, "failed", {}, {}, [], error=StepError(code, message, details))


async def _run_one(ow: Any, wf: Any, run_id: str, inputs: Mapping[str, Any], options: Mapping[str, Any]) -> RunResult:
    """Run one input under `run_id`; a completed run already stored under it (or a retry id) is read
    back instead (its chunk is being redone)."""
    store = ow.store
    rid = run_id
    if store is not None:
        for attempt in range(1000):
            rid = run_id if attempt == 0 else f"{run_id}.{attempt}"
            record = store.get_run(rid)
            if record is None:
                break
            if record.status == "completed":
                return ow.run(rid)  # type: ignore[no-any-return]
    try:
        result: RunResult = await wf.aexecute(inputs, options.get("prefer_backend"), options.get("secrets"), run_id=rid)
        return result
    except Exception as exc:  # an input the workflow refuses, a missing backend: this input fails
        return _failed(rid, wf.name, exc)


async def _run_many(
    ow: Any,
    wf: Any,
    items: Sequence[tuple[int, str, Mapping[str, Any]]],
    options: Mapping[str, Any],
    tick: Callable[[], None] | None = None,
) -> list[RunResult]:
    gate = asyncio.Semaphore(max(1, int(options.get("concurrency") or DEFAULT_CONCURRENCY)))

    async def one(run_id: str, inputs: Mapping[str, Any]) -> RunResult:
        async with gate:
            result = await _run_one(ow, wf, run_id, inputs, options)
        if tick is not None:
            tick()
        return result

    return list(await asyncio.gather(*(one(rid, inp) for _i, rid, inp in items)))


def _blocking(coro: Any) -> Any:
    """Run a coroutine to the end from sync code, also inside a running loop (a kernel)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="owf-batch") as pool:
        return pool.submit(asyncio.run, coro).result()


# -- the payload a worker rebuilds the registry from ----------------------------------------------

_PLURALS = {"connector": "connectors", "agent": "agents", "workflow": "workflows", "bundle": "bundles"}


def manifest_payload(ow: Any) -> dict[str, Any]:
    """What a worker needs to rebuild the registry: the manifests as JSON texts, the state, env."""
    document: dict[str, list[Any]] = {}  # one document: references resolve whatever the order
    for kind, plural in _PLURALS.items():
        items = [item.raw.data for item in ow.catalog.all(kind)]
        if items:
            document[plural] = items
    sources = [json.dumps(document, default=str, sort_keys=True)] if document else []
    state = ow.state
    if state is not None and state is not False and not isinstance(state, str):
        path = getattr(state, "path", None)  # a store object: ship where it is
        state = str(path) if path is not None else None
    elif state is not None and state is not False:
        state = str(state)
    root = getattr(ow, "files_root", None)  # `file` inputs: the same root on every worker
    root = os.path.abspath(root) if root is not None else None
    key = hashlib.sha256(json.dumps([sources, state, sorted(ow.env), root]).encode()).hexdigest()
    return {"key": key, "sources": sources, "state": state, "env": sorted(ow.env), "files_root": root}


_REGISTRIES: dict[str, Any] = {}
_REGISTRIES_LOCK = threading.Lock()


def _registry(payload: Mapping[str, Any]) -> Any:
    """This worker's registry for a payload, loaded once."""
    from owf_magics.api import OpenWorkflow  # the package, not the sibling module (which imports this one)

    with _REGISTRIES_LOCK:
        ow = _REGISTRIES.get(payload["key"])
        if ow is None:
            ow = OpenWorkflow(state=payload["state"], env=payload["env"], files_root=payload.get("files_root"))
            for text in payload["sources"]:
                ow.load(text)
            _REGISTRIES[payload["key"]] = ow
        return ow


def run_chunk(
    payload: Mapping[str, Any],
    workflow: tuple[str, str],
    items: Sequence[tuple[int, str, Mapping[str, Any]]] | Opaque,
    options: Mapping[str, Any],
) -> list[RunResult] | PackedRuns:
    """A cluster task: run some inputs of a batch on this worker (the registry from `payload`); with
    ``options["packed"]`` the results travel back as one compact pickle (`owf_magics.api.batch_wire`)."""
    ow = _registry(payload)
    todo: Sequence[tuple[int, str, Mapping[str, Any]]] = items.value if isinstance(items, Opaque) else items
    if options.get("limiter") is not None:  # the batch's one rate limiter (a Dask actor)
        from owf_magics.api.batch_limits import install

        install(ow, options["limiter"])
    wf = ow.workflow(*workflow)
    with fewer_collections():
        results: list[RunResult] = _blocking(_run_many(ow, wf, todo, options))
    return PackedRuns(results) if options.get("packed") else results


# -- the batch ------------------------------------------------------------------------------------


class _Progress:
    """Progress of a batch: a callable, or tqdm's text bar (on stderr; in a notebook too, where a
    widget bar would be stored at 0% by a headless run and read as nothing where widgets cannot live)."""

    def __init__(self, progress: bool | Progress | None, total: int, desc: str) -> None:
        self.total, self.done = total, 0
        self.callback: Progress | None = progress if callable(progress) else None
        self.bar: Any = None
        show = progress is True or (progress is None and _interactive())
        if show:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc=desc, unit="run")
            except ImportError:  # pragma: no cover - tqdm is in the dask extra
                self.bar = None
        self._lock = threading.Lock()

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
            done = self.done
        if self.bar is not None:
            self.bar.update(n)
        if self.callback is not None:
            self.callback(done, self.total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _interactive() -> bool:
    if "ipykernel" in sys.modules:
        return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def run_batch(
    ow: Any,
    workflow: Any,
    inputs: Sequence[Mapping[str, Any]],
    *,
    client: Any = None,
    cluster: str | None = None,
    concurrency: int | None = None,
    chunk_size: int | None = None,
    prefer_backend: str | None = None,
    secrets: Mapping[str, str] | None = None,
    progress: bool | Progress | None = None,
    batch_id: str | None = None,
    indexes: Sequence[int] | None = None,
) -> BatchResult:
    """`OpenWorkflow.map`: see its docstring."""
    from owf_magics.api.workflow import Workflow

    wf = workflow if isinstance(workflow, Workflow) else ow.workflow(workflow)
    rows = [dict(i) for i in inputs]
    for pos, row in enumerate(rows):
        if not isinstance(row, dict):
            raise OWFError(f"input {pos} of the batch is not a mapping", code="VALIDATION", details={"index": pos})
    batch = batch_id or f"batch-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    idx = list(indexes) if indexes is not None else list(range(len(rows)))
    suffix = "" if indexes is None else f".retry{uuid.uuid4().hex[:4]}"
    items = [(i, f"{batch}-{i:05d}{suffix}", rows[pos]) for pos, i in enumerate(idx)]
    options = {"concurrency": concurrency, "prefer_backend": prefer_backend, "secrets": dict(secrets or {})}
    if cluster is not None and cluster != "local":
        raise OWFError(
            f"cluster must be 'local' (a LocalCluster for this call), got {cluster!r}",
            code="VALIDATION",
            details={"suggestion": "pass client=distributed.Client(ADDRESS) for an existing cluster"},
        )

    def rerun(failed: list[int]) -> BatchResult:
        return run_batch(
            ow,
            wf,
            [rows[i] for i in failed],
            client=client,
            cluster=cluster,
            concurrency=concurrency,
            chunk_size=chunk_size,
            prefer_backend=prefer_backend,
            secrets=secrets,
            progress=progress,
            batch_id=batch,
            indexes=failed,
        )

    started = time.perf_counter()
    bar = _Progress(progress, len(items), f"{wf.name}")
    dashboard = limiter = None
    try:
        if client is None and cluster is None:
            where = "in-process"
            with fewer_collections():
                results = _blocking(_run_many(ow, wf, items, options, bar.advance))
        else:
            where = "on Dask"
            results, dashboard, limiter = _on_dask(ow, wf, items, options, client, chunk_size, bar)
    finally:
        bar.close()
    return BatchResult(
        results,
        [rows[p] for p in range(len(items))],
        workflow=wf.name,
        batch_id=batch,
        duration_ms=(time.perf_counter() - started) * 1000,
        where=where,
        dashboard=dashboard,
        rerun=rerun,
        limiter=limiter,
    )


def _on_dask(
    ow: Any,
    wf: Any,
    items: Sequence[tuple[int, str, Mapping[str, Any]]],
    options: Mapping[str, Any],
    client: Any,
    chunk_size: int | None,
    bar: _Progress,
) -> tuple[list[RunResult], str | None, dict[str, Any] | None]:
    try:
        import distributed
    except ImportError as exc:  # pragma: no cover - the dask extra is in dev
        from owf_magics.errors import UnavailableError

        raise UnavailableError("batch runs on Dask need distributed: pip install 'owf-magics[dask]'") from exc
    dask: Any = distributed  # untyped: mypy strict would refuse every call
    own: list[Any] = []
    if client is None:  # cluster="local": a LocalCluster for this call
        local = dask.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
        )
        own = [local, dask.Client(local)]
        client = own[1]
    elif isinstance(client, str):
        client = dask.Client(client)
        own = [client]
    try:
        dashboard: str | None = getattr(client, "dashboard_link", None)
        if dashboard and bar.bar is not None:
            bar.bar.set_postfix_str(f"dashboard {dashboard}")
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        per_task = int(options.get("concurrency") or DEFAULT_CONCURRENCY)  # a task's runs all start at once
        size = chunk_size or max(1, min(per_task, math.ceil(len(items) / (workers * 4))))
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        payload = manifest_payload(ow)
        ref = (wf.name, wf.version)
        from owf_magics.api.batch_limits import BatchLimiter

        limiter = client.submit(BatchLimiter, actor=True, pure=False)  # rate limits shared by every worker
        handle = limiter.result()  # held until the batch ends; tasks get its address, not a dependency
        options = {**options, "limiter": (handle._address, handle.key), "packed": True}
        futures = [client.submit(run_chunk, payload, ref, Opaque(chunk), options, pure=False) for chunk in chunks]
        sizes = {f.key: len(c) for f, c in zip(futures, chunks, strict=True)}
        got: dict[Any, list[RunResult]] = {}
        # each chunk's results come back as soon as it ends: their transfer and unpickling overlap
        # the chunks still running instead of all happening after the last one; the results pile
        # up here, so the collector is not asked to walk them again every 700 new objects
        with fewer_collections():
            for done, chunk_results in dask.as_completed(futures, with_results=True):
                got[done.key] = unpacked(chunk_results)
                bar.advance(sizes[done.key])
        results: list[RunResult] = [r for f in futures for r in got[f.key]]
        try:
            stats: dict[str, Any] | None = handle.stats().result(5)
        except Exception:  # the limiter's worker died during the batch
            stats = None
        return results, dashboard, stats
    finally:
        for thing in reversed(own):
            thing.close()
