"""The ``groupChat``, ``sequential`` and ``concurrent`` step kinds (docs/patterns.md).

Each runs its participants through `pattern_turns.turn` (one trace row, one ``pattern.round``
event and one checkpoint per turn) and returns ``{conversation, final, rounds, usage}``.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from owf_magics.agents.loop import Accounting
from owf_magics.connectors.function import resolve_function
from owf_magics.engine.frame import Frame, render_input
from owf_magics.engine.pattern_turns import (
    ROLE_FINAL,
    ROLE_SELECT,
    ROLE_SPEAK,
    Chat,
    output,
    task_text,
    text,
    turn,
)
from owf_magics.manifest.models import ConcurrentStep, GroupChatStep, SequentialStep
from owf_magics.manifest.render import TemplateError, render, render_string, truthy
from owf_magics.runtime.context import RunContext, StepFailed
from owf_magics.runtime.results import StepError


def new_chat(run: RunContext, frame: Frame, step: Any, scope: dict[str, Any]) -> Chat:
    data = render_input(step.input, scope, step.id, credentials=False)
    chat = Chat(run, frame, step, task_text(data))
    for name in step.participants:
        chat.agent(name)  # every participant is loaded before the first turn
    return chat


async def group_chat(
    run: RunContext, frame: Frame, step: GroupChatStep, scope: dict[str, Any], acc: Accounting
) -> tuple[Any, None]:
    """Participants take turns chosen by the selection rule until a termination rule holds."""
    chat = new_chat(run, frame, step, scope)
    rounds = 0
    while True:
        rounds += 1
        stopped = await one_round(chat, step, scope, rounds)
        if stopped is not None:
            return output(chat, chat.conversation[-1]["content"], rounds, terminated=stopped), None


async def chat_round(
    run: RunContext, frame: Frame, step: GroupChatStep, scope: dict[str, Any], state: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One round of a group chat from `state` (plain data; ``{}`` before the first): the new state,
    and the step's output once the chat has ended. The native step loops over it; a compiled
    LangGraph graph runs it as a node that loops on itself (backends/langgraph_patterns.py)."""
    chat = new_chat(run, frame, step, scope)
    chat.conversation = [dict(m) for m in state.get("conversation", [])]
    chat.cursors = dict(state.get("cursors", {}))
    chat.usage = {k: dict(v) for k, v in state.get("usage", {}).items()}
    rounds = int(state.get("rounds", 0)) + 1
    stopped = await one_round(chat, step, scope, rounds)
    new = {"conversation": chat.conversation, "cursors": chat.cursors, "usage": chat.usage, "rounds": rounds}
    if stopped is None:
        return new, None
    return new, output(chat, chat.conversation[-1]["content"], rounds, terminated=stopped)


async def one_round(chat: Chat, step: GroupChatStep, scope: dict[str, Any], rounds: int) -> str | None:
    """Round `rounds`: select, speak; why the chat ends after it (None: it goes on)."""
    term = step.termination
    speaker, why = await select(chat, step, step.participants, rounds)
    content = await turn(chat, speaker, chat.transcript(), (rounds, ROLE_SPEAK), why=why)
    chat.conversation.append({"agent": chat.agent(speaker).name, "content": content})
    if term.phrase and term.phrase in content:
        return "phrase"
    if term.condition is not None and ended(chat, term.condition, scope, rounds):
        return "condition"
    if rounds >= term.maxRounds:
        return "maxRounds"
    return None


