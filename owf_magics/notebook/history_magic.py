"""``%workflow runs | diff | replay | fork | timeline | inspect | cost``: run history in the magic.

Thin over `owf_magics.api.run_history` (which returns DataFrames and dicts) and the registry's
``replay``/``fork``: resolve the runs named on the line (a run id, a unique part of one, or a
variable holding a `RunResult`; the last run by default), display, bind ``-o VAR``.
"""

from __future__ import annotations

import html
import json
import math
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.display import display

from owf_magics.errors import OWFError
from owf_magics.notebook.views.settings import MASK, SETTINGS
from owf_magics.notebook.views.tables import html_table, text_table

if TYPE_CHECKING:
    import pandas as pd

    from owf_magics.runtime.results import RunResult

HISTORY_SUBCOMMANDS = ("runs", "diff", "replay", "fork", "timeline", "inspect", "cost")
HISTORY_USAGE = """\
%workflow runs [NAME] [-o VAR]     the stored runs (of NAME), newest first, with what each replays or forks
%workflow diff RUN_A RUN_B [-o VAR] steps whose status, output, tokens, cost or duration differ, side by side
%workflow replay RUN [-o VAR] [--secrets VAR]
                                   run RUN again, serving every recorded step output (no model is called)
%workflow fork RUN --from STEP [-o VAR] [--secrets VAR]
                                   a new run: steps before STEP keep RUN's results, STEP and after run again
%workflow timeline [RUN]           the run's steps as a waterfall picture (SVG)
%workflow inspect [STEP [RUN]]     a step's input, output, error and its agent turns (prompt and completion);
                                   without STEP: every step's input and output in short
%workflow cost [RUN|NAME]          tokens and cost per agent, provider and model (NAME: all its stored runs)
    RUN: a run id, a unique part of one, or a variable holding a RunResult; default: the last run
"""
#: Columns whose values change from run to run: masked in deterministic mode.
_CLOCK = frozenset({"run_id", "started_at", "finished_at", "duration_ms", "origin"})


def history_line(magics: Any, args: Any, sub: str, rest: list[str]) -> Any:
    """Run one history subcommand of ``%workflow`` (`magics` is the shell's `WorkflowMagics`)."""
    if args.output and not str(args.output).isidentifier():
        raise UsageError(f"-o takes a Python variable name, got {args.output!r}")
    try:
        value = _HANDLERS[sub](magics, args, rest)
    except OWFError as exc:
        raise UsageError(exc.message) from None
    if args.output and value is not None:
        magics.shell.user_ns[args.output] = value
    return None


def _run(magics: Any, token: str | None, sub: str) -> RunResult:
    from owf_magics.api.run_history import resolve_run

    if token is None:
        if magics.last_result is None:
            raise UsageError(f"no run yet: run a workflow first, or name one: %workflow {sub} RUN")
        last: RunResult = magics.last_result
        return last
    return resolve_run(magics.ow, token, magics.shell.user_ns)


def _runs(magics: Any, args: Any, rest: list[str]) -> pd.DataFrame:
    from owf_magics.api.run_history import runs_table

    if len(rest) > 1:
        raise UsageError("%workflow runs takes at most one workflow NAME (quote names with spaces)")
    name = rest[0] if rest else None
    frame = runs_table(magics.ow, name)
    if frame.empty:
        print(f"no stored runs{f' of {name!r}' if name else ''} yet")
        return frame
    columns = ("run_id", "workflow", "status", "started_at", "duration_ms", "steps", "tokens", "cost_usd", "origin")
    display(_Rows(frame.to_dict("records"), columns, "owf-runs", f"{len(frame)} stored runs"))
    return frame


def _diff(magics: Any, args: Any, rest: list[str]) -> pd.DataFrame:
    from owf_magics.api.run_history import diff_runs

    if len(rest) != 2:
        raise UsageError("%workflow diff takes two runs: RUN_A RUN_B (run ids, unique parts of them, or variables)")
    frame = diff_runs(magics.ow, rest[0], rest[1], namespace=magics.shell.user_ns)
    display(DiffView(frame))
    return frame


