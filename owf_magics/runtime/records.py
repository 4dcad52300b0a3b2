"""Durable-run records: what the engine writes to a run store and reads back to resume.

The `RunStore` protocol is the interface the engine talks to (`owf_magics.runs.store` implements it
on SQLite); the record types, the step keys and the secret scrubbing are shared by both sides.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from jinja2 import Undefined

from owf_magics.errors import OWFError
from owf_magics.manifest.render import redact

#: Where ``OpenWorkflow()`` keeps its runs when no ``state=`` is given (under the working directory).
DEFAULT_STATE_PATH = Path(".owf") / "runs.db"

RunStatus = Literal["running", "waiting_approval", "completed", "failed", "canceled"]
RUN_STATUSES: tuple[str, ...] = ("running", "waiting_approval", "completed", "failed", "canceled")
FINISHED_STATUSES: tuple[str, ...] = ("completed", "failed", "canceled")
PendingKind = Literal["approval", "event", "time"]

#: Columns of `runs_frame` (``ow.runs()``), in order.
RUNS_COLUMNS = (
    "run_id",
    "workflow",
    "workflow_version",
    "status",
    "started_at",
    "finished_at",
    "duration_ms",
    "steps",
    "tokens",
    "cost_usd",
    "pending",
    "error_code",
)


# ------------------------------------------------------------------------------------------------
# records


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One stored run.

    Attributes:
        run_id: The run's id.
        workflow: The workflow's name.
        workflow_version: The workflow's version.
        status: One of `RUN_STATUSES`.
        inputs: The run's inputs, as given to `create_run` (already scrubbed of secrets).
        started_at: When the run was created (UTC).
        finished_at: When it reached a finished status, else None.
        outputs: The workflow's outputs, once finished.
        error: ``{code, message, details}`` when the run failed.
        manifest_source: The manifests' source text, when given, so a new process can resume.
        manifest_ids: Names/ids of the manifests the run needs (free-form, JSON).
        metadata: Free-form JSON the caller attached.
        lease_owner: ``host:pid:token`` of the process whose lease the run holds while it runs
            (None when no process holds it: finished, waiting, or its process released it).
        lease_until: When that lease expires unless renewed (UTC).
    """

    run_id: str
    workflow: str
    workflow_version: str | None
    status: str
    inputs: dict[str, Any]
    started_at: datetime
    finished_at: datetime | None = None
    outputs: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    manifest_source: str | None = None
    manifest_ids: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    lease_owner: str | None = None
    lease_until: datetime | None = None

    @property
    def lease_alive(self) -> bool:
        """Whether a process holds the run's lease now (by this machine's clock)."""
        return self.lease_until is not None and self.lease_until > datetime.now(UTC)

    @property
    def duration_ms(self) -> float | None:
        if self.finished_at is None:
            return None
        return round((self.finished_at - self.started_at).total_seconds() * 1000, 3)


