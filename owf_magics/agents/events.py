"""Agent lifecycle events: one seam every agent runner (native loop, adapters) emits through.

`emit(kind, **fields)` sends one event to whatever the running step bound with `bind` (the
engine binds the step's run and sort key, so an event lands between the step's started and
completed events, in the run's events, its store and its callback). Outside a bound step it
does nothing, so an adapter can call it unconditionally. `listen` adds an in-process observer
(OpenTelemetry spans) that sees every agent event of the steps it runs under.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable, Iterator
from typing import Any

TURN_STARTED = "agent.turn.started"
TURN_COMPLETED = "agent.turn.completed"
MESSAGE_DELTA = "agent.message.delta"
TOOL_CALLED = "agent.tool.called"
TOOL_COMPLETED = "agent.tool.completed"
HANDOFF = "agent.handoff"
GUARDRAIL_TRIPPED = "agent.guardrail.tripped"
KINDS = (TURN_STARTED, TURN_COMPLETED, MESSAGE_DELTA, TOOL_CALLED, TOOL_COMPLETED, HANDOFF, GUARDRAIL_TRIPPED)

Sink = Callable[[str, dict[str, Any]], None]

_SINK: contextvars.ContextVar[Sink | None] = contextvars.ContextVar("owf_agent_sink", default=None)
_LISTENERS: contextvars.ContextVar[tuple[Sink, ...]] = contextvars.ContextVar("owf_agent_listeners", default=())


def emit(kind: str, **fields: Any) -> None:
    """One agent event of the step running now (``agent``, and the kind's own fields).

    Fields by kind: turn.started ``turn, model`` (and ``prompt``: the messages the turn adds, from
    the native loop); turn.completed ``turn, model, prompt_tokens, completion_tokens, total_tokens,
    estimated, cost_usd, completion`` (the reply's text); message.delta ``delta``;
    tool.called ``tool, arguments``; tool.completed ``tool, result``; handoff ``from, to``
    (pass them as ``**{"from": a, "to": b}``); guardrail.tripped ``guardrail, reason``.
    A sink or listener that raises never stops the agent.
    """
    sink = _SINK.get()
    listeners = _LISTENERS.get()
    if sink is None and not listeners:
        return
    fields.setdefault("timestamp_s", time.time())
    for listener in listeners:
        with contextlib.suppress(Exception):
            listener(kind, fields)
    if sink is not None:
        with contextlib.suppress(Exception):
            sink(kind, fields)


def active() -> bool:
    """Whether anyone receives agent events here (skip building costly fields when not)."""
    return _SINK.get() is not None or bool(_LISTENERS.get())


@contextlib.contextmanager
def bind(sink: Sink | None) -> Iterator[None]:
    """Route `emit` to `sink` for the code run inside (and the tasks it starts)."""
    token = _SINK.set(sink)
    try:
        yield
    finally:
        _SINK.reset(token)


@contextlib.contextmanager
def listen(listener: Sink) -> Iterator[None]:
    """Add an observer of every agent event emitted inside (nested observers all see them)."""
    token = _LISTENERS.set((*_LISTENERS.get(), listener))
    try:
        yield
    finally:
        _LISTENERS.reset(token)
