"""The nodes of a compiled workflow's blocks (``Workflow.to_langgraph()``, see `langgraph`):
``if``/``switch`` (the decision and the join after the chosen branch), the ``forEach`` and
``parallel`` fan-out (dispatch, one worker per item or branch, the join), an inline loop's items
and join, and a ``try`` step's body, catch and finally.

`BlockNodes` is mixed into the compiler, so its module stays small; what it needs of the
compiler (the steps, the graph, a node's run context, frame, updates and condition, and the
subgraph of a block) is declared on the class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from owf_magics.backends.langgraph_state import NodeImpl, WorkflowState, as_step_error, final_view
from owf_magics.engine import attempts, case_key, retry_delay, retryable, to_step_error, view
from owf_magics.errors import OWFError
from owf_magics.plan.graph import BlockKey

if TYPE_CHECKING:
    from collections.abc import Mapping

    from owf_magics.manifest.models import StepBase
    from owf_magics.plan.graph import Graph


class BlockNodes:
    """The block node builders of the LangGraph compiler (each returns a `NodeImpl`)."""

    models: dict[str, StepBase]
    graph: Graph

    if TYPE_CHECKING:

        def _block_graph(self, key: BlockKey) -> Any: ...

        def _is_leaf(self, sid: str) -> bool: ...

        def _leaf_node(self, sid: str, *, in_node: bool = False) -> NodeImpl: ...

        def _run(self, state: WorkflowState, config: Any) -> Any: ...

        def _frame(self, state: WorkflowState) -> Any: ...

        def _updates(self, run: Any, views: Mapping[str, Any], **extra: Any) -> dict[str, Any]: ...

        def _skipped(self, sid: str) -> dict[str, Any]: ...

        async def _condition(self, state: WorkflowState, config: Any, sid: str) -> dict[str, Any] | None: ...

    def _decide_node(self, sid: str) -> NodeImpl:
        from owf_magics.manifest.models import IfStep
        from owf_magics.manifest.render import render, truthy

        step: Any = self.models[sid]

        async def decide(state: WorkflowState, config: Any, attempt: int) -> dict[str, Any]:
            skipped = await self._condition(state, config, sid)
            if skipped is not None:
                return {**skipped, "fanout": {sid: {"block": "owf__skip"}}}
            scope = self._frame(state).scope(self._run(state, config))
            if isinstance(step, IfStep):
                cond = truthy(render(step.condition, scope))
                block = "then" if cond else "else"
                output: dict[str, Any] = {"branch": block, "conditionResult": cond}
            else:
                value = render(step.value, scope)
                key = case_key(value, step.cases)
                block = f"cases:{key}" if key is not None else "default"
                output = {"case": key if key is not None else "default", "matchedValue": value}
            views: dict[str, Any] = {}
            for other in self.graph.child_blocks.get(sid, ()):
                if other[1] != block:
                    for child in self.graph.order.get(other, ()):
                        views.update(self._skipped(child))
            return {"steps": views, "fanout": {sid: {"block": block, "output": output}}}

        return decide

    def _branch_join_node(self, sid: str) -> NodeImpl:
        from owf_magics.runtime.results import StepResult

        step = self.models[sid]

        async def join(state: WorkflowState, config: Any, attempt: int) -> dict[str, Any]:
            info = state["fanout"][sid]
            if info["block"] == "owf__skip":
                return {}
            res = StepResult(sid, "success", info["output"], None, 1, "native")
            return {"steps": {sid: final_view(step, res, self._children_views(state, sid))}}

        return join

    def _children_views(self, state: WorkflowState, sid: str) -> dict[str, Any]:
        views = state.get("steps") or {}
        out: dict[str, Any] = {}
        for key in self.graph.child_blocks.get(sid, ()):
            for child in self.graph.order.get(key, ()):
                if child in views:
                    out[child] = views[child]
        return out

    def _dispatch_node(self, sid: str, loop: bool) -> NodeImpl:
        from owf_magics.manifest.render import render

        step: Any = self.models[sid]

        async def dispatch(state: WorkflowState, config: Any, attempt: int) -> dict[str, Any]:
            skipped = await self._condition(state, config, sid)
            if skipped is not None:
                return {**skipped, "fanout": {sid: {"items": [], "skipped": True}}}
            if not loop:
                return {"fanout": {sid: {"results": {}}}}
            spec = step.forEach.items if step.forEach is not None else step.items
            items = render(spec, self._frame(state).scope(self._run(state, config)))
            if not isinstance(items, list):
                raise OWFError(f"forEach items must be a list, got {type(items).__name__}", code="VALIDATION")
            return {"fanout": {sid: {"items": items, "results": {}}}}

        return dispatch

    def _worker_node(self, sid: str, key: BlockKey, loop: bool) -> NodeImpl:

        members = self.graph.order.get(key) or ()
        last = members[-1] if members else ""
        # a body of one leaf step runs in the worker itself; a block runs as a compiled subgraph
        single = self._leaf_node(last, in_node=True) if len(members) == 1 and self._is_leaf(last) else None
        graph: Any = None if single is not None else self._block_graph(key)

        async def body(payload: Any, config: Any) -> Any:
            if single is not None:
                return await single(payload, config, 1)
            return await graph.ainvoke(payload, config)

        async def worker(state: WorkflowState, config: Any, attempt: int) -> dict[str, Any]:
            scope = dict(state.get("scope") or {})
            slot = scope["index"] if loop else key[1].removeprefix("branches:")
            payload = block_input(state, scope)
            try:
                out = await body(payload, config)
            except Exception as exc:
                err = exc if isinstance(exc, OWFError) else None
                error = as_step_error(err) if err is not None else to_step_error(exc)
                return {"fanout": {sid: {"results": {slot: {"status": "error", "error": error.to_dict()}}}}}
            view = (out.get("steps") or {}).get(last) or {}
            update: dict[str, Any] = {
                "fanout": {sid: {"results": {slot: {"status": "success", "output": view.get("output")}}}},
                "usage": out.get("usage", []),
                "trace": out.get("trace", []),
            }
            if out.get("memory"):
                update["memory"] = out["memory"]
            if not loop:  # branch steps stay readable afterwards, as in the native run
                children = {s: v for s, v in (out.get("steps") or {}).items() if s in set(self.graph.order[key])}
                update["steps"] = children
            return update

        return worker

    def _fanout_join_node(self, sid: str, loop: bool) -> NodeImpl:
        from owf_magics.runtime.results import StepResult

        step: Any = self.models[sid]

        async def join(state: WorkflowState, config: Any, attempt: int) -> dict[str, Any]:
            info = state["fanout"][sid]
            if info.get("skipped"):
                return {}
            found = info.get("results") or {}
            if loop:
                results = [found[i] for i in range(len(info["items"]))]
                errors = [r["error"] for r in results if r["status"] == "error"]
                output: dict[str, Any] = {
                    "results": results,
                    "successCount": len(results) - len(errors),
                    "errorCount": len(errors),
                    "totalCount": len(results),
                }
                extra: dict[str, Any] = {"results": results}
                failed = bool(errors) and not step.continueOnError
            else:
                branches = {name: found[name] for name in step.branches}
                errors = [b["error"] for b in branches.values() if b["status"] == "error"]
                output = {
                    "branches": branches,
                    "completedCount": len(branches) - len(errors),
                    "errorCount": len(errors),
                    "joinStrategy": "all",
                }
                extra = {"branches": branches, **self._children_views(state, sid)}
                failed = bool(errors) and not step.continueOnError
            if failed:
                first = errors[0]
                raise OWFError(first["message"], code=first["code"], details=first.get("details") or {})
            res = StepResult(sid, "success", output, None, 1, "native")
            return {"steps": {sid: final_view(step, res, extra)}}

        return join

    def _inline_item_node(self, sid: str) -> NodeImpl:
        step = self.models[sid]

        async def item(state: WorkflowState, config: Any, attempt: int) -> dict[str, Any]:

            run, frame = self._run(state, config), self._frame(state)
            frame.iteration = (int(frame.extra["index"]),)
            res, _extra = await attempts(run, frame, step)
            update = self._updates(run, {})
            update.pop("steps")
            update["fanout"] = {sid: {"results": {frame.extra["index"]: {"res": view(res)}}}}
            return update

        return item

    def _inline_join_node(self, sid: str) -> NodeImpl:
        from owf_magics.runtime.results import StepError, StepResult

        step = self.models[sid]

        async def join(state: WorkflowState, config: Any, attempt: int) -> dict[str, Any]:
            info = state["fanout"][sid]
            if info.get("skipped"):
                return {}
            found = info.get("results") or {}
            views = [found[i]["res"] for i in range(len(info["items"]))]
            failed = [v for v in views if v["status"] == "failed"]
            mod = step.forEach
            assert mod is not None
            ok = not failed or mod.continueOnError or step.continueOnError
            error = None
            if failed:
                e = failed[0]["error"]
                error = StepError(e["code"], e["message"], e.get("details") or {})
            if not ok:
                assert error is not None
                raise OWFError(error.message, code=error.code, details=dict(error.details))
            res = StepResult(
                sid,
                "success",
                [v["output"] for v in views],
                error,
                sum(int(v["attempts"]) for v in views),
                "native",
            )

            return {"steps": {sid: view(res, {"results": views})}}

        return join

    def _try_node(self, sid: str) -> NodeImpl:
        import asyncio

        from owf_magics.runtime.results import StepResult

        step: Any = self.models[sid]
        body, catch, final = (self._block_graph((sid, b)) for b in ("steps", "catch", "finally"))
        members = {b: self.graph.order.get((sid, b), ()) for b in ("steps", "catch", "finally")}

        async def run_block(graph: Any, state: WorkflowState, scope: dict[str, Any], config: Any) -> Any:
            payload = block_input(state, scope)
            try:
                return await graph.ainvoke(payload, config), None
            except Exception as exc:
                return None, (as_step_error(exc) if isinstance(exc, OWFError) else to_step_error(exc))

        async def try_(state: WorkflowState, config: Any, attempt: int) -> dict[str, Any]:
            skipped = await self._condition(state, config, sid)
            if skipped is not None:
                return skipped
            policy = step.retry
            scope = dict(state.get("scope") or {})
            attempts = 0
            while True:
                attempts += 1
                out, error = await run_block(body, state, scope, config)
                if error is None or policy is None or attempts >= policy.maxAttempts or not retryable(policy, error):
                    break
                await asyncio.sleep(retry_delay(policy, attempts))
            views: dict[str, Any] = {}
            usage: list[dict[str, Any]] = []
            output = None
            if out is not None:
                views.update({s: v for s, v in out["steps"].items() if s in members["steps"]})
                usage += out.get("usage", [])
                last = members["steps"][-1] if members["steps"] else None
                output = views.get(last, {}).get("output") if last else None
            scope_error = {**error.to_dict(), "attemptCount": attempts} if error else None
            caught = None
            if error is not None:
                got, caught = await run_block(catch, state, {**scope, "error": scope_error}, config)
                if got is not None:
                    views.update({s: v for s, v in got["steps"].items() if s in members["catch"]})
                    usage += got.get("usage", [])
            else:
                for s in members["catch"]:
                    views.update(self._skipped(s))
            got, final_err = await run_block(
                final, {**state, "steps": {**state.get("steps", {}), **views}}, {**scope, "error": scope_error}, config
            )
            if got is not None:
                views.update({s: v for s, v in got["steps"].items() if s in members["finally"]})
                usage += got.get("usage", [])
            failure = final_err or caught
            if failure is None and error is not None and not members["catch"]:
                failure = error
            if failure is not None:
                raise OWFError(failure.message, code=failure.code, details=dict(failure.details))
            envelope: dict[str, Any] = {"status": "success" if error is None else "error", "attempts": attempts}
            if error is None:
                envelope["output"] = output
            else:
                envelope["error"] = scope_error
            res = StepResult(sid, "success", output if error is None else None, None, 1, "native")
            return {"steps": {**views, sid: final_view(step, res, {"result": envelope, **views})}, "usage": usage}

        return try_


def block_input(state: WorkflowState, scope: dict[str, Any]) -> dict[str, Any]:
    """What a block's own graph starts from: the run's inputs, step results and memory so far,
    and the block's scope (a loop item, a branch)."""
    return {
        "inputs": state["inputs"],
        "steps": state.get("steps") or {},
        "scope": scope,
        "memory": state.get("memory") or {},
    }
