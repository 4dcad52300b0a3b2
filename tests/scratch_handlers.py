"""Handlers that use the run's scratch directory (tests/test_scratch.py)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any


def write(name: str, context: Any) -> dict[str, Any]:
    path = Path(context.metadata["scratch"]) / name
    path.write_text("scratch data")
    return {"path": str(path), "dir": os.fspath(context.metadata["scratch"])}


def read(path: str, context: Any) -> dict[str, Any]:
    """Whether an earlier step's scratch file is still there (in the same run)."""
    return {"there": Path(path).is_file(), "same_dir": Path(path).parent == Path(context.metadata["scratch"])}


def write_then_fail(name: str, context: Any) -> None:
    (Path(context.metadata["scratch"]) / name).write_text("half done")
    raise RuntimeError("failed after writing to scratch")


async def write_then_sleep(name: str, context: Any) -> None:
    (Path(context.metadata["scratch"]) / name).write_text("in flight")
    await asyncio.sleep(30)
