"""The service's runs: started, resumed, canceled and listed through the public API, each kept in
its caller's tenant.

Every run gets an id no other worker can pick, and its labels (``tenant``, ``sub``, and for an
inline manifest its text) are written to the store *before* the run starts, so no caller ever sees
a run outside its tenant, and any worker on the same store can resume it. Runs execute on a
`RunQueue` (at most ``max_runs`` at once per worker, FIFO), off the HTTP event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from owf_magics.api import OpenWorkflow, Workflow
from owf_magics.errors import OWFError
from owf_magics.runs.crypto import Keyring
from owf_magics.runs.queue import RunHandle, RunQueue
from owf_magics.service import manifests
from owf_magics.service.auth import Principal
from owf_magics.service.config import ServiceConfig
from owf_magics.service.errors import ApiError
from owf_magics.service.observability import Metrics, RunObserver
from owf_magics.service.published import Published, split_ref

log = logging.getLogger("owf_magics.service")

FINISHED = ("completed", "failed", "canceled")
#: The label a cancel request leaves for the worker that runs the run.
CANCEL_LABEL = "cancel_requested"
_RESUME_MARK = "~resume"


def new_run_id() -> str:
    """UTC time to the second, then 12 random hex digits: sortable, and unique across workers."""
    return f"{datetime.now(UTC):%Y%m%d_%H%M%S}_{uuid.uuid4().hex[:12]}"


@dataclass
class Started:
    """What `RunService.start` hands back: the run's id and the handle of its queued work."""

    run_id: str
    handle: RunHandle[Any]


