"""Run history as data: the stored runs, two runs compared, a run's timeline, its agent turns and
what each step received and returned, and its cost per agent, provider and model.

Plain functions over `RunResult`s (a run of this process, or one read back from the store with
``ow.run(run_id)``) that return pandas DataFrames or dicts; ``%workflow runs | diff | timeline |
inspect | cost`` display them (docs/notebook.md, "Run history").
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from owf_magics.errors import OWFError

if TYPE_CHECKING:
    import pandas as pd

    from owf_magics.api.openworkflow import OpenWorkflow
    from owf_magics.runtime.results import RunResult

__all__ = [
    "DIFF_FIELDS",
    "agent_turns",
    "cost_rollup",
    "diff_runs",
    "resolve_run",
    "runs_table",
    "step_details",
    "step_io",
    "timeline",
]

#: What `diff_runs` compares, per step execution (step id and loop iteration).
DIFF_FIELDS = ("status", "output", "tokens", "cost_usd", "duration_ms")
TIMELINE_COLUMNS = (
    "step_id",
    "iteration",
    "attempt",
    "status",
    "backend",
    "parent",
    "start_ms",
    "duration_ms",
    "end_ms",
    "total_tokens",
)
TURN_COLUMNS = (
    "step_id",
    "iteration",
    "attempt",
    "turn",
    "agent",
    "provider",
    "model",
    "prompt",
    "completion",
    "tool_calls",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_usd",
)
ROLLUP_KEYS = ("agent", "provider", "model")


def resolve_run(ow: OpenWorkflow, run: RunResult | str, namespace: Mapping[str, Any] | None = None) -> RunResult:
    """A `RunResult` from a result, a variable name in `namespace`, a stored run id, or a unique
    prefix or suffix of one (``20261206_1726`` or ``000001``).

    Raises:
        OWFError: VALIDATION when nothing (or more than one stored run) matches.
    """
    if not isinstance(run, str):
        return run
    if namespace is not None and run.isidentifier() and hasattr(namespace.get(run), "trace_rows"):
        found: RunResult = namespace[run]
        return found
    store = ow.store
    if store is None:
        raise OWFError(f"no run '{run}': this registry keeps no runs (state=False)", code="VALIDATION")
    if store.get_run(run) is not None:
        return ow.run(run)
    ids = [r.run_id for r in store.list_runs()]
    matches = [i for i in ids if i.startswith(run) or i.endswith(run)]
    if len(matches) == 1:
        return ow.run(matches[0])
    if matches:
        shown = ", ".join(matches[-5:])
        raise OWFError(
            f"'{run}' matches {len(matches)} stored runs ({shown}): give more of the run id",
            code="VALIDATION",
            details={"run": run, "matches": matches},
        )
    raise OWFError(
        f"no stored run '{run}' (and no RunResult variable of that name)",
        code="VALIDATION",
        details={"run": run, "suggestion": "%workflow runs lists the stored runs"},
    )


def runs_table(ow: OpenWorkflow, workflow: str | None = None, *, limit: int | None = None) -> pd.DataFrame:
    """The stored runs, newest first: ``ow.runs()``'s columns plus ``origin`` (``replay of RUN``,
    ``fork of RUN from STEP`` or empty).

    Args:
        workflow: Only this workflow's runs.
        limit: At most this many (the newest).
    """
    frame = ow.runs()
    store = ow.store
    origins: dict[str, str] = {}
    for rec in store.list_runs(workflow=workflow) if store is not None else ():
        meta = rec.metadata or {}
        if meta.get("replay_of"):
            origins[rec.run_id] = f"replay of {meta['replay_of']}"
        elif meta.get("fork_of"):
            origins[rec.run_id] = f"fork of {meta['fork_of']} from {meta.get('from_step', '?')}"
    if workflow is not None:
        frame = frame[frame["workflow"] == workflow]
    frame = frame.iloc[::-1].reset_index(drop=True)
    if limit is not None:
        frame = frame.head(limit)
    frame["origin"] = [origins.get(r, "") for r in frame["run_id"]]
    return frame


# -- one run's steps --------------------------------------------------------------------------------


def _key(step_id: Any, iteration: Any) -> str:
    it = str(iteration or "")
    return f"{step_id}[{it}]" if it else str(step_id)


def _records(ow: OpenWorkflow | None, result: RunResult) -> dict[str, Any]:
    """The run store's step records of a stored run (by step key), else empty."""
    store = ow.store if ow is not None else None
    if store is None or store.get_run(result.run_id) is None:
        return {}
    records: dict[str, Any] = store.get_steps(result.run_id)
    return records


