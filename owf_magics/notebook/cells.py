"""Which cell is running: its front end's cell id and its execution count.

IPython hands every ``run_cell`` an `ExecutionInfo` (with the cell id JupyterLab, Notebook 7 and
VS Code send) in its ``pre_run_cell`` event; `CellTracker` keeps it for the magics while the cell
runs, so a re-run of an edited cell replaces what it defined before, and its manifests' source
reads ``<cell N>`` with the execution count.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell


class CellTracker:
    """The running cell's id (None when the front end sends none: the terminal, nbclient)."""

    def __init__(self, shell: InteractiveShell) -> None:
        self.shell = shell
        self.cell_id: str | None = None
        self.count: int | None = None

    def pre_run_cell(self, info: Any) -> None:
        self.cell_id = getattr(info, "cell_id", None) or None
        count = getattr(self.shell, "execution_count", None)
        # IPython 9 counts the cell before this event (IPython 8 after the cell ran)
        if count is not None and _COUNTS_FIRST and getattr(info, "store_history", False):
            count -= 1
        self.count = count

    def post_run_cell(self, result: Any) -> None:
        self.cell_id, self.count = None, None

    def install(self) -> None:
        self.shell.events.register("pre_run_cell", self.pre_run_cell)
        self.shell.events.register("post_run_cell", self.post_run_cell)

    def uninstall(self) -> None:
        for name, fn in (("pre_run_cell", self.pre_run_cell), ("post_run_cell", self.post_run_cell)):
            if fn in self.shell.events.callbacks.get(name, []):
                self.shell.events.unregister(name, fn)

    def source_name(self) -> str:
        """``<cell N>``: the name diagnostics and sources give a cell's manifests (N: the count
        the front end shows as ``In [N]``)."""
        count = self.count if self.count is not None else getattr(self.shell, "execution_count", None)
        return f"<cell {count}>" if count is not None else "<cell>"


def _counts_first() -> bool:
    import IPython

    return int(IPython.__version__.split(".")[0]) >= 9


_COUNTS_FIRST = _counts_first()
