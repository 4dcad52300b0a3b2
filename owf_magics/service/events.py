"""``GET /runs/{id}/events``: a run's events as server-sent events.

The stream replays the events stored after the client's last one (``Last-Event-ID``, or
``?after=``), then follows new ones as the store gets them, whichever worker runs the run. Each
event's SSE id is its sequence number in the store, so a client that reconnects with the last id
it saw misses nothing and gets nothing twice. The stream ends once the run has finished (completed,
failed or canceled) and its last events are sent; a waiting run is followed until it finishes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from owf_magics.service.errors import jsonable

FINISHED = ("completed", "failed", "canceled")
KEEPALIVE_SECONDS = 15.0


def frame(seq: int, kind: str, body: Any) -> str:
    """One SSE message: ``id``, ``event`` and one ``data`` line of JSON."""
    data = json.dumps(jsonable(body), separators=(",", ":"))
    return f"id: {seq}\nevent: {kind}\ndata: {data}\n\n"


async def stream(
    store: Any,
    run_id: str,
    after: int,
    *,
    status: Callable[[], str | None],
    stopping: Callable[[], bool],
    poll: float,
) -> AsyncIterator[str]:
    """The SSE text of a run's events after sequence number `after`.

    Args:
        store: The run store.
        run_id: The run.
        after: The last sequence number the client has (0: from the start).
        status: The run's status now (``queued`` before it has a record; None when it is gone).
        stopping: Whether the server is shutting down (the stream then ends; the client reconnects
            elsewhere with its ``Last-Event-ID``).
        poll: Seconds between store reads while nothing new is there.
    """
    last = after
    quiet_since = time.monotonic()
    yield "retry: 1000\n\n"
    while True:
        state = await asyncio.to_thread(status)  # before reading: a finished run has all its events
        events = await asyncio.to_thread(store.get_events, run_id, after=last)
        for event in events:
            yield frame(event.seq, event.type, event.event)
            last = event.seq
        if events:
            quiet_since = time.monotonic()
        if state is None or state in FINISHED:
            # one more read, for events written between the status and the read (a cancel's)
            await asyncio.sleep(poll)
            for event in await asyncio.to_thread(store.get_events, run_id, after=last):
                yield frame(event.seq, event.type, event.event)
            return
        if stopping():
            return
        if time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
            quiet_since = time.monotonic()
            yield ": keepalive\n\n"
        await asyncio.sleep(poll)