async def select(chat: Chat, step: GroupChatStep, names: list[str], rounds: int) -> tuple[str, str]:
    """The next speaker and why it was chosen."""
    rule = step.selection
    if rule == "roundRobin":
        return names[(rounds - 1) % len(names)], "roundRobin"
    if "function" in rule:
        fn = resolve_function(rule["function"])
        state = {
            "round": rounds,
            "participants": [chat.agent(n).name for n in names],
            "conversation": [dict(m) for m in chat.conversation],
            "task": chat.task,
        }
        answer = fn(state)
        if inspect.isawaitable(answer):
            answer = await answer
        return named(chat, names, answer, f"function {rule['function']}"), f"function {rule['function']}"
    manager = rule["manager"]
    roster = ", ".join(chat.agent(n).name for n in names)
    prompt = f"{chat.transcript()}\n\nParticipants: {roster}.\nWho should speak next? Answer with one name only."
    answer = await turn(chat, manager, prompt, (rounds, ROLE_SELECT), why="selects the next speaker", role="manager")
    return named(chat, names, answer, f"manager {manager}"), f"manager {chat.agent(manager).name}: {answer.strip()}"


def named(chat: Chat, names: list[str], answer: Any, who: str) -> str:
    """The participant an answer names (as the step writes it or by the agent's name)."""
    said = text(answer).strip().strip(".").strip()
    for n in names:
        if said in (n, chat.agent(n).name) or said.lower() == chat.agent(n).name.lower():
            return n
    mentioned = [n for n in names if chat.agent(n).name.lower() in said.lower()]
    if len(mentioned) == 1:
        return mentioned[0]
    raise StepFailed(
        StepError(
            "VALIDATION",
            f"{who} chose '{said[:80]}', which is not one participant of step '{chat.step.id}'",
            {"choice": said[:200], "participants": [chat.agent(n).name for n in names]},
        )
    )


def ended(chat: Chat, condition: str | bool, scope: dict[str, Any], rounds: int) -> bool:
    """The termination condition; ``item`` is the last message (``agent``, ``content``), ``index``
    the round (from 0), as in a loop."""
    if isinstance(condition, bool):
        return condition
    extra = {**scope, "item": chat.conversation[-1] if chat.conversation else None, "index": rounds - 1}
    try:
        return truthy(render(condition, extra))
    except TemplateError as exc:
        raise StepFailed(StepError("VALIDATION", f"termination condition of '{chat.step.id}': {exc}")) from exc


async def sequential(
    run: RunContext, frame: Frame, step: SequentialStep, scope: dict[str, Any], acc: Accounting
) -> tuple[Any, None]:
    """Participants in order, each seeing the conversation so far."""
    chat = new_chat(run, frame, step, scope)
    for i, name in enumerate(step.participants, start=1):
        content = await turn(chat, name, chat.transcript(), (i, ROLE_SPEAK), why="sequential order")
        chat.conversation.append({"agent": chat.agent(name).name, "content": content})
    final = chat.conversation[-1]["content"] if chat.conversation else ""
    return output(chat, final, len(step.participants)), None


async def concurrent(
    run: RunContext, frame: Frame, step: ConcurrentStep, scope: dict[str, Any], acc: Accounting
) -> tuple[Any, None]:
    """Every participant on the same input at once; answers gathered (optionally aggregated)."""
    chat = new_chat(run, frame, step, scope)
    prompt = chat.transcript()
    answers = await asyncio.gather(
        *(turn(chat, name, prompt, (1, i), why="concurrent") for i, name in enumerate(step.participants, start=1))
    )
    chat.conversation.extend(
        {"agent": chat.agent(name).name, "content": content}
        for name, content in zip(step.participants, answers, strict=True)
    )
    gathered = {m["agent"]: m["content"] for m in chat.conversation}
    agg = step.aggregator
    if agg is None:
        final = "\n\n".join(f"{m['agent']}: {m['content']}" for m in chat.conversation)
    elif isinstance(agg, dict) and "template" in agg:
        try:
            final = text(render_string(agg["template"], {**scope, "item": gathered, "index": 0}))
        except TemplateError as exc:
            raise StepFailed(StepError("VALIDATION", f"aggregator template of '{step.id}': {exc}")) from exc
    else:
        name = agg if isinstance(agg, str) else agg["agent"]
        final = await turn(
            chat, name, chat.transcript("Answers"), (2, ROLE_FINAL), why="aggregates the answers", role="aggregator"
        )
    return output(chat, final, 1, answers=gathered), None
