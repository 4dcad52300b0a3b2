"""Handlers for batch runs (imported by Dask workers too, by module path)."""

from __future__ import annotations

import asyncio
import os


async def nap(n: int, seconds: float = 0.0) -> dict[str, int]:
    """An I/O-bound step: waits, then answers with the input and the worker's pid."""
    if seconds:
        await asyncio.sleep(seconds)
    return {"n": n, "square": n * n, "pid": os.getpid()}


def refuse(n: int) -> dict[str, int]:
    """Fails for multiples of 7."""
    if n % 7 == 0:
        raise ValueError(f"{n} is a multiple of 7")
    return {"n": n}
