"""Durable runs of a registry: ``ow.store``, ``runs()``, ``run(id)``, ``prune``, ``resume``,
``replay`` and ``fork`` (docs/durable.md).

`DurableRunMethods` is mixed into `OpenWorkflow`, so its module stays small; the store itself is
`owf_magics.runs` (opened on first use from the registry's ``state``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from owf_magics.api.workflow import Callback, Workflow
from owf_magics.errors import OWFError
from owf_magics.plan.fragments import graph_signature

if TYPE_CHECKING:
    import pandas as pd

    from owf_magics.plan.graph import Graph
    from owf_magics.runtime.results import RunResult


class DurableRunMethods:
    """The durable-run methods of `OpenWorkflow` (what they need of it is declared here)."""

    state: Any
    _store: Any
    _store_lock: threading.Lock

    if TYPE_CHECKING:

        def workflow(self, name: str | None = None, version: str | None = None) -> Workflow: ...

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