def _rerun(magics: Any, args: Any, rest: list[str], sub: str) -> RunResult:
    from owf_magics.notebook.views.display import RunView

    if len(rest) != 1:
        raise UsageError(f"%workflow {sub} takes one RUN")
    if sub == "fork" and not args.from_step:
        raise UsageError("%workflow fork RUN --from STEP: which step should run again?")
    source = _run(magics, rest[0], sub)
    secrets = magics._secrets(args)
    ow = magics.ow
    if sub == "replay":
        result: RunResult = ow.replay(source.run_id, secrets=secrets)
    else:
        result = ow.fork(source.run_id, args.from_step, secrets=secrets)
    magics.last_result = result
    magics.shell.user_ns["_owf_last"] = result
    if not (args.quiet or magics.settings.quiet):
        try:
            plan = ow.workflow(result.workflow).plan()
        except OWFError:
            plan = None
        display(RunView(result, plan))
    return result


def _timeline(magics: Any, args: Any, rest: list[str]) -> Any:
    from owf_magics.notebook.views.timeline import TimelineView

    if len(rest) > 1:
        raise UsageError("%workflow timeline takes at most one RUN")
    view = TimelineView(_run(magics, rest[0] if rest else None, "timeline"))
    display(view)
    return view.frame


def _inspect(magics: Any, args: Any, rest: list[str]) -> Any:
    from owf_magics.api.run_history import step_details

    if len(rest) > 2:
        raise UsageError("%workflow inspect [STEP [RUN]]: one step (STEP[ITERATION] for one loop iteration)")
    if not rest:  # every step of the last run, its input and output in short
        from owf_magics.api.run_history import step_io

        result = _run(magics, None, "inspect")
        frame = step_io(magics.ow, result)
        columns = ("step_id", "iteration", "status", "attempts", "input", "output")
        caption = f"inputs and outputs of run {MASK if SETTINGS.deterministic else result.run_id}; "
        caption += "%workflow inspect STEP for one in full"
        display(_Rows(frame.to_dict("records"), columns, "owf-step-io", caption))
        return frame
    step, _, iteration = rest[0].partition("[")
    result = _run(magics, rest[1] if len(rest) > 1 else None, "inspect")
    details = step_details(magics.ow, result, step, iteration.rstrip("]") or None)
    display(StepView(details))
    return details


def _cost(magics: Any, args: Any, rest: list[str]) -> pd.DataFrame:
    from owf_magics.api.run_history import cost_rollup

    if len(rest) > 1:
        raise UsageError("%workflow cost takes at most one RUN or workflow NAME")
    token = rest[0] if rest else None
    store = magics.ow.store
    runs = store.list_runs(workflow=token) if token is not None and store is not None else []
    if runs:  # a workflow's name: every stored run of it
        results = [magics.ow.run(r.run_id) for r in runs]
        label = f"{len(results)} runs of {token!r}"
    else:
        results = [_run(magics, token, "cost")]
        label = f"run {MASK if SETTINGS.deterministic else results[0].run_id}"
    frame = cost_rollup(results)
    if frame.empty:
        print(f"no model calls in {label}")
        return frame
    columns = tuple(frame.columns)
    display(_Rows(frame.to_dict("records"), columns, "owf-cost", f"cost per agent, provider and model: {label}"))
    return frame


_HANDLERS = {
    "runs": _runs,
    "diff": _diff,
    "replay": lambda m, a, r: _rerun(m, a, r, "replay"),
    "fork": lambda m, a, r: _rerun(m, a, r, "fork"),
    "timeline": _timeline,
    "inspect": _inspect,
    "cost": _cost,
}


# -- views --------------------------------------------------------------------------------------


def _short(value: Any, limit: int = 80) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (dict, list, tuple, bool)) or value is None:
        text = json.dumps(value, default=str, ensure_ascii=False)
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Rows:
    """Rows as an HTML and a text table, clock columns masked in deterministic mode."""

    def __init__(self, rows: list[dict[str, Any]], columns: tuple[str, ...], css: str, caption: str) -> None:
        mask = SETTINGS.deterministic
        self.rows = [
            {c: MASK if mask and c in _CLOCK and r.get(c) not in (None, "") else _short(r.get(c)) for c in columns}
            for r in rows
        ]
        self.columns, self.css, self.caption = columns, css, caption

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {
            "text/plain": f"{self.caption}\n{text_table(self.rows, self.columns)}",
            "text/html": html_table(self.rows, self.columns, css_class=self.css, caption=self.caption),
        }