def _executions(result: RunResult, records: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Per step execution (step id and iteration): last status, output, attempts, and summed tokens,
    cost and duration over its attempts. Steps a replay or fork served from the record they were
    copied from have no trace row: their stored `records` give them (duration None)."""
    out: dict[str, dict[str, Any]] = {}
    for row in result.trace_rows:
        key = _key(row.get("step_id"), row.get("iteration"))
        cur = out.setdefault(
            key,
            {
                "step_id": row.get("step_id"),
                "iteration": str(row.get("iteration") or ""),
                "status": None,
                "output": None,
                "attempts": 0,
                "tokens": 0,
                "cost_usd": 0.0,
                "duration_ms": 0.0,
            },
        )
        cur["status"] = row.get("status")
        cur["attempts"] += 1
        cur["tokens"] += int(row.get("total_tokens") or 0)
        cost = row.get("cost_usd")
        cur["cost_usd"] += 0.0 if cost is None or _nan(cost) else float(cost)
        cur["duration_ms"] += float(row.get("duration_ms") or 0.0)
    usage_cost: dict[str, float] = {}
    for row in result.usage_rows:  # a stored run's trace has no cost; its usage rows do
        cost = row.get("cost_usd")
        if cost is not None and not _nan(cost):
            key = _key(row.get("step_id"), row.get("iteration"))
            usage_cost[key] = usage_cost.get(key, 0.0) + float(cost)
    for key, cost in usage_cost.items():
        if key in out:
            out[key]["cost_usd"] = cost
    for event in result.events:
        if event.get("type") == "step.execution.completed":
            key = _key(event.get("step_id"), event.get("iteration"))
            if key in out:
                out[key]["output"] = (event.get("result") or {}).get("output")
    for key, rec in (records or {}).items():
        if key not in out and rec.status not in ("running", "pending"):
            usage = rec.usage or {}
            out[key] = {
                "step_id": rec.step_id,
                "iteration": key[len(rec.step_id) :].strip("[]"),
                "status": rec.status,
                "output": rec.output,
                "attempts": rec.attempts,
                "tokens": int(usage.get("total_tokens") or 0),
                "cost_usd": float(usage.get("cost_usd") or 0.0),
                "duration_ms": None,  # served from the record, not run: no time of its own
            }
        elif key in out and out[key]["output"] is None:
            out[key]["output"] = rec.output
    for sid, step in result.steps.items():  # steps that ran without a completion event (a cached one)
        if sid in out and out[sid]["output"] is None and step.output is not None:
            out[sid]["output"] = step.output
    for cur in out.values():
        cur["cost_usd"] = round(cur["cost_usd"], 8)
        if cur["duration_ms"] is not None:
            cur["duration_ms"] = round(cur["duration_ms"], 3)
    return out


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _same_output(a: Any, b: Any) -> bool:
    def norm(v: Any) -> str:
        return json.dumps(v, sort_keys=True, default=str)

    return norm(a) == norm(b)


def diff_runs(
    ow: OpenWorkflow,
    run_a: RunResult | str,
    run_b: RunResult | str,
    *,
    duration_tolerance: float = 0.5,
    min_duration_ms: float = 100.0,
    include_same: bool = False,
    namespace: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """The step executions whose status, output, tokens, cost or duration differ, side by side.

    One row per step execution (a loop's iterations are separate rows) with ``changed`` naming
    the fields that differ and ``<field>_a`` / ``<field>_b`` columns. A step that ran in one run
    only has status ``None`` in the other. Durations always vary a little, so a duration differs
    only when it changed by more than `duration_tolerance` (a fraction of the longer one) and by
    more than `min_duration_ms`; a step a replay or fork served from its record has no duration
    (None) and is not compared on it. The frame's ``attrs`` name the two runs.

    Args:
        run_a: A `RunResult`, a stored run id (or a unique prefix/suffix), or a variable name in
            `namespace`; the same for `run_b`.
        include_same: Keep the steps that did not change too (``changed`` empty).
    """
    import pandas as pd

    a, b = resolve_run(ow, run_a, namespace), resolve_run(ow, run_b, namespace)
    ea, eb = _executions(a, _records(ow, a)), _executions(b, _records(ow, b))
    order = list(ea) + [k for k in eb if k not in ea]
    rows = []
    for key in order:
        x, y = ea.get(key), eb.get(key)
        changed = []
        for f in DIFF_FIELDS:
            va: Any = (x or {}).get(f)
            vb: Any = (y or {}).get(f)
            if x is None or y is None:
                if f == "status":
                    changed.append(f)
                continue
            if f == "output":
                differs = not _same_output(va, vb)
            elif f == "duration_ms":
                if va is None or vb is None:  # a step served from a record has no time to compare
                    continue
                gap = abs(float(va) - float(vb))
                differs = gap > min_duration_ms and gap > duration_tolerance * max(float(va), float(vb))
            elif f == "cost_usd":
                differs = abs(float(va) - float(vb)) > 1e-9
            else:
                differs = va != vb
            if differs:
                changed.append(f)
        if not changed and not include_same:
            continue
        src = x or y or {}
        row: dict[str, Any] = {"step_id": src["step_id"], "iteration": src["iteration"], "changed": ", ".join(changed)}
        for f in DIFF_FIELDS:
            row[f"{f}_a"] = (x or {}).get(f)
            row[f"{f}_b"] = (y or {}).get(f)
        rows.append(row)
    columns = ["step_id", "iteration", "changed"] + [f"{f}_{s}" for f in DIFF_FIELDS for s in ("a", "b")]
    frame = pd.DataFrame(rows, columns=columns)
    frame.attrs.update({"run_a": a.run_id, "run_b": b.run_id})
    return frame


def _ms(stamp: Any) -> float | None:
    if not stamp:
        return None
    if isinstance(stamp, datetime):
        return stamp.timestamp() * 1000
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp() * 1000
    except ValueError:
        return None


def timeline(result: RunResult) -> pd.DataFrame:
    """A run's step executions on one time axis: ``start_ms`` and ``end_ms`` from the run's first
    step (one row per attempt and iteration, in the order they started); what the waterfall
    picture (`owf_magics.notebook.views.timeline.TimelineView`) draws."""
    import pandas as pd

    rows = []
    for row in result.trace_rows:
        start = _ms(row.get("started_at"))
        if start is None:
            continue
        rows.append((start, row))
    origin = min((s for s, _ in rows), default=0.0)
    out = []
    for start, row in sorted(rows, key=lambda p: p[0]):
        duration = float(row.get("duration_ms") or 0.0)
        offset = round(start - origin, 3)
        out.append(
            {
                "step_id": row.get("step_id"),
                "iteration": str(row.get("iteration") or ""),
                "attempt": int(row.get("attempt") or 1),
                "status": row.get("status"),
                "backend": row.get("backend"),
                "parent": row.get("parent") or "",
                "start_ms": offset,
                "duration_ms": duration,
                "end_ms": round(offset + duration, 3),
                "total_tokens": int(row.get("total_tokens") or 0),
            }
        )
    frame = pd.DataFrame(out, columns=list(TIMELINE_COLUMNS))
    frame.attrs.update({"run_id": result.run_id, "workflow": result.workflow, "status": result.status})
    return frame


# -- agent turns, step details, cost -------------------------------------------------------------


def _turn_rows(result: RunResult) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    prompts: dict[tuple[Any, ...], Any] = {}
    for event in result.events:
        kind = event.get("type")
        where = (event.get("step_id"), event.get("iteration", ""), event.get("attempt", 1), event.get("turn"))
        if kind == "agent.turn.started":
            prompts[where] = event.get("prompt")
        elif kind == "agent.turn.completed":
            cost = event.get("cost_usd")
            rows.append(
                {
                    "step_id": event.get("step_id"),
                    "iteration": str(event.get("iteration") or ""),
                    "attempt": int(event.get("attempt") or 1),
                    "turn": int(event.get("turn") or 0),
                    "agent": event.get("agent") or "",
                    "provider": event.get("provider") or "",
                    "model": event.get("model") or "",
                    "prompt": prompts.get(where),
                    "completion": event.get("completion"),
                    "tool_calls": list(event.get("tool_calls") or []),
                    "prompt_tokens": int(event.get("prompt_tokens") or 0),
                    "completion_tokens": int(event.get("completion_tokens") or 0),
                    "total_tokens": int(event.get("total_tokens") or 0),
                    "cost_usd": float("nan") if cost is None else float(cost),
                }
            )
    return rows


def agent_turns(result: RunResult) -> pd.DataFrame:
    """One row per model turn of the run's agent steps: the agent, provider and model, the messages
    the turn sent (``prompt``: a list of ``{role, content}``), the reply's text (``completion``),
    the tools it called, tokens and cost. Read from the run's ``agent.turn.*`` events, so stored
    runs have them too."""
    import pandas as pd

    return pd.DataFrame(_turn_rows(result), columns=list(TURN_COLUMNS))


def step_details(
    ow: OpenWorkflow | None, result: RunResult, step_id: str, iteration: str | None = None
) -> dict[str, Any]:
    """What one step received and returned: ``{step_id, iteration, status, attempts, backend,
    input, output, error, duration_ms, turns}`` (``input`` from the run store, when the run is
    stored; ``turns``: its agent turns with prompt and completion text).

    Raises:
        OWFError: VALIDATION when the run has no such step (the message lists the steps).
    """
    records = _records(ow, result)
    execs = {k: v for k, v in _executions(result, records).items() if v["step_id"] == step_id}
    if not execs and step_id not in result.steps:
        known = sorted({str(r.get("step_id")) for r in result.trace_rows} | set(result.steps))
        from owf_magics.errors import did_you_mean

        best = did_you_mean(step_id, known)
        hint = f" Did you mean '{best}'?" if best else ""
        raise OWFError(
            f"run {result.run_id} has no step '{step_id}'.{hint}",
            code="VALIDATION",
            details={"step": step_id, "steps": known},
        )
    key = _key(step_id, iteration) if iteration else next(reversed(execs), step_id) if execs else step_id
    cur = execs.get(key, {})
    step = result.steps.get(step_id)
    recorded = records.get(key)
    error = step.error.to_dict() if step is not None and step.error is not None else None
    if recorded is not None and recorded.error:
        error = recorded.error
    turns = [
        t for t in _turn_rows(result) if t["step_id"] == step_id and (not iteration or t["iteration"] == iteration)
    ]
    return {
        "step_id": step_id,
        "iteration": cur.get("iteration", iteration or ""),
        "status": cur.get("status") or (step.status if step is not None else None),
        "attempts": cur.get("attempts") or (step.attempts if step is not None else 0),
        "backend": step.backend if step is not None else None,
        "input": recorded.input if recorded is not None else None,
        "output": cur.get("output") if cur.get("output") is not None else (step.output if step is not None else None),
        "error": error,
        "duration_ms": cur.get("duration_ms"),
        "turns": turns,
        "iterations": [] if iteration else [v["iteration"] for v in execs.values() if v["iteration"]],
    }


def step_io(ow: OpenWorkflow | None, result: RunResult) -> pd.DataFrame:
    """One row per step execution (a loop's iterations apart): ``step_id, iteration, status,
    attempts, input, output, tokens, cost_usd, duration_ms``; ``input`` is the resolved input the
    run store recorded (None for a run that is not stored, or a step that takes none)."""
    import pandas as pd

    records = _records(ow, result)
    rows = []
    for key, cur in _executions(result, records).items():
        rec = records.get(key)
        rows.append({**cur, "input": rec.input if rec is not None else None})
    columns = ["step_id", "iteration", "status", "attempts", "input", "output", "tokens", "cost_usd", "duration_ms"]
    frame = pd.DataFrame(rows, columns=columns)
    frame.attrs.update({"run_id": result.run_id})
    return frame


def cost_rollup(results: RunResult | Iterable[RunResult], by: tuple[str, ...] = ROLLUP_KEYS) -> pd.DataFrame:
    """Tokens and cost summed per agent, provider and model (or the keys in `by`) over one run or
    several: ``runs, turns, prompt_tokens, completion_tokens, total_tokens, cost_usd``, most
    costly first. Read from the agent turn events; a run without them (a stored run of an older
    version) counts its usage rows, with the agent unknown (empty)."""
    import pandas as pd

    from owf_magics.runtime.results import RunResult as _Result

    items = [results] if isinstance(results, _Result) else list(results)
    rows: list[dict[str, Any]] = []
    for res in items:
        turns = _turn_rows(res)
        if not turns:
            turns = [{**u, "agent": "", "turn": 1} for u in res.usage_rows]
        rows.extend({**t, "run_id": res.run_id} for t in turns)
    columns = [*by, "runs", "turns", "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd"]
    if not rows:
        return pd.DataFrame([], columns=columns)
    frame = pd.DataFrame(rows)
    for k in by:
        if k not in frame:
            frame[k] = ""
        frame[k] = frame[k].fillna("").astype(str)
    grouped = frame.groupby(list(by), sort=False, dropna=False)
    out = grouped.agg(
        runs=("run_id", "nunique"),
        turns=("run_id", "size"),
        prompt_tokens=("prompt_tokens", "sum"),
        completion_tokens=("completion_tokens", "sum"),
        total_tokens=("total_tokens", "sum"),
        cost_usd=("cost_usd", lambda s: round(float(s.sum(min_count=1)), 8) if s.notna().any() else float("nan")),
    ).reset_index()
    out = out.sort_values(["cost_usd", "total_tokens"], ascending=False, na_position="last", kind="stable")
    return out.reset_index(drop=True)[columns]