@dataclass(frozen=True, slots=True)
class StepRecord:
    """The checkpoint of one step execution (one loop iteration of it, for steps in loops).

    Attributes:
        step_key: The step id plus its loop-iteration path (see `step_key`), unique within a run.
        step_id: The step's id.
        status: ``success``, ``failed``, ``skipped``, ``waiting`` or ``canceled`` (or ``running``
            for a step in flight, when the executor records that).
        output: The step's output (secrets already redacted by the executor).
        error: ``{code, message, details}`` when it failed.
        attempts: How many attempts ran.
        backend: The backend that ran it.
        usage: Token usage, e.g. ``{prompt_tokens, completion_tokens, total_tokens, cost_usd, model}``.
        input: The step's resolved input, recorded so a replay can check it gets the same.
        input_hash: `fingerprint` of `input` (filled in by the store when not given).
        started_at: When the step started (UTC), if known.
        finished_at: When it finished (UTC), if known.
    """

    step_key: str
    step_id: str
    status: str
    output: Any = None
    error: dict[str, Any] | None = None
    attempts: int = 1
    backend: str | None = None
    usage: dict[str, Any] | None = None
    input: Any = None
    input_hash: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def total_tokens(self) -> int:
        return int((self.usage or {}).get("total_tokens") or 0)

    @property
    def cost_usd(self) -> float:
        return float((self.usage or {}).get("cost_usd") or 0.0)


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """Something a waiting run needs from outside: an approval, an event or a time to pass.

    Attributes:
        id: The request id (``ow.resume(run_id, approvals={id: True})`` names it).
        run_id: The run that waits.
        step_id: The step (or step key) that waits.
        kind: ``approval``, ``event`` or ``time``.
        payload: What is asked, e.g. ``{"connector": ..., "action": ..., "input": ...}``.
        created_at: When it was asked (UTC).
        resolved_at: When it was answered, else None.
        value: The answer (True/False for approvals, the event payload for events).
    """

    id: str
    run_id: str
    step_id: str
    kind: str
    payload: dict[str, Any]
    created_at: datetime
    resolved_at: datetime | None = None
    value: Any = None

    @property
    def resolved(self) -> bool:
        return self.resolved_at is not None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event of a run, with its sequence number (1, 2, 3... per run, no gaps)."""

    run_id: str
    seq: int
    type: str
    event: dict[str, Any]


# ------------------------------------------------------------------------------------------------
# helpers


def step_key(step_id: str, *, loops: Sequence[tuple[str, int]] = (), index: int | None = None) -> str:
    """The key a step's checkpoint is stored under.

    Args:
        step_id: The step's id.
        loops: The enclosing loop steps and their iteration indices, outermost first.
        index: The step's own iteration, for a step with an inline ``for_each``.

    Returns:
        e.g. ``step_key("inner", loops=[("each", 3)]) == "each[3].inner"`` and
        ``step_key("fetch", index=2) == "fetch[2]"``.
    """
    parts = [f"{sid}[{i}]" for sid, i in loops]
    parts.append(step_id if index is None else f"{step_id}[{index}]")
    return ".".join(parts)


def scrub(value: Any, secrets: Mapping[str, str] | Iterable[str]) -> Any:
    """`value` with every secret value replaced by ``***`` (strings inside dicts and lists too).

    Args:
        value: Inputs, outputs or an event.
        secrets: A mapping of secret names to values, or the values themselves.
    """
    if isinstance(secrets, Mapping):
        mapping = {str(k): str(v) for k, v in secrets.items()}
    else:
        mapping = {str(i): str(v) for i, v in enumerate(secrets)}
    return redact(value, mapping)


class UnstorableValue(OWFError):
    """A value the run store cannot write as JSON (it contains itself, nests too deep, holds an
    undefined template value or an integer past the digit limit, or fails to convert)."""

    default_code = "VALIDATION"


def _unstorable(reason: str) -> UnstorableValue:
    return UnstorableValue(
        f"the value cannot be stored as JSON: {reason}",
        details={
            "reason": reason,
            "suggestion": "return JSON-like data (dicts with text keys, lists, text, numbers, booleans, null)",
        },
    )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Undefined):  # what a sandboxed template gives for a name it refuses
        raise _unstorable("it is an undefined template value (a name or attribute that does not exist or is refused)")
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=repr)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    try:
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return dataclasses.asdict(obj)
        dump = getattr(obj, "model_dump", None)
        if callable(dump):
            return dump(mode="json")
        to_dict = getattr(obj, "to_dict", None)
        if callable(to_dict):
            return to_dict()
        return repr(obj)
    except UnstorableValue:
        raise
    except Exception as exc:  # a conversion (or a repr) that fails is the value's problem
        raise _unstorable(f"converting a {type(obj).__name__} failed ({type(exc).__name__})") from None


def dumps(value: Any) -> str:
    """Compact JSON text of `value` (see `to_json`).

    Raises:
        UnstorableValue: `value` cannot be written as JSON; nothing else escapes.
    """
    try:
        return json.dumps(value, default=_json_default, ensure_ascii=False, separators=(",", ":"))
    except UnstorableValue:
        raise
    except RecursionError:
        raise _unstorable("it nests too deep") from None
    except (ValueError, TypeError, OverflowError) as exc:  # a cycle, a huge integer, a key that is not text
        raise _unstorable(str(exc) or type(exc).__name__) from None


def to_json(value: Any) -> str:
    """Compact JSON text of `value`; datetimes, sets, dataclasses and pydantic models are converted,
    anything else JSON cannot hold is written as its repr.

    Raises:
        UnstorableValue: `value` contains itself, nests too deep, holds an undefined template
            value or an integer past the digit limit, or a conversion failed.
    """
    return dumps(value)


def check_storable(value: Any, step_id: str | None = None) -> None:
    """Raise `UnstorableValue` when the run store could not write `value` (a step's output, say),
    so the step fails with that error instead of the run's bookkeeping failing later."""
    try:
        dumps(value)
    except UnstorableValue as exc:
        if step_id is None:
            raise
        raise UnstorableValue(
            f"step '{step_id}' returned a value that {exc.message.removeprefix('the value ')}",
            details={**exc.details, "step_id": step_id},
        ) from None


def storable_records(records: Iterable[StepRecord]) -> list[StepRecord]:
    """`records`, each one the store cannot write replaced by a failed record without its values
    (the error says why), so one bad value fails its step and never the run's bookkeeping."""
    out: list[StepRecord] = []
    for rec in records:
        try:
            check_storable([rec.output, rec.error, rec.input, rec.usage])
            out.append(rec)
        except UnstorableValue as exc:
            reason = exc.details.get("reason", exc.message)
            error = {
                "code": exc.code,
                "message": f"step '{rec.step_id}': its record cannot be stored as JSON: {reason}",
                "details": {"reason": reason, "step_id": rec.step_id},
            }
            failed = "failed" if rec.status == "success" else rec.status
            out.append(dataclasses.replace(rec, status=failed, output=None, error=error, input=None, usage=None))
    return out


def storable_events(events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """`events`, each one the store cannot write kept as its type, time and id only."""
    out: list[Mapping[str, Any]] = []
    for event in events:
        try:
            check_storable(event)
            out.append(event)
        except UnstorableValue:
            kept = {k: event[k] for k in ("type", "timestamp", "event_id", "run_id") if isinstance(event.get(k), str)}
            out.append({**kept, "payload": {"error": "the event could not be stored as JSON"}})
    return out


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def fingerprint(value: Any) -> str:
    """A stable hash of a JSON-like value (key order does not matter): the replay check's key."""
    try:
        canonical = json.dumps(value, default=_json_default, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    except UnstorableValue:
        raise
    except (RecursionError, ValueError, TypeError, OverflowError) as exc:
        raise _unstorable(str(exc) or type(exc).__name__) from None
    return hashlib.sha256(canonical.encode()).hexdigest()


def input_differences(recorded: Any, actual: Any, *, path: str = "input", limit: int = 20) -> list[str]:
    """Where two resolved inputs differ, as readable lines (empty when they are equal).

    For replay: compare a step's recorded input (`StepRecord.input`) with the one it resolves to
    now, and fail loudly with these lines when the list is not empty. Values are compared after a
    JSON round trip, so a tuple equals a list and a datetime equals its ISO text, as stored.

    Args:
        recorded: The stored input.
        actual: The input resolved now.
        path: The name of the root in the lines.
        limit: At most this many lines (the last says how many more differ).
    """
    out: list[str] = []
    _diff(json.loads(dumps(recorded)), json.loads(dumps(actual)), path, out)
    if len(out) > limit:
        return out[:limit] + [f"... and {len(out) - limit} more"]
    return out


def _diff(a: Any, b: Any, path: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            where = f"{path}.{key}"
            if key not in b:
                out.append(f"{where}: recorded {_short(a[key])}, now missing")
            elif key not in a:
                out.append(f"{where}: not recorded, now {_short(b[key])}")
            else:
                _diff(a[key], b[key], where, out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _diff(x, y, f"{path}[{i}]", out)
    elif a != b or type(a) is not type(b):
        out.append(f"{path}: recorded {_short(a)}, now {_short(b)}")


def _short(value: Any, limit: int = 80) -> str:
    text = dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def ts(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def unknown_run(run_id: str) -> OWFError:
    return OWFError(f"no run '{run_id}' in the run store", code="VALIDATION", details={"run_id": run_id})


# ------------------------------------------------------------------------------------------------
# the interface


@runtime_checkable
class RunStore(Protocol):
    """What the executor needs from a run store. Every method is safe to call from any thread.

    Writes that belong together (a step's checkpoint and its events) happen in one transaction:
    after a crash either both are there or neither is. `checkpoint_many` is the group commit:
    the engine hands it every step that finished in one event-loop tick with the events emitted
    since its last write, and waits for it to return before any step that depends on them starts.
    Event sequence numbers are 1, 2, 3... per run without gaps; a store may keep the last one in
    memory as long as a stale count cannot produce a duplicate (a primary key on (run, seq)).

    Leases (docs/durable.md, "Leases"): `create_run` with status ``running`` gives the run a lease
    owned by this store object (``lease_owner`` = ``host:pid:token``, ``lease_until`` = now +
    ``lease_seconds``), which the store renews in the background while the run holds it;
    `finish_run` and `set_status` to anything but ``running`` release it; `claim_run` takes a
    run over for ``resume`` with one atomic compare-and-set that refuses a live lease. A store
    whose clock is shared (PostgreSQL's ``now()``) compares leases by it; SQLite uses the
    writing process's clock.
    """

    def create_run(
        self,
        run_id: str,
        workflow: str,
        *,
        workflow_version: str | None = None,
        inputs: Mapping[str, Any] | None = None,
        status: str = "running",
        manifest_source: str | None = None,
        manifest_ids: Any = None,
        metadata: Mapping[str, Any] | None = None,
        started_at: datetime | None = None,
    ) -> RunRecord: ...

    def get_run(self, run_id: str) -> RunRecord | None: ...

    def list_runs(
        self, *, workflow: str | None = None, status: str | None = None, limit: int | None = None
    ) -> list[RunRecord]: ...

    def set_status(self, run_id: str, status: str, *, expected: str | Sequence[str] | None = None) -> bool: ...

    def finish_run(
        self,
        run_id: str,
        status: str,
        *,
        outputs: Mapping[str, Any] | None = None,
        error: Mapping[str, Any] | None = None,
        finished_at: datetime | None = None,
        steps: Sequence[StepRecord] = (),
        events: Sequence[Mapping[str, Any]] = (),
        close_pending: bool = False,
    ) -> None: ...

    def checkpoint(self, run_id: str, step: StepRecord, events: Sequence[Mapping[str, Any]] = ()) -> list[int]: ...

    def checkpoint_many(
        self, run_id: str, steps: Sequence[StepRecord], events: Sequence[Mapping[str, Any]] = ()
    ) -> list[int]: ...

    def claim_run(self, run_id: str, *, force: bool = False) -> RunRecord: ...

    def get_steps(self, run_id: str) -> dict[str, StepRecord]: ...

    def append_events(self, run_id: str, events: Sequence[Mapping[str, Any]]) -> list[int]: ...

    def get_events(self, run_id: str, *, after: int = 0) -> list[StoredEvent]: ...

    def add_pending(
        self,
        run_id: str,
        step_id: str,
        kind: str,
        payload: Mapping[str, Any] | None = None,
        *,
        request_id: str | None = None,
    ) -> PendingRequest: ...

    def get_pending(self, run_id: str, *, include_resolved: bool = False) -> list[PendingRequest]: ...

    def resolve_pending(self, request_id: str, value: Any) -> PendingRequest: ...

    def prune(self, older_than: timedelta | float) -> int: ...

    def close(self) -> None: ...
