"""Runs shown while they go: an ipywidgets view fed by the executor's events, or a static summary.

`LiveRunView` receives every event through ``wf.execute(callback=...)`` (from the run's thread)
and updates a progress bar, tokens so far, the current steps and the graph with each step's state;
when the run ends it becomes tabs (Output, Trace, Usage, Events, Graph, YAML). Event handling is a
table of methods by event type, so later features (approvals, say) add a handler and a widget.
Outside a widget front end — nbconvert, nbval, terminal IPython — or in deterministic mode, the
run is shown once it ends, as a static `RunView`. The widget's output carries the static view too
(text/html and a readable text/plain, updated when the run ends), so a notebook executed headlessly
(nbclient, papermill) and read where widgets cannot live (GitHub, nbconvert) still shows the run.
"""

from __future__ import annotations

import html
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from owf_magics.notebook.agent_activity import AgentActivity
from owf_magics.notebook.views import GraphView, RunView, overlay_from_result, summary_text
from owf_magics.notebook.views.display import masked_events
from owf_magics.notebook.views.graph import StepState
from owf_magics.notebook.views.settings import SETTINGS
from owf_magics.notebook.views.tables import frame_bundle
from owf_magics.runtime.results import plural

if TYPE_CHECKING:
    from owf_magics.api import Workflow
    from owf_magics.plan.resolution import Plan
    from owf_magics.runtime.results import RunResult

#: Tabs of the finished view, in order.
TABS = ("Output", "Trace", "Usage", "Events", "Graph", "YAML")
#: The graph is redrawn at most this often while a run goes (seconds).
REDRAW_INTERVAL = 0.25


