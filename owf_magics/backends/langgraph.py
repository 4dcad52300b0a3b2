"""A whole workflow compiled to a LangGraph ``StateGraph`` (``Workflow.to_langgraph()``).

Each step is a node that waits for the steps it reads, so independent steps share a superstep;
``if``/``switch`` become conditional edges, ``forEach`` and ``parallel`` a ``Send`` fan-out,
a sub-workflow its own compiled graph, and a step's ``retry`` a LangGraph ``RetryPolicy``.
Leaf steps run the native handlers, so outputs equal the native run's.
"""

from __future__ import annotations

import os
from collections import ChainMap
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from owf_magics.backends.langgraph_blocks import BlockNodes
from owf_magics.backends.langgraph_patterns import add_chat_loop
from owf_magics.backends.langgraph_state import (
    NodeImpl,
    WorkflowState,
    as_step_error,
    drive,
    final_view,
    loop_vars,
    node_attempt,
    nothing,
    plan_of,
    skipped_view,
    sqlite_checkpointer,
    state_path,
)
from owf_magics.connectors.function import prepare_function
from owf_magics.engine import (
    Frame,
    RunContext,
    attempts,
    descendants,
    render_outputs,
    resolve_inputs,
    retryable,
)
from owf_magics.errors import OWFError
from owf_magics.plan.graph import ROOT, BlockKey
from owf_magics.runtime.context import Host

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig

    from owf_magics.manifest.catalog import Loaded
    from owf_magics.plan.resolution import Plan

__all__ = ["compile_workflow", "sqlite_checkpointer"]

# Node names add these suffixes to step ids (LangGraph reserves ':' and '|').
INPUTS, OUTPUTS = "owf__inputs", "owf__outputs"


def compile_workflow(ow: Host, item: Loaded[Any], *, checkpointer: Any = None, name: str | None = None) -> Any:
    """Compile a loaded workflow; see `Workflow.to_langgraph`."""
    import importlib.util

    from owf_magics.errors import UnavailableError

    if importlib.util.find_spec("langgraph") is None:
        raise UnavailableError(
            "compiling to LangGraph needs the langgraph package",
            details={"backend": "langchain", "suggestion": "pip install 'owf-magics[langgraph]'"},
        )
    if checkpointer is True:
        checkpointer = sqlite_checkpointer(state_path(ow))
    elif isinstance(checkpointer, str | os.PathLike):
        checkpointer = sqlite_checkpointer(checkpointer)
    return _Compiler(ow, item, plan_of(ow, item)).compile(checkpointer=checkpointer, name=name)


