"""MCP per-call overhead: a tool called by owf-magics steps against the bare SDK call.

Both talk to the same kind of server (tests/mcp_server.py over stdio, one process each) on the
same event loop, in interleaved rounds: the bare `mcp.ClientSession.call_tool` loop; the same calls
through the connector (`run_action`: input schema, approval policy, the pooled session, the output
conversion; what an action step and an agent's tool call make); and, for information, a workflow
whose `forEach` calls the tool as an action step, one call at a time (the engine's per-step cost
on top: scopes, trace rows, events). Prints the best per-call time of each; the target is the
connector call within 1.2x of the bare call. Standalone:
``python bench/mcp_bench.py [--calls N] [--rounds R]``; exits 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER = str(ROOT / "tests" / "mcp_server.py")
TARGET = 1.2


MANIFEST = f"""
type: connector
kind: mcp-server
name: calc
mcp: {{transport: stdio, command: python, args: ["{SERVER}", stdio]}}
---
name: loop
inputs: {{n: {{type: integer}}}}
steps:
  - id: each
    type: forEach
    items: "{{{{ range(inputs.n) | list }}}}"
    maxConcurrency: 1
    steps:
      - {{id: e, connector: calc, action: echo, input: {{text: x}}}}
"""


async def measure(calls: int, rounds: int) -> tuple[list[float], list[float], list[float]]:
    """Rounds of the bare loop and of the workflow, interleaved so both see the same machine load."""
    from mcp import ClientSession, StdioServerParameters, stdio_client

    sys.path.insert(0, str(ROOT))
    from owf_magics import OpenWorkflow
    from owf_magics.connectors import run_action
    from owf_magics.runtime.context import RunContext

    ow = OpenWorkflow(state=False)
    ow.load(MANIFEST)
    wf = ow.workflow("loop")
    await wf.aexecute(inputs={"n": 20})  # warm-up: the session is up, the plan is made
    conn = ow.connector("calc").model
    run = RunContext(ow, "bench", {}, {}, ow.thread_pool(), None)
    params = StdioServerParameters(command=sys.executable, args=[SERVER, "stdio"])
    bare: list[float] = []
    calls_: list[float] = []
    ours: list[float] = []
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        for _ in range(20):  # warm-up
            await session.call_tool("echo", {"text": "x"})
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(calls):
                await session.call_tool("echo", {"text": "x"})
            bare.append((time.perf_counter() - start) / calls)
            start = time.perf_counter()
            for _ in range(calls):  # the connector call agents' tool calls and action steps make
                await run_action(run, conn, "echo", {"text": "x"}, "bench")
            calls_.append((time.perf_counter() - start) / calls)
            start = time.perf_counter()
            r = await wf.aexecute(inputs={"n": calls})
            ours.append((time.perf_counter() - start) / calls)
            assert r.status == "completed", r.error
    ow.close()
    return bare, calls_, ours


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    bare, calls, steps = asyncio.run(measure(args.calls, args.rounds))
    base, call, step = min(bare), min(calls), min(steps)  # the least disturbed round of each
    ratio = call / base
    print(f"mcp call over stdio, bare ClientSession.call_tool       {base * 1000:8.3f} ms")
    print(f"mcp call over stdio, owf connector call (run_action)    {call * 1000:8.3f} ms  {ratio:.2f}x")
    print(f"mcp call over stdio, owf action step in a forEach       {step * 1000:8.3f} ms  {step / base:.2f}x")
    ok = ratio <= TARGET
    print(f"connector call / bare call: {ratio:.2f}x (target <= {TARGET}x): {'ok' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
