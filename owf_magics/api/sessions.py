"""``ow.sessions()`` and ``ow.prune_sessions(...)``: the conversation sessions a registry keeps.

Sessions live in the run store (`runs/sessions.py`: workflow-runner requests, ``%%agent
--session``, OpenFlow memory with ``session_id``) or, without one, in the registry's memory.
`SessionMethods` is mixed into `OpenWorkflow`, so its module stays small.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from owf_magics.errors import OWFError
from owf_magics.manifest.normalize import parse_duration

if TYPE_CHECKING:
    import pandas as pd

#: ``ow.sessions()`` columns (runs.sessions.SESSION_COLUMNS, kept here so pandas is the only import).
COLUMNS = ("session_id", "messages", "agents", "first_at", "last_at", "last_run_id")


def session_keeper(ow: Any) -> Any:
    """The object that keeps `ow`'s sessions (its run store, or memory), refusing one that cannot list."""
    from owf_magics.api.agent import sessions_of

    keeper = sessions_of(ow)
    if not hasattr(keeper, "list_sessions"):
        raise OWFError(
            f"this run store ({type(keeper).__name__}) cannot list or prune sessions",
            code="UNAVAILABLE",
            details={"suggestion": "use the SQLite run store (OpenWorkflow(state='runs.db'))"},
        )
    return keeper


def seconds(max_age: Any) -> float | None:
    """`max_age` as seconds: a number, a duration (``"30d"``, ``"12h"``) or a `timedelta`."""
    if max_age is None:
        return None
    if hasattr(max_age, "total_seconds"):
        max_age = max_age.total_seconds()
    parsed = parse_duration(max_age)
    if parsed is None:
        raise OWFError(
            f"max_age {max_age!r} is not a duration",
            code="VALIDATION",
            details={"suggestion": "seconds, a timedelta, or a number with ms, s, m, h, d or w: '30d'"},
        )
    return parsed


class SessionMethods:
    """The session methods of `OpenWorkflow`."""

    def sessions(self) -> pd.DataFrame:
        """The kept sessions, the most recently used first: ``session_id, messages, agents,
        first_at, last_at`` (UTC timestamps) and ``last_run_id``."""
        import pandas as pd

        rows = session_keeper(self).list_sessions()
        for row in rows:
            for key in ("first_at", "last_at"):
                row[key] = datetime.fromtimestamp(row[key], UTC) if row[key] is not None else None
        return pd.DataFrame(rows, columns=list(COLUMNS))

    def prune_sessions(
        self, *, max_items: int | None = None, max_age: Any = None, session_id: str | None = None
    ) -> int:
        """Drop messages older than `max_age` (seconds, ``"30d"``, a timedelta), then all but each
        session's newest `max_items` (only `session_id`'s when given); a session left with no
        message is gone. Returns how many messages were removed."""
        if max_items is None and max_age is None:
            raise OWFError(
                "prune_sessions needs max_items or max_age",
                code="VALIDATION",
                details={"suggestion": "ow.prune_sessions(max_items=100, max_age='30d')"},
            )
        keeper = session_keeper(self)
        return int(keeper.prune_sessions(max_items=max_items, max_age=seconds(max_age), session_id=session_id))
