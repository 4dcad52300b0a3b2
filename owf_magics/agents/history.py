"""A session's earlier messages, handed to whichever agent runner runs the step (native, langchain).

`owf_magics.api.agent` reads a session's history from the run store and runs the agent inside
`using(messages)`; the runners call `earlier()` and put those messages before the new user message.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

_HISTORY: contextvars.ContextVar[tuple[dict[str, Any], ...]] = contextvars.ContextVar("owf_session_history", default=())
_SESSION: contextvars.ContextVar[str | None] = contextvars.ContextVar("owf_session_id", default=None)


def session_id() -> str | None:
    """The session (conversation) id of the agent running now, if it runs in one."""
    return _SESSION.get()


def earlier() -> list[dict[str, Any]]:
    """The session's messages (``role`` user or assistant, ``content``), oldest first."""
    return [dict(m) for m in _HISTORY.get()]


@contextlib.contextmanager
def using(messages: list[dict[str, Any]], session: str | None = None) -> Iterator[None]:
    token = _HISTORY.set(tuple(messages))
    named = _SESSION.set(session)
    try:
        yield
    finally:
        _SESSION.reset(named)
        _HISTORY.reset(token)
