"""Python builders for the orchestration patterns (docs/patterns.md).

Each returns a `WorkflowBuilder` of a one-step workflow (input ``task``; outputs ``conversation``,
``final``, ``rounds``, and for `magentic` ``task_ledger`` and ``progress_ledger``): build it with
``.build()``, or add it to a larger workflow with ``b.add_workflow(...)``.

Example:
    >>> from owf_magics import patterns                                        # doctest: +SKIP
    >>> chat = patterns.group_chat(ow, ["pro", "con"], max_rounds=4, phrase="DONE").build()  # doctest: +SKIP
    >>> chat.execute(inputs={"task": "tabs or spaces?"}).outputs["final"]       # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from owf_magics.api.builder import WorkflowBuilder

__all__ = ["concurrent", "group_chat", "magentic", "sequential"]

_OUTPUTS = {
    "conversation": ("array", "conversation"),
    "final": ("string", "final"),
    "rounds": ("integer", "rounds"),
}


def _workflow(ow: Any, name: str, step: dict[str, Any], extra: Sequence[str] = ()) -> WorkflowBuilder:
    b: WorkflowBuilder = ow.builder(name)
    b.inputs({"task": {"type": "string", "required": True, "description": "what the agents work on"}})
    step = {**step, "input": {"task": "{{ inputs.task }}"}}
    b.add_step(step)
    outputs = {
        k: {"value": f"{{{{ steps.{step['id']}.output.{field} }}}}", "type": t} for k, (t, field) in _OUTPUTS.items()
    }
    for key in extra:
        outputs[key] = {"value": f"{{{{ steps.{step['id']}.output.{key} }}}}"}
    b.outputs(outputs)
    return b


def group_chat(
    ow: Any,
    participants: Sequence[str],
    *,
    name: str = "group-chat",
    manager: str | None = None,
    function: str | None = None,
    max_rounds: int = 10,
    phrase: str | None = None,
    condition: str | None = None,
) -> WorkflowBuilder:
    """Participants take turns: round robin, or chosen by a `manager` agent or a `function`
    (``module.attr``, called with ``{round, participants, conversation, task}``, returning a name);
    the chat ends after `max_rounds`, when a message contains `phrase`, or when `condition` (a
    template reading ``item``, the last message) is true."""
    selection: Any = "roundRobin"
    if manager is not None and function is not None:
        raise ValueError("group_chat takes a manager or a function, not both")
    if manager is not None:
        selection = {"manager": manager}
    elif function is not None:
        selection = {"function": function}
    termination: dict[str, Any] = {"maxRounds": max_rounds}
    if phrase is not None:
        termination["phrase"] = phrase
    if condition is not None:
        termination["condition"] = condition
    step = {
        "id": "chat",
        "type": "groupChat",
        "participants": list(participants),
        "selection": selection,
        "termination": termination,
    }
    return _workflow(ow, name, step, ("terminated",))


def magentic(
    ow: Any,
    manager: str,
    participants: Sequence[str],
    *,
    name: str = "magentic",
    max_rounds: int = 10,
    max_stalls: int = 2,
) -> WorkflowBuilder:
    """A manager plans (the task ledger), then each round names the next speaker and its
    instruction (the progress ledger), re-plans after `max_stalls` rounds without progress, and
    writes the final answer when the request is satisfied or after `max_rounds`."""
    step = {
        "id": "team",
        "type": "magentic",
        "manager": manager,
        "participants": list(participants),
        "maxRounds": max_rounds,
        "maxStalls": max_stalls,
    }
    return _workflow(ow, name, step, ("task_ledger", "progress_ledger"))


def sequential(ow: Any, participants: Sequence[str], *, name: str = "sequential") -> WorkflowBuilder:
    """Participants in order, each seeing the conversation so far; the last one's answer is final."""
    return _workflow(ow, name, {"id": "seq", "type": "sequential", "participants": list(participants)})


def concurrent(
    ow: Any,
    participants: Sequence[str],
    *,
    name: str = "concurrent",
    aggregator: str | None = None,
    template: str | None = None,
) -> WorkflowBuilder:
    """Every participant on the same task at once; the final answer is the `aggregator` agent's,
    the `template`'s (``item`` holds the answers by agent name), or the answers one after another."""
    step: dict[str, Any] = {"id": "par", "type": "concurrent", "participants": list(participants)}
    if aggregator is not None and template is not None:
        raise ValueError("concurrent takes an aggregator agent or a template, not both")
    if aggregator is not None:
        step["aggregator"] = aggregator
    elif template is not None:
        step["aggregator"] = {"template": template}
    return _workflow(ow, name, step, ("answers",))
