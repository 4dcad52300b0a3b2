"""Issue 23's figure: what a pattern turn costs beside an agent step.

A 50-round round-robin group chat of two scripted agents, beside a workflow of 50 agent steps in a
chain (the same agents, one answer each): both call the model 50 times; each group-chat turn adds
its transcript, its trace row, its `pattern.round` event and (with a store) its checkpoint. Timed
in turns (round-robin, after a `gc.collect()`), in memory and on a SQLite run store. Target: a
turn within 1.5x of an agent step. Run by ``make bench`` or alone: ``python bench/patterns_bench.py``.
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from owf_magics import OpenWorkflow

TURNS, ROUNDS, TARGET = 50, 5, 1.5


def agents(per_agent: int) -> str:
    docs = []
    for name in ("pro", "con"):
        responses = [
            {"content": f"{name} {i}", "usage": {"prompt_tokens": 10, "completion_tokens": 3}} for i in range(per_agent)
        ]
        docs.append(
            json.dumps({"type": "agent", "name": name, "model": {"provider": "scripted", "responses": responses}})
        )
    return "".join("---\n" + d + "\n" for d in docs)


CHAT = f"""
---
name: chat
steps:
  - {{id: chat, type: groupChat, participants: [pro, con], termination: {{maxRounds: {TURNS}}}, input: {{task: go}}}}
outputs: {{final: {{value: "{{{{ steps.chat.output.final }}}}"}}}}
"""


def chain() -> str:
    lines = ["---", "name: chain", "steps:"]
    for i in range(TURNS):
        agent = "pro" if i % 2 == 0 else "con"
        after = f", dependsOn: [s{i - 1}]" if i else ""  # a chain: each step's checkpoint before the next
        lines.append(f"  - {{id: s{i}, type: agent, agent: {agent}, input: go{i}{after}}}")
    lines.append(f'outputs: {{final: {{value: "{{{{ steps.s{TURNS - 1}.output }}}}"}}}}')
    return "\n".join(lines) + "\n"


def timed(state: str) -> tuple[float, float]:
    chat_ow, chain_ow = OpenWorkflow(state=state), OpenWorkflow(state=state)
    chat_ow.load(agents(TURNS) + CHAT)
    chain_ow.load(agents(1) + chain())
    chat_wf, chain_wf = chat_ow.workflow("chat"), chain_ow.workflow("chain")
    assert chat_wf.execute().status == chain_wf.execute().status == "completed"  # warm
    chats, chains = [], []
    for _ in range(ROUNDS):
        gc.collect()
        t0 = time.perf_counter()
        chat_wf.execute()
        chats.append(time.perf_counter() - t0)
        gc.collect()
        t0 = time.perf_counter()
        chain_wf.execute()
        chains.append(time.perf_counter() - t0)
    return statistics.median(chats), statistics.median(chains)


def main() -> int:
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for label, state in (("in memory", ":memory:"), ("SQLite store", str(Path(tmp) / "runs.db"))):
            chat, chain_ = timed(state)
            ratio = chat / chain_
            ok &= ratio <= TARGET
            print(
                f"patterns ({label}): {TURNS}-round group chat {chat * 1000:.1f} ms ({chat / TURNS * 1000:.2f} ms/turn), "
                f"{TURNS} agent steps {chain_ * 1000:.1f} ms; ratio {ratio:.2f} (target <= {TARGET})"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