class RunService:
    """Runs workflows for the HTTP layer. One per worker process.

    Args:
        config: The service's settings (the manifests to load, the store, limits, secrets).
    """

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.ow = OpenWorkflow(state=config.state, max_concurrent_runs=config.max_runs, env=config.env or None)
        if config.paths:
            self.ow.load_many([Path(p) for p in config.paths])
            for w in self.ow.warnings:  # literal credentials, say: on every start, in the log
                log.warning("%s", w.format())
        self.store: Any = self.ow.store
        if not callable(getattr(self.store, "set_labels", None)):
            raise OWFError(
                f"the run store {self.store!r} keeps no run labels, which the service needs for tenants",
                code="UNAVAILABLE",
            )
        self.keyring = Keyring(config.secret_keys)
        self.published = Published(self.store, allow_handlers=config.allow_handlers, keyring=self.keyring)
        self.queue = RunQueue(config.max_runs, name="owf-serve-runs")
        self.metrics = Metrics()
        self.metrics.watch_queue(self.queue.queue_status)
        self.metrics.watch_agentflow_queues(self.published.waiting)
        self.handles: dict[str, RunHandle[Any]] = {}  # this worker's runs (finished ones are dropped)
        self.resuming: set[str] = set()  # runs resumed in a worker thread (they cannot be interrupted)
        self.interrupted: set[str] = set()  # runs stopped by a shutdown (left resumable)
        self.stopping = False
        self.closed = False
        self._resumes = itertools.count(1)
        self._lock = threading.Lock()

    # -- tenants ----------------------------------------------------------------------------------

    def visible(self, who: Principal, run_id: str) -> tuple[Any, dict[str, str]]:
        """The stored run (None while it is queued here) and its labels, when `who` may see it.

        Raises:
            ApiError: 404 when it does not exist or belongs to another tenant (the same answer).
        """
        labels = self.store.get_labels(run_id)
        record = self.store.get_run(run_id)
        if labels.get("tenant") != who.tenant or (record is None and self.local(run_id) is None):
            raise ApiError(404, f"no run '{run_id}'", {"run_id": run_id})
        return record, labels

    def local(self, run_id: str) -> RunHandle[Any] | None:
        """This worker's handle of a run that has not finished (queued or running here)."""
        handle = self.handles.get(run_id)
        return handle if handle is not None and not handle.done() else None

    def list_runs(self, who: Principal, *, status: str | None, workflow: str | None, limit: int) -> list[Any]:
        """The caller's tenant's stored runs, newest first."""
        tenants = self.store.find_labels("tenant")
        records = [
            r for r in self.store.list_runs(status=status, workflow=workflow) if tenants.get(r.run_id) == who.tenant
        ]
        records.sort(key=lambda r: (r.started_at, r.run_id), reverse=True)
        return records[:limit]

    def queued(self, who: Principal) -> list[dict[str, Any]]:
        """This worker's runs of the caller's tenant that wait for a free slot."""
        status = self.queue.queue_status()
        tenants = self.store.find_labels("tenant")
        return [
            {"run_id": rid, "workflow": handle.label, "status": "queued"}
            for rid in status.queued
            if (handle := self.local(rid)) is not None and tenants.get(rid) == who.tenant
        ]

    def queue_view(self, who: Principal) -> dict[str, Any]:
        """The run queue: the limit, the caller's running and queued runs, and the counts."""
        status = self.queue.queue_status().to_dict()
        tenants = self.store.find_labels("tenant")

        def mine(ids: list[str]) -> list[str]:
            runs = [i.split(_RESUME_MARK)[0] for i in ids]
            return [r for r in runs if tenants.get(r) == who.tenant]

        status["running"] = mine(status["running"])
        status["queued"] = mine(status["queued"])
        status["stopping"] = self.stopping
        return status

    # -- starting ---------------------------------------------------------------------------------

    def workflow(self, name: str, version: str | None = None) -> Workflow:
        """A workflow loaded at start-up.

        Raises:
            ApiError: 404 naming the loaded workflows.
        """
        try:
            return self.ow.workflow(name, version)
        except OWFError as exc:
            raise ApiError(404, exc.message, exc.details) from None

    def named(self, who: Principal, name: str, version: str | None) -> tuple[Workflow, Published.Run | None]:
        """A workflow by ``name`` or ``name@range``: the caller's tenant's newest published version
        in the range, else (when the tenant never published that name) one loaded at start-up."""
        ref, rng = split_ref(name, version)
        found = self.published.find(who, ref, rng)
        if found is None:
            return self.workflow(ref, rng), None
        wf, entry = self.published.workflow(found)
        labels = {"snapshot": found.snapshot_id, "workflow_version": found.version}
        return wf, Published.Run(labels, entry.secrets)

    def inline(self, manifest: str | dict[str, Any] | list[Any], name: str | None) -> tuple[Workflow, OpenWorkflow]:
        """A workflow from a request's manifest, in a registry of its own (the caller releases it)."""
        ow = manifests.new_registry(self.store, allow_handlers=self.config.allow_handlers)
        try:
            manifests.load(ow, manifest)
            return ow.workflow(name), ow
        except OWFError as exc:
            manifests.release(ow)
            if type(exc) is OWFError:  # not a manifest problem: which workflow to run
                raise ApiError(422, exc.message, exc.details, code="VALIDATION") from None
            raise

    def start(
        self,
        who: Principal,
        wf: Workflow,
        inputs: Mapping[str, Any],
        *,
        prefer_backend: str | None = None,
        inline: tuple[OpenWorkflow, str] | None = None,
        published: Published.Run | None = None,
    ) -> Started:
        """Label a new run id with the caller's tenant, then queue the run.

        Args:
            who: The caller.
            wf: The workflow (of the server's registry, or of `inline`'s).
            inputs: The run's inputs.
            prefer_backend: The backend for steps that name none.
            inline: The request's registry and manifest text, for a workflow sent in the request
                (its runs get no secrets: the manifest is not the server's).
            published: The labels and secrets of a published workflow's run (its snapshot, and
                the credentials of the sources it uses).
        """
        if self.stopping:
            raise ApiError(503, "the service is shutting down; try another worker")
        run_id = new_run_id()
        labels = {"sub": who.sub}
        if who.tenant is not None:
            labels["tenant"] = who.tenant
        if inline is not None:
            labels["manifest"] = inline[1]
        if published is not None:
            labels.update(published.labels)
        self.store.set_labels(run_id, labels)
        owned = inline[0] if inline is not None else None
        secrets = {} if owned is not None else self.config.secrets
        if published is not None:
            secrets = published.secrets
        given = dict(inputs)
        observer = RunObserver(self.metrics, run_id, wf.name, who.tenant)

        async def work() -> Any:
            try:
                result = await wf.aexecute(given, prefer_backend, secrets, observer, run_id=run_id)
                observer.finished(result)
                return result
            finally:
                if owned is not None:
                    manifests.release(owned)

        with self._lock:  # requests start runs from several threads at once
            for done in [rid for rid, h in self.handles.items() if h.done()]:
                del self.handles[done]
            handle = self.queue.submit(work, run_id=run_id, label=wf.name)
            self.handles[run_id] = handle
        return Started(run_id, handle)

    def resume(
        self,
        run_id: str,
        labels: Mapping[str, str],
        approvals: Mapping[str, bool],
        event: Any,
        *,
        force: bool = False,
    ) -> Started:
        """Queue the continuation of a waiting run (here or on any worker sharing the store)."""
        if self.stopping:
            raise ApiError(503, "the service is shutting down; try another worker")
        text = labels.get("manifest")
        owned: OpenWorkflow | None = None
        ow = self.ow
        secrets = self.config.secrets
        if labels.get("snapshot"):
            entry = self.published.loaded(labels["snapshot"], labels.get("tenant"))
            ow, secrets = entry.ow, entry.secrets
        elif text is not None:
            owned = ow = manifests.new_registry(self.store, allow_handlers=self.config.allow_handlers)
            try:
                manifests.load(ow, text)
            except BaseException:
                manifests.release(owned)
                raise
            secrets = {}

        record = self.store.get_run(run_id)
        observer = RunObserver(self.metrics, run_id, record.workflow if record else "", labels.get("tenant"))

        def work() -> Any:
            self.resuming.add(run_id)
            try:
                result = ow.resume(run_id, dict(approvals), event, secrets=secrets, force=force)
                observer.finished(result)
                return result
            finally:
                self.resuming.discard(run_id)
                if owned is not None:
                    manifests.release(owned)

        key = f"{run_id}{_RESUME_MARK}{next(self._resumes)}"
        return Started(run_id, self.queue.submit(work, run_id=key, label=run_id))

    def forget_unstarted(self, run_id: str) -> None:
        """Drop the labels of a run id whose run failed before it was created (bad inputs, say)."""
        if self.store.get_run(run_id) is None:
            self.store.delete_labels(run_id)

    async def settle(self, started: Started, ready: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until the run has visibly started (`ready`), is still queued, or has failed early,
        so ``?wait=false`` answers with an id that exists or with the error.

        Raises:
            Exception: What the run raised before it started (bad inputs, say).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if started.handle.done():
                await started.handle.aresult()  # raises what the run raised
                return
            if started.handle.status == "queued" or await asyncio.to_thread(ready):
                return
            await asyncio.sleep(0.005)

    # -- canceling ----------------------------------------------------------------------------------

    async def cancel(self, who: Principal, run_id: str, record: Any) -> dict[str, Any]:
        """Cancel a run: queued or running here (its task is canceled), waiting (ended in the store),
        or running on another worker (asked to stop through a label that worker reads).

        Raises:
            ApiError: 409 for a finished run, or a run being resumed in a worker thread.
        """
        if run_id in self.resuming:
            raise ApiError(
                409, f"run '{run_id}' is being resumed here and cannot be interrupted; cancel it once it waits"
            )
        handle = self.local(run_id)
        if handle is not None:
            handle.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(handle.aresult(), timeout=10)
            self.handles.pop(run_id, None)
            return {"status": "canceled", "run_id": run_id}
        if record is None or record.status in FINISHED:
            state = record.status if record is not None else "unknown"
            raise ApiError(409, f"run '{run_id}' is {state}; only queued, running or waiting runs can be canceled")
        if record.status == "waiting_approval" and await asyncio.to_thread(self._cancel_waiting, who, run_id):
            return {"status": "canceled", "run_id": run_id}
        await asyncio.to_thread(self.store.set_labels, run_id, {CANCEL_LABEL: who.sub})
        return {"status": "cancel_requested", "run_id": run_id}

    def _cancel_waiting(self, who: Principal, run_id: str) -> bool:
        """End a waiting run in the store (nothing runs it now). False when it started meanwhile."""
        if not self.store.set_status(run_id, "canceled", expected="waiting_approval"):
            return False
        for request in self.store.get_pending(run_id):
            self.store.resolve_pending(request.id, None)
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self.store.append_events(
            run_id,
            [{"type": "run.canceled", "timestamp": now, "payload": {"status": "canceled", "run_id": run_id}}],
        )
        self.store.finish_run(
            run_id,
            "canceled",
            error={"code": "CANCELED", "message": f"canceled by {who.sub}", "details": {}},
        )
        return True

    async def watch_cancels(self, interval: float = 0.5) -> None:
        """Cancel this worker's runs that another worker was asked to cancel (until stopped)."""
        while True:
            await asyncio.sleep(interval)
            mine = [rid for rid, h in list(self.handles.items()) if not h.done() and rid not in self.resuming]
            if not mine:
                continue
            try:
                asked = await asyncio.to_thread(self.store.find_labels, CANCEL_LABEL)
            except Exception:  # a busy store: try again next time
                log.warning("reading cancel requests failed", exc_info=True)
                continue
            for rid in mine:
                if rid in asked:
                    self.handles[rid].cancel()

    # -- shutting down -----------------------------------------------------------------------------

    def close(self, grace: float) -> None:
        """Stop: queued runs never start, running ones get `grace` seconds, then are stopped and
        left ``waiting_approval`` (resumable on any worker, their finished steps kept)."""
        if self.closed:
            return
        self.stopping = self.closed = True
        self.queue.shutdown(cancel_queued=True, wait=True, timeout=grace)
        left = [rid for rid, h in list(self.handles.items()) if not h.done() and rid not in self.resuming]
        for rid in left:
            self.interrupted.add(rid)
            self.handles[rid].cancel()
        for rid in left:
            with contextlib.suppress(BaseException):
                self.handles[rid].result(timeout=10)
            self._leave_resumable(rid)
        if self.resuming:  # a resume runs in a thread that cannot be interrupted: it ends first
            log.warning("waiting for %d resumed run(s) to finish: %s", len(self.resuming), sorted(self.resuming))
        while self.resuming:
            time.sleep(0.05)
        if left:  # wait for the queue's loop, which stops once they have ended (or already has)
            with contextlib.suppress(RuntimeError):
                self.queue.shutdown(wait=True, timeout=grace)
        self.ow.close()

    def _leave_resumable(self, run_id: str) -> None:
        if not self.store.set_status(run_id, "waiting_approval", expected=("canceled", "running")):
            return
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self.store.append_events(
            run_id,
            [
                {
                    "type": "run.interrupted",
                    "timestamp": now,
                    "payload": {"status": "waiting_approval", "run_id": run_id, "reason": "the server shut down"},
                }
            ],
        )
        log.info("run %s was interrupted by the shutdown; POST /runs/%s/resume continues it", run_id, run_id)
