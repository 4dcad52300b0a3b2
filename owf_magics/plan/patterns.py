"""Load-time checks of the pattern steps (``groupChat``, ``magentic``, ``sequential``,
``concurrent``; docs/patterns.md): every participant, manager and aggregator is a loaded agent,
a selection function names ``module.attr``, and a manager is no participant of its own chat."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from owf_magics.manifest.models import ConcurrentStep, GroupChatStep, MagenticStep, StepBase
from owf_magics.plan.diagnostics import Path, Reporter

__all__ = ["ROUND_FIELDS", "check_pattern", "is_workflow_entry", "members_of"]


def is_workflow_entry(entry: Any) -> bool:
    """A ``workflow:NAME`` toolset entry (a workflow as an agent's tool)."""
    return isinstance(entry, str) and entry.strip().startswith("workflow:")


#: The fields whose templates see a round: ``item`` (the last message, or the answers by agent
#: in an aggregator) and ``index`` (the round, from 0).
ROUND_FIELDS = frozenset({"termination", "aggregator"})


def check_pattern(resolve: Callable[[str, Path, Reporter], Any], step: StepBase, path: Path, report: Reporter) -> None:
    """Report what is wrong with a pattern step's references (`resolve` reports unknown agents)."""
    sid = step.id
    for j, name in enumerate(getattr(step, "participants", [])):
        resolve(name, path + ("participants", j), report)
    participants = list(getattr(step, "participants", []))
    if len(set(participants)) != len(participants):
        report("INVALID_VALUE", "a participant is listed twice", path + ("participants",), step_id=sid)
    if isinstance(step, GroupChatStep) and isinstance(step.selection, dict):
        if len(step.selection) != 1:
            report(
                "INVALID_VALUE",
                "selection takes one of 'manager' or 'function'",
                path + ("selection",),
                step_id=sid,
                hint="write selection: roundRobin, {manager: AGENT} or {function: module.attr}",
            )
        if "manager" in step.selection:
            resolve(step.selection["manager"], path + ("selection", "manager"), report)
        fn = step.selection.get("function")
        if fn is not None and "." not in fn and ":" not in fn:
            report(
                "INVALID_VALUE",
                f"selection function '{fn}' is not 'module.attr'",
                path + ("selection", "function"),
                step_id=sid,
                hint="name an importable callable, e.g. mypkg.chat.next_speaker",
            )
    if isinstance(step, MagenticStep):
        resolve(step.manager, path + ("manager",), report)
        if step.manager in participants:
            report(
                "INVALID_VALUE",
                f"manager '{step.manager}' is also a participant",
                path + ("manager",),
                step_id=sid,
                hint="the manager plans and delegates; list the agents that do the work as participants",
            )
    if isinstance(step, ConcurrentStep) and step.aggregator is not None:
        agg = step.aggregator
        if isinstance(agg, str) or "agent" in agg:
            name = agg if isinstance(agg, str) else agg["agent"]
            resolve(name, path + ("aggregator",), report)


def members_of(raw: Any) -> tuple[str, ...]:
    """A pattern step's agents as the graph views label them: the manager first, then the
    participants, then an aggregator agent (an empty tuple for other steps)."""
    participants = raw.get("participants") if isinstance(raw, dict) else None
    if not isinstance(participants, list):
        return ()
    out = []
    selection = raw.get("selection")
    manager = raw.get("manager") or (selection.get("manager") if isinstance(selection, dict) else None)
    if isinstance(manager, str):
        out.append(f"{manager} (manager)")
    out += [p for p in participants if isinstance(p, str)]
    agg = raw.get("aggregator")
    agg = agg.get("agent") if isinstance(agg, dict) else agg
    if isinstance(agg, str):
        out.append(f"{agg} (aggregator)")
    return tuple(out)