class _Compiler(BlockNodes):  # the block nodes (branches, fan-out, loops, try): langgraph_blocks.py
    def __init__(self, ow: Host, item: Loaded[Any], plan: Plan) -> None:
        from owf_magics.plan.resolution import step_models

        self.ow = ow
        self.item = item
        self.wf = item.model
        self.plan = plan
        self.graph = plan.graph
        self.models = step_models(self.wf)
        self.order = {sid: float(i) for i, sid in enumerate(self.graph.topological())}
        self.subgraphs: dict[BlockKey, Any] = {}
        self.children: dict[str, Any] = {}
        self.functions: dict[str, Any] = {}  # handlers resolved once, shared by every node's run
        self._check()

    # -- what compiles -------------------------------------------------------------------------

    def _check(self) -> None:
        from owf_magics.agents.limits import run_budget
        from owf_magics.manifest.models import AgentStep, ParallelStep, WaitStep

        if run_budget(self.wf) is not None:
            raise OWFError(
                f"workflow '{self.wf.name}' does not compile to LangGraph: its policies.cost budget spans "
                "the whole run, which the native executor keeps",
                code="VALIDATION",
                details={"feature": "policies.cost", "suggestion": "use wf.execute(), or a step budget"},
            )
        for sid, step in self.models.items():
            target = self.plan.targets.get(sid)
            agent = target.model if isinstance(step, AgentStep) and target is not None else None
            behavior = agent.guardrails.behavior if agent is not None and agent.guardrails else None
            if behavior is not None and behavior.requireConfirmation:
                raise OWFError(
                    f"step '{sid}' of workflow '{self.wf.name}' does not compile to LangGraph: its agent's "
                    "tools need a person's confirmation, which pauses a durable native run",
                    code="VALIDATION",
                    details={"step_id": sid, "feature": "requireConfirmation", "suggestion": "use wf.execute()"},
                )
            where = f"step '{sid}' of workflow '{self.wf.name}'"
            if isinstance(step, ParallelStep) and (step.join != "all" or step.timeout is not None):
                raise OWFError(
                    f"{where} does not compile to LangGraph: a parallel step with join "
                    f"'{step.join if isinstance(step.join, str) else 'count'}'"
                    f"{' and a timeout' if step.timeout is not None else ''} needs the native executor "
                    "(a LangGraph superstep waits for every branch)",
                    code="VALIDATION",
                    details={
                        "step_id": sid,
                        "feature": "parallel.join",
                        "suggestion": "use join: all, or wf.execute()",
                    },
                )
            if isinstance(step, WaitStep) and step.duration is None:
                raise OWFError(
                    f"{where} does not compile to LangGraph: waiting for an event or a time needs the "
                    "durable run store of the native executor",
                    code="VALIDATION",
                    details={"step_id": sid, "feature": "wait.until", "suggestion": "use wf.execute()"},
                )

    # -- building ------------------------------------------------------------------------------

    def compile(self, *, checkpointer: Any = None, name: str | None = None) -> Any:
        from langgraph.graph import END, START, StateGraph

        g: Any = StateGraph(WorkflowState)
        g.add_node(INPUTS, self._node(self._inputs_node, INPUTS, pure=True))
        g.add_node(OUTPUTS, self._node(self._outputs_node, OUTPUTS, pure=True))
        g.add_edge(START, INPUTS)
        roots, sinks = self._wire(g, ROOT)
        for root in roots or [OUTPUTS]:
            g.add_edge(INPUTS, root)
        if sinks:
            g.add_edge(sinks if len(sinks) > 1 else sinks[0], OUTPUTS)
        g.add_edge(OUTPUTS, END)
        return g.compile(checkpointer=checkpointer, name=name or self.wf.name)

    def _block_graph(self, key: BlockKey) -> Any:
        """A block (loop body, branch, try block) as a compiled subgraph of its own."""
        if key not in self.subgraphs:
            from langgraph.graph import END, START, StateGraph

            g: Any = StateGraph(WorkflowState)
            roots, sinks = self._wire(g, key)
            if not roots:
                g.add_node("owf__empty", self._node(nothing, "owf__empty", pure=True))
                roots = sinks = ["owf__empty"]
            for root in roots:
                g.add_edge(START, root)
            g.add_edge(sinks if len(sinks) > 1 else sinks[0], END)
            self.subgraphs[key] = g.compile(name=f"{key[0]}.{key[1]}")
        return self.subgraphs[key]

    def _wire(self, g: Any, key: BlockKey) -> tuple[list[str], list[str]]:
        """Add a block's steps to `g` as the DAG of the plan's graph: a step waits for every step it
        reads (a LangGraph waiting edge), independent steps run in the same superstep. Returns the
        entry nodes of the block's roots and the exit nodes of its sinks."""
        members = self.graph.order.get(key, ())
        ends: dict[str, tuple[str, str]] = {sid: self._add_step(g, sid) for sid in members}
        used: set[str] = set()
        roots: list[str] = []
        for sid in members:
            deps = [d for d in self.graph.deps.get(sid, ()) if d in ends]
            if not deps:
                roots.append(ends[sid][0])
                continue
            used.update(deps)
            sources = [ends[d][1] for d in deps]
            g.add_edge(sources if len(sources) > 1 else sources[0], ends[sid][0])
        sinks = [ends[sid][1] for sid in members if sid not in used]
        return roots, sinks

    def _add_step(self, g: Any, sid: str) -> tuple[str, str]:
        from owf_magics.manifest.models import ForEachStep, IfStep, ParallelStep, SwitchStep, TryStep, WorkflowStep

        step = self.models[sid]
        if step.forEach is not None and not isinstance(step, IfStep):
            return self._add_inline_loop(g, sid)
        if isinstance(step, IfStep | SwitchStep):
            return self._add_branching(g, sid)
        if isinstance(step, ForEachStep):
            return self._add_fanout(g, sid, [(step.id, "steps")], loop=True)
        if isinstance(step, ParallelStep):
            return self._add_fanout(g, sid, [(step.id, f"branches:{b}") for b in step.branches], loop=False)
        if isinstance(step, TryStep):
            g.add_node(sid, self._node(self._try_node(sid), sid))
            return sid, sid
        if isinstance(step, WorkflowStep):
            g.add_node(sid, self._node(self._workflow_node(sid), sid), retry_policy=self._retry_policy(sid))
            return sid, sid
        if step.type == "groupChat":  # type: ignore[attr-defined]  # a loop in the graph (docs/patterns.md)
            return add_chat_loop(self, g, sid)
        g.add_node(
            sid, self._node(self._leaf_node(sid), sid, pure=self._pure(sid)), retry_policy=self._retry_policy(sid)
        )
        return sid, sid

    def _is_leaf(self, sid: str) -> bool:
        """A step that runs as one node (no block of its own, no inline loop)."""
        step = self.models[sid]
        return step.forEach is None and step.type not in ("if", "switch", "forEach", "parallel", "try", "workflow")  # type: ignore[attr-defined]

    def _pure(self, sid: str, *, in_node: bool = False) -> bool:
        """Whether the step's node never waits on I/O: a native template, or an action whose handler
        is an ``@inline`` function, with no timeout and no retry sleeping inside the node."""
        from owf_magics.manifest.models import ActionStep, TransformStep

        step = self.models[sid]
        if (
            self.plan[sid].backend != "native"
            or step.timeout is not None
            or not (step.retry is None or (not in_node and self._retry_policy(sid) is not None))
        ):
            return False
        if isinstance(step, TransformStep):
            return True
        if not isinstance(step, ActionStep) or sid not in self.plan.targets:
            return False
        action = self.plan.targets[sid].model.action(step.action)
        target = action.handler.function if action is not None and action.handler is not None else None
        if not target:
            return False

        try:
            call = prepare_function(target)
        except OWFError:
            return False
        self.functions.setdefault(target, call)
        return bool(call.inline and not call.is_async and not call.maybe_async)

    def _retry_policy(self, sid: str) -> Any:
        """The step's retry as a LangGraph RetryPolicy (None when retries run inside the node)."""
        step = self.models[sid]
        policy = step.retry
        if policy is None or step.continueOnError or policy.backoff == "linear":
            return None
        from langgraph.types import RetryPolicy

        def retry_on(exc: Exception) -> bool:
            return isinstance(exc, OWFError) and retryable(policy, as_step_error(exc))

        base = policy.initialDelay if policy.initialDelay is not None else 1.0
        return RetryPolicy(
            initial_interval=base,
            backoff_factor=1.0 if policy.backoff == "fixed" else policy.backoffFactor,
            max_interval=policy.maxDelay if policy.maxDelay is not None else 1e9,
            max_attempts=policy.maxAttempts,
            jitter=False,
            retry_on=retry_on,
        )

    def _add_branching(self, g: Any, sid: str) -> tuple[str, str]:
        from owf_magics.manifest.models import IfStep

        step = self.models[sid]
        join = f"{sid}__join"
        g.add_node(sid, self._node(self._decide_node(sid), sid, pure=True))
        g.add_node(join, self._node(self._branch_join_node(sid), join, pure=True))
        targets: dict[str, list[str]] = {}
        for key in self.graph.child_blocks.get(sid, ()):
            roots, sinks = self._wire(g, key)
            targets[key[1]] = roots or [join]
            if len(sinks) > 1:  # one node that waits for the whole branch, so the join runs once
                end = f"{sid}__{key[1].replace(':', '_')}__end"
                g.add_node(end, self._node(nothing, end, pure=True))
                g.add_edge(sinks, end)
                sinks = [end]
            if sinks:
                g.add_edge(sinks[0], join)
        if isinstance(step, IfStep):
            targets.setdefault("then", [join])
            targets.setdefault("else", [join])
        targets.setdefault("default", [join])

        def route(state: WorkflowState) -> list[str]:
            return targets.get(state["fanout"][sid]["block"], [join])

        g.add_conditional_edges(sid, route, sorted({t for names in targets.values() for t in names}))
        return sid, join

    def _add_fanout(self, g: Any, sid: str, keys: list[BlockKey], *, loop: bool) -> tuple[str, str]:
        from langgraph.types import Send

        join = f"{sid}__join"
        g.add_node(sid, self._node(self._dispatch_node(sid, loop), sid, pure=True))
        g.add_node(join, self._node(self._fanout_join_node(sid, loop), join, pure=True))
        workers = {}
        for key in keys:
            worker = f"{sid}__body" if loop else f"{sid}__{key[1].removeprefix('branches:')}"
            workers[key] = worker
            members = self.graph.order.get(key) or ()
            pure = len(members) == 1 and self._is_leaf(members[0]) and self._pure(members[0], in_node=True)
            g.add_node(worker, self._node(self._worker_node(sid, key, loop), worker, pure=pure))
            g.add_edge(worker, join)

        def fan(state: WorkflowState) -> Any:
            base = {
                "inputs": state["inputs"],
                "steps": state.get("steps", {}),
                "memory": state.get("memory", {}),
                "scope": state.get("scope", {}),
            }
            if loop:
                items = state["fanout"][sid]["items"]
                worker = workers[keys[0]]
                sends = [
                    Send(worker, {**base, "scope": {**base["scope"], **loop_vars(i, item, len(items))}})
                    for i, item in enumerate(items)
                ]
            else:
                sends = [Send(w, {**base, "scope": {**base["scope"], "owf_branch": k[1]}}) for k, w in workers.items()]
            return sends or join

        g.add_conditional_edges(sid, fan, [*workers.values(), join])
        return sid, join

    def _add_inline_loop(self, g: Any, sid: str) -> tuple[str, str]:
        from langgraph.types import Send

        join, worker = f"{sid}__join", f"{sid}__item"
        g.add_node(sid, self._node(self._dispatch_node(sid, True), sid, pure=True))
        g.add_node(worker, self._node(self._inline_item_node(sid), worker))
        g.add_node(join, self._node(self._inline_join_node(sid), join, pure=True))
        g.add_edge(worker, join)

        def fan(state: WorkflowState) -> Any:
            items = state["fanout"][sid]["items"]
            base = {"inputs": state["inputs"], "steps": state.get("steps", {}), "memory": state.get("memory", {})}
            scope = state.get("scope", {})
            sends = [
                Send(worker, {**base, "scope": {**scope, **loop_vars(i, item, len(items))}})
                for i, item in enumerate(items)
            ]
            return sends or join

        g.add_conditional_edges(sid, fan, [worker, join])
        return sid, join

    # -- nodes ---------------------------------------------------------------------------------

    def _node(self, impl: NodeImpl, name: str, *, pure: bool = False) -> Any:
        """A node that runs `impl` from `graph.invoke` as well as `graph.ainvoke`.

        A `pure` body never waits on I/O (templates, joins, decisions): from `graph.invoke` it is
        driven to completion directly instead of on a new event loop, which costs more than it does.
        """
        from owf_magics.backends.langchain_parts import run_sync

        async def afunc(state: WorkflowState, config: RunnableConfig) -> dict[str, Any]:
            return await impl(state, config, node_attempt())

        def func(state: WorkflowState, config: RunnableConfig) -> dict[str, Any]:
            coro = impl(state, config, node_attempt())
            if pure:
                return drive(coro)
            result: dict[str, Any] = run_sync(coro)
            return result

        try:  # what StateGraph wraps a plain function in: no callback run of its own per call
            from langgraph._internal._runnable import RunnableCallable
        except ImportError:  # pragma: no cover - a LangGraph without it: LangChain's public runnable
            from langchain_core.runnables import RunnableLambda

            return RunnableLambda(func, afunc=afunc, name=name)
        return RunnableCallable(func, afunc, name=name, trace=False)

    def _run(self, state: WorkflowState, config: Any) -> Any:

        conf = (config or {}).get("configurable", {})
        secrets = {str(k): str(v) for k, v in (conf.get("secrets") or {}).items()}
        env = self.ow.environment if self.ow.environment is not None else os.environ
        run_id = str(conf.get("run_id") or conf.get("thread_id") or "langgraph")
        memory = {k: list(v) for k, v in (state.get("memory") or {}).items()}
        return RunContext(
            self.ow, run_id, secrets, env, self.ow.thread_pool(), None, memory=memory, functions=self.functions
        )

    def _frame(self, state: WorkflowState) -> Any:

        scope = dict(state.get("scope") or {})
        scope.pop("owf_branch", None)
        return Frame(
            self.plan,
            self.models,
            state.get("inputs") or {},
            ChainMap(dict(state.get("steps") or {})),
            {},
            (),
            scope,
            self.order,
        )

    def _updates(self, run: Any, views: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        from owf_magics.manifest.render import redact

        out: dict[str, Any] = {"steps": dict(views), **extra}
        if run.usage:
            out["usage"] = [row for _, row in sorted(run.usage, key=lambda kv: kv[0])]
        if run.trace:
            out["trace"] = [redact(row, run.secrets) for _, row in sorted(run.trace, key=lambda kv: kv[0])]
        if run.memory:
            out["memory"] = run.memory
        return out

    async def _inputs_node(self, state: WorkflowState, config: Any, attempt: int) -> dict[str, Any]:
        root = getattr(self.ow, "files_root", None)  # where `file` inputs must be (engine/input_rules)
        return {
            "inputs": resolve_inputs(self.wf, state.get("inputs") or {}, files_root=root),
            "steps": {},
            "scope": {},
            "fanout": {},
            "memory": {},
        }

    async def _outputs_node(self, state: WorkflowState, config: Any, attempt: int) -> dict[str, Any]:
        from owf_magics.manifest.render import redact

        run = self._run(state, config)
        outputs = render_outputs(self.wf.outputs, self._frame(state).scope(run))
        return {"outputs": redact(outputs, run.secrets)}

    def _skipped(self, sid: str) -> dict[str, Any]:

        views = {sid: skipped_view()}
        for child in descendants(self.graph, sid):
            views[child] = skipped_view()
        return views

    async def _condition(self, state: WorkflowState, config: Any, sid: str) -> dict[str, Any] | None:
        """Updates that skip the step when its ``condition`` is false, else None."""
        from owf_magics.manifest.models import IfStep
        from owf_magics.manifest.render import render, truthy

        step = self.models[sid]
        if step.condition is None or isinstance(step, IfStep):
            return None
        frame = self._frame(state)
        if truthy(render(step.condition, frame.scope(self._run(state, config)))):
            return None
        return {"steps": self._skipped(sid)}

    def _leaf_node(self, sid: str, *, in_node: bool = False) -> NodeImpl:
        step = self.models[sid]
        in_node_retries = in_node or self._retry_policy(sid) is None
        run_step = step if in_node_retries else step.model_copy(update={"retry": None})

        async def leaf(state: WorkflowState, config: Any, attempt: int) -> dict[str, Any]:

            skipped = await self._condition(state, config, sid)
            if skipped is not None:
                return skipped
            run, frame = self._run(state, config), self._frame(state)
            res, extra = await attempts(run, frame, run_step)
            if not in_node_retries:
                res.attempts = attempt
            if res.status == "waiting":  # an approval or an event: only a durable native run can wait
                raise OWFError(
                    f"step '{sid}' waits for an approval or an event, which a compiled graph cannot do",
                    code="UNAVAILABLE",
                    details={"step_id": sid, "suggestion": "run the workflow with wf.execute()"},
                )
            if res.status == "failed" and not step.continueOnError:
                assert res.error is not None
                raise OWFError(res.error.message, code=res.error.code, details=dict(res.error.details))
            return self._updates(run, {sid: final_view(step, res, extra)})

        return leaf

    def _workflow_node(self, sid: str) -> NodeImpl:
        from owf_magics.manifest.render import render
        from owf_magics.runtime.results import StepResult

        step: Any = self.models[sid]
        target: Loaded[Any] = self.plan.targets[sid]

        async def sub(state: WorkflowState, config: Any, attempt: int) -> dict[str, Any]:
            skipped = await self._condition(state, config, sid)
            if skipped is not None:
                return skipped
            run, frame = self._run(state, config), self._frame(state)
            if sid not in self.children:
                self.children[sid] = _Compiler(self.ow, target, plan_of(self.ow, target)).compile()
            inputs = resolve_inputs(target.model, render(step.input, frame.scope(run)))
            child = await self.children[sid].ainvoke({"inputs": inputs}, config)
            outputs = child.get("outputs", {})
            res = StepResult(sid, "success", outputs, None, attempt, "native")
            return self._updates(run, {sid: final_view(step, res, {"outputs": outputs})}, usage=child.get("usage", []))

        return sub
