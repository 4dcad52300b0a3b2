"""Consecutive steps of the langchain backend as one LangGraph invocation.

Every action or logic step handed to the langchain backend runs inside a LangGraph graph (so
LangGraph's callbacks and tracing see it). One graph invocation per step costs LangGraph its
per-invocation set-up (loop, config, checkpoint and channel bookkeeping) on every step: ~1.5x a
node inside a long chain. When the engine reaches a run of such steps one after another, it hands
the whole run to `run_chain`: one invocation of a graph whose single node runs a step and
returns the next (a superstep per step, as in a LangGraph chain of nodes). Inside that node,
`LangChainBackend.arun_step` runs a step's native work directly (`IN_CHAIN`): it is already a
LangGraph node. The engine keeps doing per step what it always does (trace rows, events,
checkpoints, waits, failures), so runs give the same results, rows and events.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

#: A step of a chain: runs one step, returns the next one to run in the graph (or None: the
#: chain ends and the engine goes on by itself).
ChainStep = Callable[[], Awaitable["ChainStep | None"]]

#: True inside the chain graph's node: a step's native work runs there directly.
IN_CHAIN: contextvars.ContextVar[bool] = contextvars.ContextVar("owf_langchain_chain", default=False)

_graph: list[Any] = []
_CONFIG = {"recursion_limit": 2**31 - 1}  # a superstep per step: a chain may be any length


def chain_graph() -> Any:
    """The chain graph, built once per process: a Pregel node that runs the step on its input
    channel and writes the next step back to it (nothing, at the chain's end)."""
    if not _graph:
        from langgraph.channels import EphemeralValue
        from langgraph.pregel import NodeBuilder, Pregel
        from langgraph.pregel.main import ChannelWriteEntry  # type: ignore[attr-defined]  # its home: pregel._write

        async def step(run: ChainStep) -> ChainStep | None:
            token = IN_CHAIN.set(True)
            try:
                return await run()
            finally:
                IN_CHAIN.reset(token)

        node = NodeBuilder().subscribe_only("run").do(step).write_to(ChannelWriteEntry("run", skip_none=True))
        _graph.append(
            Pregel(
                nodes={"step": node},
                channels={"run": EphemeralValue(Any)},
                input_channels="run",
                output_channels="run",
                name="owf-chain",
            )
        )
    return _graph[0]


async def run_chain(first: ChainStep) -> None:
    """Run `first` and every step it leads to, a superstep each, in one graph invocation.

    A step that cancels the task it runs in (an OpenFlow hook's STOP cancels the current task)
    cancels the node's task here: LangGraph reports that as its own error, and the engine gets the
    cancellation back, as it would outside the graph.
    """
    try:
        await chain_graph().ainvoke(first, _CONFIG)
    except Exception as exc:
        if isinstance(exc.__cause__, asyncio.CancelledError):
            raise asyncio.CancelledError(*exc.__cause__.args) from exc
        raise