class DiffView:
    """`diff_runs`'s frame side by side: per step, each field's two values, the changed ones marked."""

    def __init__(self, frame: pd.DataFrame) -> None:
        from owf_magics.api.run_history import DIFF_FIELDS

        self.frame, self.fields = frame, DIFF_FIELDS
        a, b = str(frame.attrs.get("run_a", "A")), str(frame.attrs.get("run_b", "B"))
        self.a, self.b = (MASK, MASK) if SETTINGS.deterministic else (a, b)

    def _value(self, field: str, value: Any) -> str:
        if field == "duration_ms" and SETTINGS.deterministic:
            return MASK
        return _short(value, 60)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        rows = self.frame.to_dict("records")
        head = f"runs {self.a} (A) and {self.b} (B): "
        head += (f"{len(rows)} steps differ" if len(rows) != 1 else "1 step differs") if rows else "no step differs"
        plain = [head]
        out = [f'<div class="owf-diff"><p><b>{html.escape(head)}</b></p>']
        if rows:
            out.append('<table class="owf-diff"><thead><tr><th rowspan="2">step</th><th rowspan="2">changed</th>')
            out.extend(f'<th colspan="2">{html.escape(f)}</th>' for f in self.fields)
            out.append("</tr><tr>" + "<th>A</th><th>B</th>" * len(self.fields) + "</tr></thead><tbody>")
        for r in rows:
            step = r["step_id"] + (f"[{r['iteration']}]" if r.get("iteration") else "")
            changed = [c.strip() for c in str(r["changed"]).split(",") if c.strip()]
            cells = [f"<td>{html.escape(step)}</td><td>{html.escape(', '.join(changed))}</td>"]
            plain.append(f"  {step}: {', '.join(changed) or 'same'}")
            for f in self.fields:
                mark = ' style="background:#fde7d9"' if f in changed else ""
                va, vb = self._value(f, r[f"{f}_a"]), self._value(f, r[f"{f}_b"])
                cells.append(f"<td{mark}>{html.escape(va)}</td><td{mark}>{html.escape(vb)}</td>")
                if f in changed:
                    plain.append(f"    {f}: A {va or '-'}  |  B {vb or '-'}")
            out.append("<tr>" + "".join(cells) + "</tr>")
        if rows:
            out.append("</tbody></table>")
        out.append("</div>")
        return {"text/plain": "\n".join(plain) + "\n", "text/html": "".join(out)}


def _message(m: dict[str, Any]) -> str:
    text = m.get("content") or ""
    if m.get("tool_calls"):
        text = (text + " " if text else "") + f"(calls {', '.join(map(str, m['tool_calls']))})"
    return f"[{m.get('role')}{': ' + m['name'] if m.get('name') else ''}] {text}"


class StepView:
    """`step_details`: a step's input, output and error, and its agent turns with their text."""

    def __init__(self, details: dict[str, Any]) -> None:
        self.d = details

    @staticmethod
    def _json(value: Any) -> str:
        return value if isinstance(value, str) else json.dumps(value, indent=2, default=str, ensure_ascii=False)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        d = self.d
        name = d["step_id"] + (f"[{d['iteration']}]" if d.get("iteration") else "")
        head = f"step {name}: {d['status']}, {d['attempts']} attempt{'s' if d['attempts'] != 1 else ''}"
        if d.get("backend"):
            head += f", {d['backend']}"
        if d.get("duration_ms") is not None and not SETTINGS.deterministic:
            head += f", {d['duration_ms']} ms"
        sections: list[tuple[str, str]] = []
        if d.get("iterations"):
            sections.append(("iterations", ", ".join(d["iterations"]) + f" (one of them: inspect {d['step_id']}[N])"))
        sections.append(
            ("input", "(not recorded: the run is not in the store)" if d["input"] is None else self._json(d["input"]))
        )
        sections.append(("output", self._json(d["output"])))
        if d.get("error"):
            sections.append(("error", self._json(d["error"])))
        for t in d.get("turns") or []:
            title = f"turn {t['turn']} · {t['agent']} · {t['provider']}/{t['model']} · {t['total_tokens']} tokens"
            prompt = "\n".join(_message(m) for m in t.get("prompt") or [])
            answer = t.get("completion") or ("(none: the turn called tools)" if t.get("tool_calls") else "")
            body = f"prompt:\n{prompt or '(not recorded)'}\n\ncompletion:\n{answer}"
            if t.get("tool_calls"):
                body += f"\n\ntool calls: {', '.join(t['tool_calls'])}"
            sections.append((title, body))
        plain = [head] + [f"{title}:\n{body}" for title, body in sections]
        parts = [f'<div class="owf-step"><p><b>{html.escape(head)}</b></p>']
        parts += [
            f"<details open><summary>{html.escape(title)}</summary><pre>{html.escape(body)}</pre></details>"
            for title, body in sections
        ]
        parts.append("</div>")
        return {"text/plain": "\n".join(plain) + "\n", "text/html": "".join(parts)}
