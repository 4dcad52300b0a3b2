"""A run's timeline (waterfall): one bar per step execution on a shared time axis, as SVG and text.

The SVG is written here (no plotting library): a label column, a time axis on top, one bar per
attempt and iteration coloured by status (the Okabe-Ito palette, told apart by colour-blind
readers), a tooltip per bar with its numbers. `TimelineView` displays it in a notebook and saves it.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from owf_magics.notebook.views.settings import MASK, SETTINGS

if TYPE_CHECKING:
    import pandas as pd

    from owf_magics.runtime.results import RunResult

__all__ = ["TIMELINE_COLOURS", "TimelineView", "timeline_svg", "timeline_text"]

#: Bar colour per status (Okabe-Ito: distinguishable with the common colour-vision deficiencies).
TIMELINE_COLOURS = {
    "success": "#009E73",
    "failed": "#D55E00",
    "waiting": "#E69F00",
    "skipped": "#999999",
    "canceled": "#CC79A7",
    "running": "#0072B2",
    "pending": "#BBBBBB",
}
_ROW, _TOP, _CHART, _PAD = 20, 28, 560, 8


def _label(row: dict[str, Any]) -> str:
    text = str(row["step_id"])
    if row.get("iteration"):
        text += f" [{row['iteration']}]"
    if int(row.get("attempt") or 1) > 1:
        text += f" ↻{row['attempt']}"
    return text


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = frame.to_dict("records")
    return rows


def _ticks(total: float) -> list[float]:
    """About five round tick values from 0 to `total` (milliseconds)."""
    if total <= 0:
        return [0.0]
    raw = total / 5
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return [round(i * step, 6) for i in range(int(total / step) + 1)]


def _ms(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:.3g} s"
    return f"{value:.3g} ms"


def timeline_svg(frame: pd.DataFrame, *, title: str | None = None) -> str:
    """The waterfall of a `owf_magics.api.run_history.timeline` frame as an SVG document."""
    rows = _rows(frame)
    labels = [_label(r) for r in rows]
    indent = [14 if r.get("parent") else 0 for r in rows]
    left = min(260, max([len(t) * 7 + i for t, i in zip(labels, indent, strict=True)] + [60]) + 2 * _PAD)
    total = max([float(r["end_ms"]) for r in rows] + [0.0])
    scale = _CHART / total if total > 0 else 0.0
    head = _TOP + (18 if title else 0)
    width, height = left + _CHART + 2 * _PAD + 60, head + _ROW * max(len(rows), 1) + _PAD
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="owf-timeline" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    if title:
        out.append(f'<text x="{_PAD}" y="14" font-weight="bold">{html.escape(title)}</text>')
    for tick in _ticks(total):
        x = left + tick * scale
        out.append(
            f'<line x1="{x:.1f}" y1="{head - 6}" x2="{x:.1f}" y2="{height - _PAD}" stroke="#e0e0e0"/>'
            f'<text x="{x:.1f}" y="{head - 9}" text-anchor="middle" fill="#555">'
            f"{html.escape(MASK if SETTINGS.deterministic else _ms(tick))}</text>"
        )
    for i, (row, text) in enumerate(zip(rows, labels, strict=True)):
        y = head + i * _ROW
        status = str(row.get("status") or "")
        colour = TIMELINE_COLOURS.get(status, "#0072B2")
        x = left + float(row["start_ms"]) * scale
        w = max(2.0, float(row["duration_ms"]) * scale)
        tip = f"{text}: {status}, {_ms(float(row['duration_ms']))} from +{_ms(float(row['start_ms']))}"
        if row.get("backend"):
            tip += f", {row['backend']}"
        if row.get("total_tokens"):
            tip += f", {row['total_tokens']} tokens"
        out.append(
            f'<g class="owf-bar" data-step="{html.escape(str(row["step_id"]))}" data-status="{html.escape(status)}">'
            f"<title>{html.escape(tip)}</title>"
            f'<text x="{_PAD + indent[i]}" y="{y + 14}">{html.escape(text)}</text>'
            f'<rect x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="{_ROW - 8}" rx="2" fill="{colour}"/>'
        )
        if not SETTINGS.deterministic:
            out.append(f'<text x="{x + w + 4:.1f}" y="{y + 14}" fill="#555">{_ms(float(row["duration_ms"]))}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def timeline_text(frame: pd.DataFrame, *, width: int = 40) -> str:
    """The waterfall as text: a label, then the bar drawn with block characters at its offset."""
    rows = _rows(frame)
    if not rows:
        return "no step executions to draw\n"
    labels = [_label(r) for r in rows]
    pad = max(len(t) for t in labels)
    total = max(float(r["end_ms"]) for r in rows) or 1.0
    lines = []
    for row, text in zip(rows, labels, strict=True):
        start = int(float(row["start_ms"]) / total * width)
        length = max(1, round(float(row["duration_ms"]) / total * width))
        bar = (" " * start + "█" * length).ljust(width + 1)
        tail = str(row.get("status") or "")
        if not SETTINGS.deterministic:
            tail = f"{_ms(float(row['duration_ms']))} {tail}"
        lines.append(f"{text.ljust(pad)}  |{bar[: width + 1]}| {tail}")
    return "\n".join(lines) + "\n"


class TimelineView:
    """A run's waterfall for display (SVG, HTML and text) and ``save("t.svg")``.

    Args:
        source: A `RunResult` or a frame from `owf_magics.api.run_history.timeline`.
    """

    def __init__(self, source: RunResult | pd.DataFrame) -> None:
        from owf_magics.api.run_history import timeline

        self.frame = timeline(source) if hasattr(source, "trace_rows") else source
        attrs = getattr(self.frame, "attrs", {}) or {}
        run = MASK if SETTINGS.deterministic else attrs.get("run_id", "")
        self.title = f"{attrs.get('workflow', 'run')} · {run} · {attrs.get('status', '')}".strip(" ·")

    def svg(self) -> str:
        return timeline_svg(self.frame, title=self.title)

    def text(self) -> str:
        return f"{self.title}\n" + timeline_text(self.frame)

    def save(self, path: str | Path) -> Path:
        """Write the picture as SVG (the only format: no plotting library is needed)."""
        target = Path(path)
        if target.suffix.lower() != ".svg":
            raise ValueError(f"TimelineView.save writes SVG; got {target.name!r} (use a .svg name)")
        target.write_text(self.svg(), encoding="utf-8")
        return target

    def _repr_mimebundle_(self, include: Sequence[str] | None = None, exclude: Any = None) -> dict[str, str]:
        svg = self.svg()
        return {
            "text/plain": self.text(),
            "image/svg+xml": svg,
            "text/html": f'<div class="owf-timeline" style="max-width:100%;overflow-x:auto">{svg}</div>',
        }
