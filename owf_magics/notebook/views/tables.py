"""Tables: the backend-resolution table, and truncated DataFrames with a footer saying how to see all.

Tables render to HTML and plain text from plain rows; pandas is imported only for frames.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from owf_magics.notebook.views.graph import STATUS_COLOURS, backend_colours
from owf_magics.notebook.views.settings import MASK, SETTINGS

if TYPE_CHECKING:
    import pandas as pd

    from owf_magics.plan.resolution import Plan

RESOLUTION_COLUMNS = ("step", "type", "agent / connector", "requested", "resolved", "source", "runtime", "adapter")
#: Columns whose values change from run to run (hidden in deterministic mode).
WALL_CLOCK_COLUMNS = frozenset({"run_id", "started_at", "finished_at", "duration_ms", "timestamp", "event_id"})


def resolution_rows(plan: Plan) -> list[dict[str, str]]:
    """One row per step: what it uses, the backend asked for, the one chosen, and why."""
    rows = []
    for sid in plan.order:
        e = plan.entries[sid]
        target = e.agent or (f"{e.connector} · {e.action}" if e.connector else None) or e.workflow or ""
        resolved = e.backend if e.available else f"{e.backend} (missing: {', '.join(e.missing) or e.backend})"
        rows.append(
            {
                "step": sid,
                "type": e.type,
                "agent / connector": target,
                "requested": e.requested or "",
                "resolved": resolved,
                "source": e.reason,
                "runtime": e.runtime or "",
                "adapter": e.adapter_version,
            }
        )
    return rows


def text_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Rows as aligned plain-text columns."""
    cells = [list(columns)] + [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells) + "\n"


def html_table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    *,
    css_class: str,
    caption: str | None = None,
    footer: str | None = None,
    row_style: Any = None,
) -> str:
    """Rows as an HTML table (every value escaped), in a box as wide as the page that scrolls
    sideways when the table is wider (inline-size containment: a wide table never widens the page)."""
    out = ['<div class="owf-table-box" style="overflow-x:auto;contain:inline-size">', f'<table class="{css_class}">']
    if caption:
        out.append(f"<caption>{html.escape(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr></thead><tbody>")
    for r in rows:
        style = row_style(r) if row_style else ""
        attr = f' style="{style}"' if style else ""
        out.append(f"<tr{attr}>" + "".join(f"<td>{html.escape(_cell(r.get(c)))}</td>" for c in columns) + "</tr>")
    out.append("</tbody></table></div>")
    if footer:
        out.append(f'<p class="owf-footer"><small>{html.escape(footer)}</small></p>')
    return "".join(out)


def _cell(value: Any, max_chars: int | None = None) -> str:
    limit = max_chars or SETTINGS.max_chars
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def resolution_text(plan: Plan) -> str:
    """The resolution table as plain text."""
    return text_table(resolution_rows(plan), RESOLUTION_COLUMNS)


def resolution_html(plan: Plan) -> str:
    """The resolution table as HTML; each resolved cell carries its backend's colour."""

    def style(row: dict[str, Any]) -> str:
        fill, _ = backend_colours(plan.entries[row["step"]].backend)
        return f"background:{fill}"

    return html_table(
        resolution_rows(plan),
        RESOLUTION_COLUMNS,
        css_class="owf-resolution",
        caption=f"Backend resolution: {plan.workflow} v{plan.version}",
        row_style=style,
    )


# -- DataFrames ---------------------------------------------------------------------------------

#: What the footer calls a frame whose variable is not found in the namespace.
NEUTRAL_NAME = "the frame"


def mask_frame(df: pd.DataFrame, deterministic: bool | None = None) -> pd.DataFrame:
    """A copy with wall-clock columns and run ids masked (in deterministic mode)."""
    det = SETTINGS.deterministic if deterministic is None else deterministic
    if not det:
        return df
    out = df.copy()
    for col in out.columns:
        if col in WALL_CLOCK_COLUMNS:
            out[col] = MASK
    return out


def footer_text(name: str | None, total: int, head: int, tail: int = 0) -> str:
    """The table's footer: how many rows, which are shown, how to see them all."""
    rows = f"{total} row{'s' if total != 1 else ''}"
    if head + tail >= total:
        return rows
    how = f"print({name}.to_string())" if name else "print(frame.to_string())"
    return f"{rows}, showing the first {head} and the last {tail}; every row: {how}"


def _one_run(df: pd.DataFrame) -> str | None:
    """The run id of a frame whose rows all belong to one run (shown once, not per row)."""
    if "run_id" not in df.columns or not len(df):
        return None
    ids = df["run_id"].dropna().unique()
    return str(ids[0]) if len(ids) == 1 and df["run_id"].notna().all() else None


