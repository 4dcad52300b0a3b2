"""Errors that fail a notebook cell and read well: short tracebacks through ``_render_traceback_``.

IPython shows what ``_render_traceback_`` returns instead of the Python traceback, and the kernel
still reports an error, so nbclient and nbval fail the cell. Each rendering names the code, the
file line, the step, a few numbered lines of the YAML with a caret, and the fix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from owf_magics.errors import Diagnostic, ManifestError, OWFError

if TYPE_CHECKING:
    from owf_magics.api import Workflow
    from owf_magics.runtime.results import RunResult

#: Diagnostics shown in full before the rest are counted.
MAX_SHOWN = 5
CONTEXT_LINES = 2

SourceLookup = Callable[[str], str | None]


def read_source(sources: Mapping[str, str]) -> SourceLookup:
    """A lookup of a diagnostic's file: a cell's text by its name, else the file on disk."""

    def lookup(name: str) -> str | None:
        if name in sources:
            return sources[name]
        path = Path(name)
        try:
            return path.read_text(encoding="utf-8") if path.is_file() else None
        except OSError:
            return None

    return lookup


def snippet(text: str | None, line: int | None, column: int | None = None) -> list[str]:
    """A few numbered lines around `line` (1-based), the line marked ``>`` and a caret under `column`."""
    if text is None or line is None:
        return []
    lines = text.splitlines()
    if not 1 <= line <= len(lines):
        return []
    first = max(1, line - CONTEXT_LINES)
    last = min(len(lines), line + 1)
    width = len(str(last))
    out = []
    for n in range(first, last + 1):
        mark = ">" if n == line else " "
        out.append(f"  {mark} {str(n).rjust(width)} | {lines[n - 1]}")
        if n == line and column:
            out.append(f"    {' ' * width} | {' ' * (column - 1)}^")
    return out


def diagnostic_lines(d: Diagnostic, lookup: SourceLookup) -> list[str]:
    """The rendering of one diagnostic."""
    where = d.location
    if d.step_id:
        where += f", step '{d.step_id}'"
    out = [f"{d.code} at {where}", f"  {d.message}"]
    if d.path:
        out.append(f"  at {d.path}")
    out += snippet(lookup(d.file) if d.file else None, d.line, d.column)
    if d.hint:
        out.append(f"  fix: {d.hint}")
    return out


def short(exc: OWFError) -> OWFError:
    """The same exception, made to render short in a notebook (its type is kept for ``except``)."""

    def render() -> list[str]:
        out = [f"{type(exc).__name__}: {exc.code}", f"  {exc.message}"]
        step = exc.details.get("step_id")
        if step:
            out.append(f"  step: {step}")
        fix = exc.details.get("suggestion") or exc.details.get("hint")
        if fix:
            out.append(f"  fix: {fix}")
        return out

    exc._render_traceback_ = render  # type: ignore[attr-defined]
    return exc


class CellManifestError(ManifestError):
    """A `ManifestError` raised by a cell: the same diagnostics, rendered short in the notebook."""

    def __init__(self, original: ManifestError, lookup: SourceLookup) -> None:
        super().__init__(original.diagnostics, original.warnings)
        self._lookup = lookup

    def render(self) -> list[str]:
        n = len(self.diagnostics)
        head = f"ManifestError: {n} problem{'s' if n != 1 else ''} found"
        out = [head]
        for d in self.diagnostics[:MAX_SHOWN]:
            out += ["", *diagnostic_lines(d, self._lookup)]
        if n > MAX_SHOWN:
            out += ["", f"… and {n - MAX_SHOWN} more (the exception's .diagnostics lists every one)"]
        return out

    def _render_traceback_(self) -> list[str]:
        return self.render()


def _step_line(wf: Workflow, step_id: str) -> tuple[str, int | None, int | None]:
    from owf_magics.manifest.loader import position_of

    item = wf.item
    node = wf.graph.nodes.get(step_id) if wf.graph is not None else None
    if node is None:
        return item.file, None, None
    pos = position_of(item.raw.data, node.path)
    return item.file, (pos[0] if pos else None), (pos[1] if pos else None)


class WorkflowRunError(OWFError):
    """A run that did not complete, raised by a ``--run`` cell after its result is shown.

    Attributes:
        result: The `RunResult` (also bound by ``-o VAR``).
        step_id: The failed step, when one failed.
    """

    def __init__(self, result: RunResult, wf: Workflow | None, lookup: SourceLookup, var: str | None = None) -> None:
        failed = next((s for s in result.steps.values() if s.status == "failed" and s.error), None)
        error = failed.error if failed is not None else result.error
        code = error.code if error is not None else "INTERNAL_ERROR"
        message = error.message if error is not None else f"the run ended {result.status}"
        self.result = result
        self.step_id = failed.step_id if failed is not None else None
        super().__init__(
            f"run of '{result.workflow}' {result.status}: {message}",
            code=code,
            details={"run_id": result.run_id, "step_id": self.step_id, "status": result.status},
        )
        self._wf = wf
        self._lookup = lookup
        self._var = var

    def _render_traceback_(self) -> list[str]:
        where = ""
        lines: list[str] = []
        if self.step_id and self._wf is not None:
            file, line, column = _step_line(self._wf, self.step_id)
            where = f" at {file}{f':{line}' if line else ''}, step '{self.step_id}'"
            lines = snippet(self._lookup(file), line, column)
        name = self._var or "_owf_last"
        out = [f"WorkflowRunError: {self.code}{where}", f"  run of '{self.result.workflow}' {self.result.status}"]
        message = self.message.split(": ", 1)[-1]
        out.append(f"  {message}")
        out += lines
        fix = self.details_fix()
        if fix:
            out.append(f"  fix: {fix}")
        failed = self.result.steps.get(self.step_id) if self.step_id else None
        trace = failed.error.details.get("traceback") if failed is not None and failed.error else None
        if isinstance(trace, str) and trace:  # where in the user's code: its innermost frame
            frames = [ln for ln in trace.splitlines() if ln.startswith("  File ")]
            if frames:
                out.append(f"  raised at: {frames[-1].strip()}")
                out.append(f"  traceback: {name}.steps['{self.step_id}'].error.details['traceback']")
        out.append(
            f"  see: {name}.steps['{self.step_id}'].error, {name}.trace"
            if self.step_id
            else f"  see: {name}.trace, {name}.events"
        )
        return out

    def details_fix(self) -> str | None:
        failed = self.result.steps.get(self.step_id) if self.step_id else None
        details: dict[str, Any] = failed.error.details if failed is not None and failed.error else {}
        fix = details.get("suggestion") or details.get("hint")
        return str(fix) if fix else None
