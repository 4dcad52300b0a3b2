"""Tables: the backend-resolution table, and truncated DataFrames with a footer saying how to see all.

Tables render to HTML and plain text from plain rows; pandas is imported only for frames.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from functools import lru_cache
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


def footer_text(name: str, total: int, shown: int) -> str:
    """The truncated table's footer."""
    if total <= shown:
        return f"{total} row{'s' if total != 1 else ''}"
    return f"showing {shown} of {total} rows; see everything with {name}.to_string() or pandas' display.max_rows option"


def frame_bundle(df: pd.DataFrame, name: str, *, max_rows: int | None = None) -> dict[str, str]:
    """text/plain and text/html of a frame: the first rows, masked when deterministic, and a footer."""
    limit = SETTINGS.max_rows if max_rows is None else max_rows
    shown = mask_frame(df.head(limit))
    footer = footer_text(name, len(df), len(shown))
    plain = shown.to_string(index=False) if len(shown) else "(no rows)"
    status_col = "status" if "status" in shown.columns else None

    def style(row: dict[str, Any]) -> str:
        colour = STATUS_COLOURS.get(str(row.get(status_col))) if status_col else None
        return f"border-left:4px solid {colour}" if colour else ""

    records = [{str(k): v for k, v in r.items()} for r in shown.to_dict(orient="records")]
    columns = [str(c) for c in shown.columns]
    return {
        "text/plain": f"{plain}\n[{footer}]",
        "text/html": html_table(records, columns, css_class="owf-frame", footer=footer, row_style=style),
    }


def shown_frame(df: pd.DataFrame, name: str) -> Any:
    """A frame that displays truncated with a footer (and masked in deterministic mode).

    The value is still a `pandas.DataFrame` (a subclass that only changes how it displays); every
    operation on it returns a plain DataFrame.
    """
    import pandas as pd

    cls = _frame_class(pd)
    out = cls(df)
    out.attrs["owf_name"] = name
    return out


@lru_cache(maxsize=1)
def _frame_class(pd: Any) -> Any:
    class ShownFrame(pd.DataFrame):  # type: ignore[misc]
        """A DataFrame that displays truncated, with a footer."""

        @property
        def _constructor(self) -> Any:
            return pd.DataFrame

        def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
            return frame_bundle(pd.DataFrame(self), str(self.attrs.get("owf_name", "df")))

        def __repr__(self) -> str:
            return frame_bundle(pd.DataFrame(self), str(self.attrs.get("owf_name", "df")))["text/plain"]

    return ShownFrame
