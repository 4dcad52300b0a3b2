"""A ``groupChat`` step compiled as a loop in the StateGraph (docs/patterns.md, "LangGraph"):
one node runs one round (`owf_magics.engine.chat_round`, the native step's own round) and a
conditional edge sends it back to itself until the chat ends, then on to the step's exit node.
The chat's state between rounds (conversation, scripted cursors, usage, round) is plain data in
the graph state's ``fanout`` under the step id.
"""

from __future__ import annotations

from typing import Any

from owf_magics.backends.langgraph_state import WorkflowState, final_view
from owf_magics.engine import StepFailed, chat_round
from owf_magics.errors import OWFError
from owf_magics.runtime.results import StepResult


def add_chat_loop(compiler: Any, g: Any, sid: str) -> tuple[str, str]:
    """Add the group chat `sid` to `g` as ``sid`` (a round, looping) and ``sid__done``; returns
    the entry and exit node names. `compiler` is the workflow's `langgraph._Compiler`, whose node
    wrapper, run context, frame, updates and condition this module shares (a friend module)."""
    step = compiler.models[sid]
    done = f"{sid}__done"

    async def one_round(state: WorkflowState, config: Any, attempt: int) -> dict[str, Any]:
        held = ((state.get("fanout") or {}).get(sid) or {}).get("chat")
        if not held:  # the first round: the step's condition decides whether the chat runs
            skipped = await compiler._condition(state, config, sid)
            if skipped is not None:
                return {**skipped, "fanout": {sid: {"chat": {}, "done": True}}}
        run, frame = compiler._run(state, config), compiler._frame(state)
        try:
            new, out = await chat_round(run, frame, step, frame.scope(run), held or {})
        except StepFailed as exc:  # the step fails as a leaf step fails in the graph
            raise OWFError(exc.error.message, code=exc.error.code, details=dict(exc.error.details)) from exc
        views = {}
        if out is not None:
            res = StepResult(sid, "success", out, None, attempt, "native")
            views[sid] = final_view(step, res, None)
        updates: dict[str, Any] = compiler._updates(run, views, fanout={sid: {"chat": new, "done": out is not None}})
        return updates

    async def finished(state: WorkflowState, config: Any, attempt: int) -> dict[str, Any]:
        return {}

    def route(state: WorkflowState) -> str:
        return done if ((state.get("fanout") or {}).get(sid) or {}).get("done") else sid

    g.add_node(sid, compiler._node(one_round, sid))
    g.add_node(done, compiler._node(finished, done, pure=True))
    g.add_conditional_edges(sid, route, [sid, done])
    return sid, done
