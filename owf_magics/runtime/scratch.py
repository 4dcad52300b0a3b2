"""A run's own scratch directory: a temporary directory made on first use, removed when the run ends.

Handlers reach it as ``context.metadata["scratch"]`` (a path-like `Scratch`: ``Path(scratch)``,
``os.path.join(scratch, name)`` and ``open`` take it; the directory is made the first time it is
used as a path). The executor removes it when the run completes, fails, is canceled or stops to
wait (an approval, an event); a resumed run makes a fresh one on first use. If a run's process
ends first (or a compiled LangGraph graph's run is dropped), a finalizer removes it too, so
nothing is left in the system temp directory.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class Scratch(os.PathLike[str]):
    """One run's scratch directory, made lazily under the system temp directory."""

    __slots__ = ("_finalizer", "_path", "run_id")

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._path: Path | None = None
        self._finalizer: Any = None

    @property
    def path(self) -> Path:
        """The directory, made now if it does not exist yet (``owf-run-<run id>-XXXX``)."""
        if self._path is None or not self._path.is_dir():
            prefix = f"owf-run-{_UNSAFE.sub('_', self.run_id)[:64]}-"
            self._path = Path(tempfile.mkdtemp(prefix=prefix))
            self._finalizer = weakref.finalize(self, shutil.rmtree, str(self._path), True)
        return self._path

    @property
    def exists(self) -> bool:
        return self._path is not None and self._path.is_dir()

    def __fspath__(self) -> str:
        return str(self.path)

    def __truediv__(self, other: str | os.PathLike[str]) -> Path:
        return self.path / other

    def __repr__(self) -> str:
        return f"Scratch({str(self._path) if self._path else '<not made yet>'})"

    def cleanup(self) -> None:
        """Remove the directory and everything in it (nothing when it was never made)."""
        if self._finalizer is not None:
            self._finalizer()  # rmtree, once
            self._finalizer = None
        self._path = None


def scratch(run: Any) -> Scratch:
    """The run's `Scratch` (a `RunContext`'s, made on first call)."""
    current = run.scratch
    if current is None:
        current = run.scratch = Scratch(str(run.run_id))
    return current  # type: ignore[no-any-return]


def cleanup(run: Any) -> None:
    """Remove the run's scratch directory, if it made one."""
    current = getattr(run, "scratch", None)
    if current is not None:
        current.cleanup()