def frame_bundle(df: pd.DataFrame, name: str | None, *, max_rows: int | None = None) -> dict[str, str]:
    """text/plain and text/html of a frame: head and tail, the run id once, masked when
    deterministic, and a footer with the total and the variable to print it all from."""
    import pandas as pd

    limit = SETTINGS.max_rows if max_rows is None else max_rows
    run_id = _one_run(df)
    body = df.drop(columns=["run_id"]) if run_id is not None else df
    total = len(body)
    if limit and total > limit:
        head, tail = (limit + 1) // 2, limit // 2
        parts = [body.head(head), body.tail(tail)]
    else:
        head, tail = total, 0
        parts = [body]
    parts = [mask_frame(p) for p in parts]
    footer = footer_text(name, total, head, tail)
    caption = f"run {MASK if SETTINGS.deterministic else run_id}" if run_id is not None else None
    columns = [str(c) for c in body.columns]
    status_col = "status" if "status" in columns else None

    def style(row: dict[str, Any]) -> str:
        colour = STATUS_COLOURS.get(str(row.get(status_col))) if status_col else None
        return f"border-left:4px solid {colour}" if colour else ""

    def records(part: pd.DataFrame) -> list[dict[str, Any]]:
        return [{str(k): _null(v) for k, v in r.items()} for r in part.to_dict(orient="records")]

    gap = dict.fromkeys(columns, "…")
    rows = records(parts[0]) + ([gap, *records(parts[1])] if len(parts) > 1 else [])
    if not total:
        plain = "(no rows)"
    elif len(parts) > 1:
        shown = pd.concat([parts[0], pd.DataFrame([gap], columns=body.columns), parts[1]])
        plain = shown.to_string(index=False)
    else:
        plain = parts[0].to_string(index=False)
    head_line = f"{caption}\n" if caption else ""
    return {
        "text/plain": f"{head_line}{plain}\n[{footer}]",
        # a wide trace scrolls inside its box instead of running off the page
        "text/html": '<div class="owf-frame-box" style="max-width:100%;overflow-x:auto">'
        + html_table(rows, columns, css_class="owf-frame", caption=caption, footer=footer, row_style=style)
        + "</div>",
    }


def _null(value: Any) -> Any:
    """A missing value as an empty cell (None, NaN)."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def frame_name(df: Any, shell: Any = None) -> str | None:
    """The name the user reaches `df` by: a variable holding it, or ``VAR.trace`` / ``VAR.usage``
    of a run in the namespace; None when neither (the footer then uses a neutral wording)."""
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:  # pragma: no cover - the notebook layer runs under IPython
            return None
        shell = get_ipython()
    ns = getattr(shell, "user_ns", None)
    if not isinstance(ns, dict):
        return None
    found: list[str] = []
    for key, value in list(ns.items()):
        if value is df:
            found.append(key)
            continue
        frames = getattr(value, "__dict__", {}).get("_frames") if hasattr(value, "trace_rows") else None
        for kind, (_, _, frame) in (frames or {}).items():
            if frame is df:
                found.append(f"{key}.{kind}")
    # a name of the user's first (not IPython's _, _3, Out...), the shortest of those
    mine = [n for n in found if not n.startswith("_") and not n.startswith("Out")]
    picks = mine or [n for n in found if n.startswith("_owf_last")]
    return min(picks, key=len) if picks else None


def owf_frame_bundle(df: Any) -> dict[str, str] | None:
    """The display of one of the project's frames (``attrs["owf"]``); None for any other frame,
    which then displays as pandas draws it."""
    meta = getattr(df, "attrs", {}).get("owf")
    if not isinstance(meta, dict):
        return None
    return frame_bundle(df, frame_name(df))


def register_frames(shell: Any) -> None:
    """Display the project's DataFrames in `shell` through `owf_frame_bundle` (once per shell).

    Registered by the class's module and name when pandas is not imported yet (``%load_ext``
    stays cheap); pandas 3 names the class's module ``pandas``, pandas 2 ``pandas.core.frame``.
    """
    import sys

    if getattr(shell, "_owf_frames", False):
        return
    formatter = shell.display_formatter.mimebundle_formatter
    pandas = sys.modules.get("pandas")
    if pandas is not None:
        formatter.for_type(pandas.DataFrame, owf_frame_bundle)
    else:
        for module in ("pandas", "pandas.core.frame"):
            formatter.for_type_by_name(module, "DataFrame", owf_frame_bundle)
    shell._owf_frames = True


def shown_frame(df: pd.DataFrame, name: str) -> Any:
    """A display object for a frame, named `name` in its footer (what ``%workflow trace`` shows)."""
    return _Shown(df, name)


class _Shown:
    """A frame displayed with `frame_bundle` under a given name."""

    def __init__(self, df: pd.DataFrame, name: str) -> None:
        self.df, self.name = df, name

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return frame_bundle(self.df, self.name)

    def __repr__(self) -> str:
        return frame_bundle(self.df, self.name)["text/plain"]
