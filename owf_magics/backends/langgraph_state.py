"""The state a compiled workflow carries through LangGraph, its reducers, and the small helpers its
nodes share (attempt numbers, loop variables, the views native stores for finished steps).
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

from owf_magics.engine import VIEW_KEYS, view
from owf_magics.errors import OWFError
from owf_magics.runtime.context import Host

if TYPE_CHECKING:
    from owf_magics.manifest.catalog import Loaded
    from owf_magics.plan.resolution import Plan


def merge(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    return {**(left or {}), **(right or {})}


def merge_nested(left: dict[Any, Any] | None, right: dict[Any, Any] | None) -> dict[Any, Any]:
    """Merge fan-out bookkeeping: ``{step: {"results": {slot: result}}}`` from parallel writers."""
    return deep_merge(left, right, 3)


def deep_merge(left: dict[Any, Any] | None, right: dict[Any, Any] | None, depth: int) -> dict[Any, Any]:
    out = dict(left or {})
    for key, value in (right or {}).items():
        if depth > 1 and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value, depth - 1)
        else:
            out[key] = value
    return out


class WorkflowState(TypedDict, total=False):
    """The state of a compiled workflow.

    Attributes:
        inputs: The workflow inputs (declared defaults filled in by the first node).
        steps: Each finished step's view, as templates read it: ``{output, status, error, attempts, ...}``.
        outputs: The workflow's declared outputs (written by the last node).
        scope: Loop and error variables of the block being run (``item``, ``index``, ``error``...).
        fanout: What a fan-out or branch node left for its join: items, the branch taken, results.
        memory: Agent buffer memory, by agent.
        usage: Token usage rows, one per model turn.
        trace: Trace rows, one per step attempt.
    """

    inputs: dict[str, Any]
    steps: Annotated[dict[str, Any], merge]
    outputs: dict[str, Any]
    scope: dict[str, Any]
    fanout: Annotated[dict[str, Any], merge_nested]
    memory: Annotated[dict[str, Any], merge]
    usage: Annotated[list[dict[str, Any]], operator.add]
    trace: Annotated[list[dict[str, Any]], operator.add]


#: A node's body: (state, config, attempt) -> state updates.
NodeImpl = Callable[[WorkflowState, Any, int], Coroutine[Any, Any, dict[str, Any]]]


def sqlite_checkpointer(path: str | os.PathLike[str]) -> Any:
    """LangGraph's SQLite saver on `path` (``":memory:"`` for an in-memory database).

    The file may be the durable run store's (``.owf/runs.db``): LangGraph keeps its checkpoints
    in tables of its own (``checkpoints``, ``writes``).
    """
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False)
    return SqliteSaver(conn)


def drive(coro: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """Run a coroutine that never suspends, without an event loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        result: dict[str, Any] = done.value
        return result
    coro.close()
    raise RuntimeError("a node body marked pure waited on I/O")


async def nothing(state: WorkflowState, config: Any, attempt: int) -> dict[str, Any]:
    return {}


def node_attempt() -> int:
    """This node's attempt number (1 on the first run, 2... when a RetryPolicy retries it)."""
    try:
        from langgraph.runtime import get_runtime

        info = get_runtime().execution_info
        return int(info.node_attempt) if info is not None else 1
    except (RuntimeError, AttributeError, KeyError):
        return 1


def loop_vars(index: int, item: Any, total: int) -> dict[str, Any]:
    return {"item": item, "index": index, "isFirst": index == 0, "isLast": index == total - 1}


def skipped_view() -> dict[str, Any]:
    return {"output": None, "status": "skipped", "error": None, "attempts": 0}


def as_step_error(exc: OWFError) -> Any:
    from owf_magics.runtime.results import StepError

    return StepError(exc.code, exc.message, dict(exc.details))


def final_view(step: Any, res: Any, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """The view native stores for a finished step (logic outputs' fields readable on the step)."""
    from owf_magics.manifest.models import LOGIC_STEP_TYPES

    if isinstance(res.output, dict) and step.type in LOGIC_STEP_TYPES:
        extra = {**{k: v for k, v in res.output.items() if k not in VIEW_KEYS}, **(extra or {})}
    return view(res, extra)


def state_path(ow: Any) -> str | os.PathLike[str]:
    """The file of the registry's run store, where ``checkpointer=True`` keeps checkpoints."""
    from owf_magics.runtime.records import DEFAULT_STATE_PATH

    state = ow.state
    if state is None:
        return Path.cwd() / DEFAULT_STATE_PATH
    if isinstance(state, str | os.PathLike):
        return state
    path = getattr(state, "path", None)  # a SQLiteRunStore given as state
    if isinstance(path, str):
        return path
    raise OWFError(
        "checkpointer=True keeps checkpoints in the registry's run store file, and this registry has none",
        code="VALIDATION",
        details={"suggestion": "pass checkpointer='runs.db' (a path) or a LangGraph checkpointer"},
    )


def plan_of(ow: Host, target: Loaded[Any]) -> Plan:
    plan: Plan = ow.plan_loaded(target)
    return plan
