"""Display objects: what a notebook shows for a plan's graph, its resolution table and a run.

Each object answers IPython's ``_repr_mimebundle_`` with every form it can draw — mermaid text
(JupyterLab draws it without the network), SVG when graphviz's ``dot`` exists, HTML and plain text —
and the front end picks the richest one it understands.
"""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any

from owf_magics.notebook.views.graph import overlay_from_result
from owf_magics.notebook.views.graphview import GraphView
from owf_magics.notebook.views.settings import MASK, SETTINGS
from owf_magics.notebook.views.tables import frame_bundle, frame_name, resolution_html, resolution_text
from owf_magics.runtime.results import status_phrase

if TYPE_CHECKING:
    from owf_magics.plan.resolution import Plan
    from owf_magics.runtime.results import RunResult

#: Lines of a run's outputs shown as text before the rest is left to ``VAR.outputs``.
OUTPUT_LINES = 20


class ResolutionView:
    """The backend-resolution table of a plan (HTML and plain text)."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": resolution_text(self.plan), "text/html": resolution_html(self.plan)}

    def __repr__(self) -> str:
        return resolution_text(self.plan)


def run_id_text(result: RunResult) -> str:
    """The run id, or a mask in deterministic mode."""
    return MASK if SETTINGS.deterministic else result.run_id


def summary_text(result: RunResult) -> str:
    """One line: status, steps by status, tokens and cost (the run id masked when deterministic)."""
    text = f"run {run_id_text(result)} of '{result.workflow}': {status_phrase(result.status, result.steps)}; "
    text += f"{result.total_tokens} tokens, ${result.cost_usd:.6f}"
    if not SETTINGS.deterministic:
        text += f"; {result.duration_ms:.0f} ms"
    if result.error:
        text += f"\n  {result.error}"
    return text


def masked_events(result: RunResult) -> list[dict[str, Any]]:
    """The run's events, with timestamps, ids and durations masked in deterministic mode."""
    if not SETTINGS.deterministic:
        return list(result.events)

    def scrub(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: (MASK if k in ("timestamp", "event_id", "run_id", "duration_ms") else scrub(v))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [scrub(v) for v in value]
        return value

    return [scrub(e) for e in result.events]


def pending_lines(result: RunResult) -> list[str]:
    """What a waiting run waits for, and the magic that answers it."""
    import json

    masked = SETTINGS.deterministic  # request ids are random, run ids carry the time

    def rid(request: Any) -> str:
        return MASK if masked else str(request.id)

    lines = [
        f"waiting for {p.kind} {rid(p)} at step {p.step_id}: {json.dumps(p.payload, default=str)}"
        for p in result.pending
    ]
    if lines:
        first = result.pending[0]
        answer = f"--approve {rid(first)}" if first.kind == "approval" else "--event '{...}'"
        lines.append(f"answer with: %workflow resume {run_id_text(result)} {answer}")
    return lines


def still_waiting(ow: Any, run_id: str) -> bool:
    """``%workflow resume`` without answers: a waiting run says what it waits for (printed) and
    nothing changes (True); any other run continues without answers (False)."""
    stored = ow.run(run_id)
    if stored.status != "waiting_approval" or not stored.pending:
        return False  # a run that stopped otherwise (a crash) continues without answers
    if any(p.kind == "time" for p in stored.pending):
        return False  # a wait until a time continues when resumed without answers (docs/durable.md)
    print(f"run {run_id} is waiting; nothing was changed (resume it with the answers below)")
    for line in pending_lines(stored):
        print(f"  {line}")
    return True


def handler_tracebacks(result: RunResult) -> list[tuple[str, str]]:
    """(step id, traceback) of each failed step whose error came from the user's code."""
    out = []
    for sid, step in result.steps.items():
        text = step.error.details.get("traceback") if step.status == "failed" and step.error else None
        if isinstance(text, str) and text:
            out.append((sid, text))
    return out


class RunView:
    """A finished run, statically: summary, outputs, the graph with each step's state, trace and usage.

    Args:
        result: The run.
        plan: The plan it ran (for the graph); without it the graph is left out.
        name: The variable the run is bound to (its trace's footer says ``NAME.trace``); by
            default the namespace is searched for it.
    """

    def __init__(self, result: RunResult, plan: Plan | None = None, *, name: str | None = None) -> None:
        self.result = result
        self.plan = plan
        self.name = name

    def outputs_text(self) -> str:
        return json.dumps(self.result.outputs, indent=2, ensure_ascii=False, default=str)

    def outputs_parts(self, name: str | None) -> tuple[str, str]:
        """The outputs as text (at most `OUTPUT_LINES` lines, then where to read the rest) and as
        HTML (all of them, folded when long: a forEach's results take no half screen)."""
        text = self.outputs_text()
        lines = text.splitlines()
        where = f"{name}.outputs" if name else "the result's .outputs"
        if len(lines) <= OUTPUT_LINES:
            return text, f"<details open><summary>Output</summary><pre>{html.escape(text)}</pre></details>"
        short = "\n".join([*lines[:OUTPUT_LINES], f"… {len(lines) - OUTPUT_LINES} more lines: {where}"])
        page = f"<details><summary>Output ({len(lines)} lines)</summary><pre>{html.escape(text)}</pre></details>"
        return short, page

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        r = self.result
        name = self.name or frame_name(r)
        trace = frame_bundle(r.trace, f"{name}.trace" if name else None)
        usage = frame_bundle(r.usage, f"{name}.usage" if name else None)
        outputs_plain, outputs_html = self.outputs_parts(name)
        plain = [summary_text(r), "outputs:", outputs_plain, *pending_lines(r)]
        parts = [
            f'<div class="owf-run"><p><b>{html.escape(summary_text(r))}</b></p>',
            outputs_html,
            *(f"<p class='owf-pending'>{html.escape(line)}</p>" for line in pending_lines(r)),
        ]
        for sid, text in handler_tracebacks(r):  # folded: the error line is in the summary already
            where = f"{name or '<result>'}.steps[{sid!r}].error.details['traceback']"
            plain += [f"traceback of step '{sid}' ({where}):", text]
            parts.append(
                f"<details class='owf-traceback'><summary>traceback of step '{html.escape(sid)}' into your code"
                f"</summary><pre>{html.escape(text)}</pre></details>"
            )
        if self.plan is not None:
            graph = GraphView(self.plan, overlay_from_result(r))
            plain += ["graph:", graph.text()]
            parts.append(f"<details open><summary>Graph</summary>{graph.html()}</details>")
        plain += ["trace:", trace["text/plain"]]
        parts.append(f"<details open><summary>Trace</summary>{trace['text/html']}</details>")
        if r.usage_rows:
            plain += ["usage:", usage["text/plain"]]
            parts.append(f"<details><summary>Usage</summary>{usage['text/html']}</details>")
        parts.append("</div>")
        return {"text/plain": "\n".join(plain), "text/html": "".join(parts)}

    def __repr__(self) -> str:
        return self._repr_mimebundle_()["text/plain"]
