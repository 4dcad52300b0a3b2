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


def earlier() -> list[dict[str, Any]]:
    """The session's messages (``role`` user or assistant, ``content``), oldest first."""
    return [dict(m) for m in _HISTORY.get()]


@contextlib.contextmanager
def using(messages: list[dict[str, Any]]) -> Iterator[None]:
    token = _HISTORY.set(tuple(messages))
    try:
        yield
    finally:
        _HISTORY.reset(token)
