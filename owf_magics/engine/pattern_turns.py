"""One turn of an orchestration pattern (docs/patterns.md): an agent called inside a pattern step,
with its own trace row, usage rows, ``pattern.round`` event and checkpoint.

A pattern step (``groupChat``, ``magentic``, ``sequential``, ``concurrent``) is a container: its
own trace row carries no tokens; each turn is a row of that step whose ``iteration`` is the turn's
place ``ROUND.ROLE`` (role 0: the manager's or the selector's call, 1: the speaker, 2: a re-plan,
3: the final answer; a concurrent participant ``1.<i>``), with the turn's tokens and cost. Each
turn is checkpointed under ``<step>[ROUND.ROLE]`` as soon as it ends, so a resume (in any
process) serves the turns already done from the store and runs only the rest.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from owf_magics.agents import events
from owf_magics.agents.loop import Accounting, run_agent
from owf_magics.agents.providers import Usage
from owf_magics.engine.agent_events import sink
from owf_magics.engine.checkpoints import checkpoint, durable
from owf_magics.engine.frame import Frame, execution_key
from owf_magics.engine.trace import trace_step
from owf_magics.engine.workflow_tools import tools_bound
from owf_magics.manifest.models import Agent, StepBase
from owf_magics.manifest.refs import parse_ref
from owf_magics.manifest.render import redact
from owf_magics.runtime.context import RunContext, StepFailed, now
from owf_magics.runtime.results import StepError, StepResult

ROUND_EVENT = "pattern.round"
ROLE_SELECT, ROLE_SPEAK, ROLE_REPLAN, ROLE_FINAL = 0, 1, 2, 3


@dataclass
class Chat:
    """The state of one pattern step's execution: who said what, and each agent's place in its
    scripted responses (a scripted agent that speaks again continues its list)."""

    run: RunContext
    frame: Frame
    step: StepBase
    task: str
    conversation: list[dict[str, Any]] = field(default_factory=list)
    cursors: dict[str, int] = field(default_factory=dict)
    agents: dict[str, Agent] = field(default_factory=dict)
    usage: dict[str, dict[str, Any]] = field(default_factory=dict)
    budget: Any = None  # the step's guardrails.maxCost/maxTokens, spent by all its turns

    def __post_init__(self) -> None:
        if self.step.guardrails is not None:
            from owf_magics.agents.limits import step_budget

            self.budget = step_budget(self.step)

    def agent(self, name: str) -> Agent:
        """A participant (or manager) by the name the step gives it."""
        found = self.agents.get(name)
        if found is None:
            loaded = self.run.host.catalog.agent(parse_ref(name, expected_kind="agent"))
            if loaded is None:
                raise StepFailed(StepError("VALIDATION", f"agent '{name}' of step '{self.step.id}' is not loaded"))
            found = self.agents[name] = loaded.model
        return found

    def transcript(self, heading: str = "Conversation so far") -> str:
        lines = [f"Task: {self.task}"]
        if self.conversation:
            lines += ["", f"{heading}:"] + [f"{m['agent']}: {m['content']}" for m in self.conversation]
        return "\n".join(lines)


def task_text(value: Any) -> str:
    """The task of a pattern step from its rendered input: ``task`` of a mapping, or the text."""
    if isinstance(value, dict) and "task" in value:
        value = value["task"]
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)


def text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)


async def turn(
    chat: Chat,
    name: str,
    prompt: Any,
    place: tuple[int, int],
    *,
    why: str,
    role: str = "speaker",
    event: bool | None = None,
) -> str:
    """Agent `name` answers `prompt` as the turn at `place` (round, role); returns its answer.

    A turn the run's store holds already (a resumed run) is served from it without a model call.
    """
    run, frame, step = chat.run, chat.frame, chat.step
    sub = frame.child(iteration=(*frame.iteration, *place))
    key = execution_key(sub, step.id)
    agent = chat.agent(name)
    rec = run.recorded.get(key) if run.recorded else None
    if rec is not None and rec.status == "success" and isinstance(rec.output, dict):
        out = rec.output
        chat.cursors[name] = chat.cursors.get(name, 0) + int(out.get("turns", 0))
        kept: dict[str, Any] = rec.usage or {}
        _account(chat, out.get("agent", agent.name), kept, float(kept.get("cost_usd", 0.0) or 0.0))
        if chat.budget is not None and kept:  # what the turns before the stop spent still counts
            chat.budget.record(int(kept.get("total_tokens", 0)), float(kept.get("cost_usd", 0.0) or 0.0))
        res = StepResult(step.id, "success", out, None, 1, frame.plan.entries[step.id].backend)
        total = (
            Usage(int(kept.get("prompt_tokens", 0)), int(kept.get("completion_tokens", 0)), bool(kept.get("estimated")))
            if kept
            else None
        )
        cost = float(kept.get("cost_usd", 0.0) or 0.0)
        trace_step(
            run,
            sub,
            step,
            res,
            attempt=1,
            started=now(),
            duration=0.0,
            usage=total,
            cost=cost,
            note="restored",
            event=False,
        )
        if run.store is not None:
            run.seen[key] = {"input": rec.input, "usage": rec.usage}
            checkpoint(run, sub, step, res)
        return text(out.get("content"))
    speaker = _scripted_from(agent, chat.cursors.get(name, 0))
    acc = Accounting()
    started, t0 = time.time(), time.perf_counter()
    deliver = sink(run, sub, step, 1)
    # requests (an approval in a tool) stay keyed by the step (CURRENT_KEY): the step waits, and on
    # resume the turn finds its answer there
    with events.bind(deliver), tools_bound(run, frame, step.id):
        if role == "speaker" if event is None else event:  # one pattern.round event per speaker turn
            deliver(
                ROUND_EVENT,
                {
                    "timestamp_s": started,
                    "round": place[0],
                    "role": role,
                    "speaker": agent.name,
                    "agent": agent.name,
                    "reason": why,
                },
            )
        answer = await run_agent(run, speaker, prompt, step.id, acc, step, chat.budget)
    duration = (time.perf_counter() - t0) * 1000
    chat.cursors[name] = chat.cursors.get(name, 0) + len(acc.turns)
    content = text(answer)
    total = acc.total()
    out = {"agent": agent.name, "role": role, "content": content, "reason": why, "turns": len(acc.turns)}
    res = StepResult(step.id, "success", out, None, 1, frame.plan.entries[step.id].backend)
    res.duration_ms = round(duration, 3)
    trace_step(
        run, sub, step, res, attempt=1, started=started, duration=duration, usage=total, cost=acc.cost, event=False
    )
    for sort_key, row in acc.rows:
        run.usage.append(((frame.order.get(step.id, 0), sub.iteration, 1, *sort_key), row))
    usage: dict[str, Any] = {}
    if total is not None:
        usage = {
            "prompt_tokens": total.prompt_tokens,
            "completion_tokens": total.completion_tokens,
            "total_tokens": total.total_tokens,
            "estimated": total.estimated,
            "cost_usd": acc.cost,
        }
    _account(chat, agent.name, usage, acc.cost)
    if run.store is not None:
        run.seen.setdefault(key, {})["usage"] = usage or None
        run.seen[key]["input"] = redact(prompt, run.secrets) if run.secrets else prompt
        checkpoint(run, sub, step, res)
        await durable(run)  # the turn is durable before the next one starts
    return content


def _account(chat: Chat, agent: str, usage: dict[str, Any], cost: float) -> None:
    """Costs rolled up per participant (the step output's ``usage``)."""
    mine = chat.usage.setdefault(agent, {"turns": 0, "total_tokens": 0, "cost_usd": 0.0})
    mine["turns"] += 1
    mine["total_tokens"] += int(usage.get("total_tokens", 0) or 0)
    mine["cost_usd"] = round(mine["cost_usd"] + (cost or 0.0), 8)


def _scripted_from(agent: Agent, start: int) -> Agent:
    """A scripted agent that already answered in this step continues its responses where it was."""
    if start <= 0 or agent.model.provider != "scripted" or not agent.model.responses:
        return agent
    model = agent.model.model_copy(update={"responses": agent.model.responses[start:]})
    return agent.model_copy(update={"model": model})


def output(chat: Chat, final: str, rounds: int, **extra: Any) -> dict[str, Any]:
    """A pattern step's output: the conversation, the final answer, the rounds (docs/patterns.md)."""
    return {
        "conversation": [{"agent": m["agent"], "content": m["content"]} for m in chat.conversation],
        "final": final,
        "rounds": rounds,
        **extra,
        "usage": chat.usage,
    }