def widget_front_end() -> bool:
    """Whether displays go to a kernel whose front end may draw widgets (not a terminal shell)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    if ip is None or type(ip).__name__ != "ZMQInteractiveShell":
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def use_widgets(mode: str) -> bool:
    """``always``, ``never``, or ``auto``: a widget front end and not deterministic mode."""
    if mode == "always":
        return True
    if mode == "never":
        return False
    return not SETTINGS.deterministic and widget_front_end()


class LiveRunView:
    """The live view of one run (ipywidgets).

    Args:
        plan: The plan being run (its graph is drawn and its steps counted).
        yaml_text: The manifest text for the YAML tab.
    """

    def __init__(
        self,
        plan: Plan,
        yaml_text: str = "",
        resume: Callable[[str, dict[str, bool]], RunResult] | None = None,
        *,
        name: str | None = None,
    ) -> None:
        import ipywidgets as w

        self.name = name  # the variable the result is bound to (-o VAR), for the trace's footer
        self.bind: Callable[[RunResult], None] | None = None  # rebinds -o VAR to a continued run
        self.handle: Any = None  # the display's handle: its static view follows the run
        self.resume = resume  # (run_id, approvals) -> the continued run: the Approve / Reject buttons call it
        self.answers: list[Any] = []
        self.plan = plan
        self.yaml_text = yaml_text
        self.states: dict[str, StepState] = {}
        self.started: set[str] = set()  # from step.started events, when the executor sends them
        self.tokens = 0
        self.events = 0
        self._lock = threading.Lock()
        self._last_draw = 0.0
        self.handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "run.started": self._on_started,
            "step.started": self._on_started_step,
            "step.skipped": self._on_skipped,
            "step.execution.completed": self._on_step,
            "run.completed": self._on_ended,
            "run.failed": self._on_ended,
            "run.canceled": self._on_ended,
            "run.waiting": self._on_ended,
            "step.waiting": self._on_waiting,
        }
        self.title = w.HTML(f"<b>{html.escape(plan.workflow)}</b>: starting")
        self.progress = w.IntProgress(value=0, min=0, max=max(len(plan), 1), description="steps")
        self.counts = w.Label(value="0 tokens so far")
        self.current = w.HTML("")
        self.activity = AgentActivity()  # turns, tool calls and streaming text of running agent steps
        self.agents = w.HTML("")
        self.graph = w.HTML(GraphView(plan).html())
        self.body = w.VBox([self.title, w.HBox([self.progress, self.counts]), self.current, self.agents, self.graph])
        self.widget = w.VBox([self.body])

    # -- events ---------------------------------------------------------------------------------

    def on_event(self, event: Mapping[str, Any]) -> None:
        """The executor's callback: update the view (called from the run's thread)."""
        kind = str(event.get("type"))
        handler = self.handlers.get(kind)
        with self._lock:
            self.events += 1
            if kind.startswith("agent.") or kind == "step.execution.completed":
                self.activity.on_event(event)
                if kind.startswith("agent."):
                    self._draw()
            if handler is not None:
                handler(dict(event))

    def _on_started(self, event: dict[str, Any]) -> None:
        self.title.value = f"<b>{html.escape(self.plan.workflow)}</b>: running"
        self._draw(force=True)

    def _on_started_step(self, event: dict[str, Any]) -> None:
        self.started.add(str(event.get("step_id")))
        self._draw()

    def _on_skipped(self, event: dict[str, Any]) -> None:
        sid = str(event.get("step_id"))
        if sid not in self.states:
            self.states[sid] = StepState("skipped")
        self._draw()

    def _on_waiting(self, event: dict[str, Any]) -> None:
        sid = str(event.get("step_id"))
        self.states[sid] = StepState("waiting")
        self._draw()

    def _on_ended(self, event: dict[str, Any]) -> None:
        status = (event.get("payload") or {}).get("status", str(event.get("type")).split(".")[-1])
        self.title.value = f"<b>{html.escape(self.plan.workflow)}</b>: {html.escape(str(status))}"
        self._draw(force=True)

    def _on_step(self, event: dict[str, Any]) -> None:
        sid = str(event.get("step_id"))
        execution = event.get("execution") or {}
        usage = execution.get("token_usage") or {}
        tokens = int(usage.get("total_tokens") or 0)
        ok = (event.get("result") or {}).get("status") == "success"
        before = self.states.get(sid)
        duration = float(execution.get("duration_ms") or 0.0)
        status = "success" if ok else "failed"
        attempt = int(event.get("attempt") or 1)
        if before is not None:  # another iteration or attempt of the same step: add up, keep a failure
            duration += before.duration_ms or 0.0
            tokens_total = before.tokens + tokens
            retried = attempt > 1 and before.status == "failed"
            status = "failed" if before.status == "failed" and status == "success" and not retried else status
            attempt = max(attempt, before.attempts)
        else:
            tokens_total = tokens
        self.states[sid] = StepState(status, duration, tokens_total, attempt)  # the graph says '3 attempts'
        self.tokens += tokens
        self.progress.value = min(self.progress.max, len([s for s in self.states if s in self.plan.entries]))
        self.counts.value = f"{self.tokens} tokens so far"
        self._draw()

    def running(self) -> list[str]:
        """Steps running now: started and not finished when the executor sends ``step.started``;
        otherwise a guess: not finished, and everything they wait for finished."""
        if self.started:
            return [s for s in self.plan.order if s in self.started and s not in self.states]
        graph = self.plan.graph
        out: list[str] = []
        active: set[str | None] = {None}
        for sid in self.plan.order:
            node = graph.nodes[sid]
            if sid in self.states:
                continue
            if node.parent in active and all(d in self.states for d in graph.deps.get(sid, ())):
                out.append(sid)
                active.add(sid)
        return out

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        running = self.running()
        self.current.value = (
            "current: " + ", ".join(f"<code>{html.escape(s)}</code>" for s in running) if running else ""
        )
        if not force and now - self._last_draw < REDRAW_INTERVAL:
            return
        self._last_draw = now
        self.agents.value = self.activity.html()
        overlay = dict(self.states)
        for sid in running:
            overlay[sid] = StepState("running")
        self.graph.value = GraphView(self.plan, overlay).html()

    # -- the end --------------------------------------------------------------------------------

    def finish(self, result: RunResult) -> None:
        """Replace the live parts with tabs of the finished run."""
        import ipywidgets as w

        with self._lock:
            self.progress.value = self.progress.max
            self.title.value = f"<b>{html.escape(summary_text(result))}</b>"
            pages = self.pages(result)
            tabs = w.Tab(children=[w.HTML(pages[t]) for t in TABS])
            for i, t in enumerate(TABS):
                tabs.set_title(i, t)
            self.tabs = tabs
            self.widget.children = [self.title, *self._approvals(result), tabs]

    def _approvals(self, result: RunResult) -> list[Any]:
        """An Approve and a Reject button per approval request of a waiting run."""
        import ipywidgets as w

        if self.resume is None or result.status != "waiting_approval":
            return []
        rows: list[Any] = []
        self.rows: dict[str, Any] = {}
        self.outcome = w.Output()
        for request in result.pending:
            if request.kind != "approval":
                continue
            what = request.payload.get("tool") or f"{request.payload.get('connector')}.{request.payload.get('action')}"
            label = w.HTML(f"<b>{html.escape(request.step_id)}</b> asks to run <code>{html.escape(str(what))}</code>")
            approve = w.Button(description="Approve", button_style="success", icon="check")
            reject = w.Button(description="Reject", button_style="danger", icon="times")
            approve.on_click(lambda _b, rid=request.id: self.answer(result.run_id, rid, True))
            reject.on_click(lambda _b, rid=request.id: self.answer(result.run_id, rid, False))
            rows.append(w.HBox([label, approve, reject]))
            self.rows[request.id] = rows[-1]
        self.buttons = rows
        return [*rows, self.outcome] if rows else []

    def answer(self, run_id: str, request_id: str, approved: bool) -> RunResult | None:
        """Answer one request and resume the run (what the buttons do); shows the continued run."""
        from IPython.display import display

        if self.resume is None:
            return None
        row = getattr(self, "rows", {}).get(request_id)
        for child in row.children[1:] if row is not None else ():
            child.disabled = True  # this request is answered; the others keep their buttons
        try:
            continued = self.resume(run_id, {request_id: approved})
        except Exception as exc:  # shown where the person clicked, not lost in the widget's callback
            for child in row.children[1:] if row is not None else ():
                child.disabled = False
            with self.outcome:
                print(f"could not resume: {getattr(exc, 'code', type(exc).__name__)}: {getattr(exc, 'message', exc)}")
            return None
        self.answers.append((request_id, approved, continued))
        # the banner, the tabs, the bound variable and the static view follow the continued run
        self.title.value = f"<b>{html.escape(summary_text(continued))}</b>"
        tabs = getattr(self, "tabs", None)
        if tabs is not None:
            pages = self.pages(continued)
            for child, title in zip(tabs.children, TABS, strict=True):
                child.value = pages[title]
        if self.bind is not None:
            self.bind(continued)
        if self.handle is not None:
            self.handle.update(self.bundle(continued), raw=True)
        with self.outcome:
            display(RunView(continued, self.plan, name=self.name))
        return continued

    def stopped(self, exc: BaseException) -> None:
        """The run raised instead of returning a result: the banner and the static view say so."""
        what = f"{getattr(exc, 'code', type(exc).__name__)}: {getattr(exc, 'message', exc)}"
        line = f"{self.plan.workflow}: did not run ({what})"
        self.title.value = f"<b>{html.escape(line)}</b>"
        if self.handle is not None:
            data = dict(self.widget._repr_mimebundle_() or {})
            data["text/plain"], data["text/html"] = line, f"<p><b>{html.escape(line)}</b></p>"
            self.handle.update(data, raw=True)

    def bundle(self, result: RunResult | None = None) -> dict[str, Any]:
        """The widget's output with a static view beside it: text/plain a readable line (not the
        widget's repr) and, once `result` is given, the `RunView`'s HTML and text."""
        data: dict[str, Any] = dict(self.widget._repr_mimebundle_() or {})
        if result is None:
            line = f"{self.plan.workflow}: running ({plural(len(self.plan), 'step')})"
            data["text/plain"], data["text/html"] = line, f"<p>{html.escape(line)}</p>"
            return data
        static = RunView(result, self.plan, name=self.name)._repr_mimebundle_()
        data["text/plain"] = static["text/plain"]
        data["text/html"] = static["text/html"]
        return data

    def pages(self, result: RunResult) -> dict[str, str]:
        """The HTML of each tab."""
        outputs = json.dumps(result.outputs, indent=2, ensure_ascii=False, default=str)
        events = json.dumps(masked_events(result), indent=1, ensure_ascii=False, default=str)
        return {
            "Output": f"<pre>{html.escape(outputs)}</pre>",
            "Trace": frame_bundle(result.trace, _attr(self.name, "trace"))["text/html"],
            "Usage": frame_bundle(result.usage, _attr(self.name, "usage"))["text/html"],
            "Events": f"<pre>{html.escape(events)}</pre>",
            "Graph": GraphView(self.plan, overlay_from_result(result)).html(),
            "YAML": f"<pre>{html.escape(self.yaml_text)}</pre>",
        }


def run_with_view(
    wf: Workflow,
    plan: Plan,
    inputs: Mapping[str, Any],
    prefer_backend: str | None,
    *,
    settings: Any = None,
    quiet: bool = False,
    secrets: Mapping[str, str] | None = None,
    name: str | None = None,
    bind: Callable[[RunResult], None] | None = None,
    source: str | None = None,
) -> RunResult:
    """Run `wf` and show it: live widgets where they can be drawn, a static summary otherwise
    (`name`: the variable the result will be bound to; `bind`: called with a run continued from
    the view's Approve / Reject buttons; `source`: the cell's text, for the YAML tab)."""
    from IPython.display import display

    mode = getattr(settings, "widgets", "auto")
    if not quiet and use_widgets(mode):
        ow = wf.ow
        from owf_magics.api import OpenWorkflow

        assert isinstance(ow, OpenWorkflow)

        def resume(run_id: str, approvals: dict[str, bool]) -> RunResult:
            return ow.resume(run_id, approvals=approvals, secrets=secrets)

        view = LiveRunView(plan, source or _source_text(wf), resume=resume, name=name)
        view.bind = bind
        view.handle = display(view.bundle(), raw=True, display_id=True)
        try:
            result = wf.execute(
                inputs=dict(inputs), prefer_backend=prefer_backend, secrets=secrets, callback=view.on_event
            )
        except BaseException as exc:  # the cell fails with the error; the view says the run stopped
            view.stopped(exc)
            raise
        view.finish(result)
        if view.handle is not None:
            view.handle.update(view.bundle(result), raw=True)
        return result
    result = wf.execute(inputs=dict(inputs), prefer_backend=prefer_backend, secrets=secrets)
    if not quiet:
        display(RunView(result, plan, name=name))
    return result


def _attr(name: str | None, attr: str) -> str | None:
    return f"{name}.{attr}" if name else None


def _source_text(wf: Workflow) -> str:
    import yaml

    data = wf.manifest.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
