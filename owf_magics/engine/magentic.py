"""The ``magentic`` step kind: the Magentic-One loop (docs/patterns.md).

The manager writes a plan (the task ledger); then each round it answers a progress ledger, a JSON
object with ``next_speaker``, ``instruction``, ``is_request_satisfied``,
``is_progress_being_made`` and ``is_in_loop`` (each a value or ``{"answer": value, "reason":
...}``, as Magentic-One writes them); the named participant follows the instruction. After
``maxStalls`` rounds without progress (or in a loop) the manager re-plans; when the request is
satisfied, or after ``maxRounds``, it writes the final answer.
"""

from __future__ import annotations

import json
import re
from typing import Any

from owf_magics.agents.loop import Accounting
from owf_magics.engine.frame import Frame
from owf_magics.engine.pattern_turns import ROLE_FINAL, ROLE_REPLAN, ROLE_SELECT, ROLE_SPEAK, Chat, output, turn
from owf_magics.engine.patterns import named, new_chat
from owf_magics.manifest.models import MagenticStep
from owf_magics.runtime.context import RunContext, StepFailed
from owf_magics.runtime.results import StepError

LEDGER_KEYS = ("next_speaker", "instruction", "is_request_satisfied", "is_progress_being_made", "is_in_loop")


async def magentic(
    run: RunContext, frame: Frame, step: MagenticStep, scope: dict[str, Any], acc: Accounting
) -> tuple[Any, None]:
    chat = new_chat(run, frame, step, scope)
    lead = step.manager
    chat.agent(lead)
    names = list(step.participants)
    plan = await turn(chat, lead, plan_prompt(chat, names), (0, ROLE_SELECT), why="writes the plan", role="plan")
    ledgers: list[dict[str, Any]] = []
    stalls = resets = rounds = 0
    stopped = "maxRounds"
    while rounds < step.maxRounds:
        rounds += 1
        answer = await turn(
            chat, lead, ledger_prompt(chat, names, plan), (rounds, ROLE_SELECT), why="progress ledger", role="ledger"
        )
        ledger = parse_ledger(answer, step.id, rounds)
        ledgers.append({"round": rounds, **ledger})
        if truth(ledger["is_request_satisfied"]):
            stopped = "satisfied"
            break
        if truth(ledger["is_in_loop"]) or not truth(ledger["is_progress_being_made"]):
            stalls += 1
        else:
            stalls = max(0, stalls - 1)
        if stalls >= step.maxStalls:
            if resets >= step.maxResets:
                stopped = "maxResets"
                break
            resets += 1
            stalls = 0
            prompt = f"{plan_prompt(chat, names)}\n\nThe previous plan stalled:\n{plan}\nWrite a new plan."
            plan = await turn(
                chat, lead, prompt, (rounds, ROLE_REPLAN), why=f"re-plans after {step.maxStalls} stalls", role="plan"
            )
            continue
        speaker = named(chat, names, value(ledger["next_speaker"]), f"manager {lead}")
        instruction = str(value(ledger["instruction"]) or "")
        prompt = f"{chat.transcript()}\n\nInstruction from {chat.agent(lead).name}: {instruction}"
        why = f"progress ledger: {reason(ledger['next_speaker']) or instruction}"
        content = await turn(chat, speaker, prompt, (rounds, ROLE_SPEAK), why=why)
        chat.conversation.append({"agent": chat.agent(speaker).name, "content": content})
    final = await turn(
        chat,
        lead,
        f"{chat.transcript()}\n\nWrite the final answer to the task.",
        (rounds, ROLE_FINAL),
        why="final answer",
        role="final",
    )
    return output(
        chat, final, rounds, task_ledger=plan, progress_ledger=ledgers, replans=resets, terminated=stopped
    ), None


def plan_prompt(chat: Chat, names: list[str]) -> str:
    team = "\n".join(f"- {chat.agent(n).name}: {chat.agent(n).description or ''}".rstrip(": ") for n in names)
    return f"Task: {chat.task}\n\nTeam:\n{team}\n\nWrite a short plan: the facts you know and who does what."


def ledger_prompt(chat: Chat, names: list[str], plan: str) -> str:
    roster = ", ".join(chat.agent(n).name for n in names)
    return (
        f"{chat.transcript()}\n\nPlan:\n{plan}\n\nAnswer with a JSON object with the keys "
        f"{', '.join(LEDGER_KEYS)}; next_speaker is one of: {roster}."
    )


def parse_ledger(answer: str, step_id: str, rounds: int) -> dict[str, Any]:
    """The progress ledger in the manager's answer (a JSON object, possibly fenced or with text around)."""
    body = answer.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", body, re.S)
    if fenced:
        body = fenced.group(1)
    elif "{" in body:
        body = body[body.index("{") : body.rindex("}") + 1]
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, ValueError):
        data = None
    if not isinstance(data, dict):
        raise StepFailed(
            StepError(
                "VALIDATION",
                f"the manager's progress ledger in round {rounds} of '{step_id}' is not a JSON object",
                {"answer": answer[:200], "keys": list(LEDGER_KEYS)},
            )
        )
    missing = [k for k in LEDGER_KEYS if k not in data and k not in ("next_speaker", "instruction")]
    if missing or (not truth(data.get("is_request_satisfied")) and "next_speaker" not in data):
        raise StepFailed(
            StepError(
                "VALIDATION",
                f"the manager's progress ledger in round {rounds} of '{step_id}' "
                f"lacks {', '.join(missing) or 'next_speaker'}",
                {"answer": answer[:200], "keys": list(LEDGER_KEYS)},
            )
        )
    return {k: data.get(k) for k in LEDGER_KEYS}


def value(entry: Any) -> Any:
    return entry.get("answer") if isinstance(entry, dict) else entry


def reason(entry: Any) -> str | None:
    return str(entry["reason"]) if isinstance(entry, dict) and entry.get("reason") else None


def truth(entry: Any) -> bool:
    v = value(entry)
    if isinstance(v, str):
        return v.strip().lower() in ("true", "yes", "1")
    return bool(v)
