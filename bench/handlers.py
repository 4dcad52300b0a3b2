"""Handlers the executor benchmarks call: a no-op and a 50 ms nap."""

from __future__ import annotations

import asyncio
import time

from owf_magics import inline


@inline
def noop() -> None:
    """Does nothing, on the event loop: what is left is the engine's own cost."""


async def nap() -> None:
    await asyncio.sleep(0.05)


def snooze() -> None:
    """Blocks for 50 ms (a sync handler doing I/O): runs in the thread pool."""
    time.sleep(0.05)
