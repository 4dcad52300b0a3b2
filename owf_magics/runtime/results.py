"""What a run returns: `RunResult`, per-step `StepResult`, trace rows, usage rows and events.

Trace and usage are kept as plain rows; `RunResult.trace` and `RunResult.usage` turn them into
pandas DataFrames on first access (pandas is imported only then).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from owf_magics.runtime.display import frames_shown, mimebundle
from owf_magics.runtime.frames import typed_frame

if TYPE_CHECKING:
    import pandas as pd

TRACE_COLUMNS = (
    "run_id",
    "step_id",
    "type",
    "backend",
    "backend_source",
    "status",
    "attempt",
    "iteration",
    "parent",
    "fragment",
    "started_at",
    "duration_ms",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_usd",
    "error_code",
)
USAGE_COLUMNS = (
    "run_id",
    "step_id",
    "iteration",
    "provider",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "estimated",
    "cost_usd",
)


def plural(n: int, noun: str) -> str:
    """``1 step``, ``2 steps`` (nouns whose plural adds an s)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


#: The order step statuses are counted in, in a run's summary line.
STATUS_ORDER = ("success", "waiting", "pending", "failed", "skipped", "canceled")


def status_phrase(status: str, steps: Mapping[str, StepResult]) -> str:
    """``completed (4 success)``; ``completed with 1 caught failure (12 success, 2 skipped, 1
    failed)`` when a failure was caught (a try, continueOnError) and the run still completed."""
    counts: dict[str, int] = {}
    for s in steps.values():
        counts[s.status] = counts.get(s.status, 0) + 1
    known = [k for k in STATUS_ORDER if k in counts] + sorted(k for k in counts if k not in STATUS_ORDER)
    parts = ", ".join(f"{counts[k]} {k}" for k in known)
    caught = counts.get("failed", 0) if status == "completed" else 0
    head = f"{status} with {plural(caught, 'caught failure')}" if caught else status
    return f"{head} ({parts})"


class RunSummary(dict[str, Any]):
    """`RunResult.summary`: a mapping that gives the text summary when called."""

    def __init__(self, data: dict[str, Any], text: str) -> None:
        super().__init__(data)
        self.text = text

    def __call__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class StepError:
    """Why a step failed: a code from the SDK taxonomy, a message and details."""

    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The error as templates, events and the store see it: without the user's traceback
        (``details["traceback"]``, kept for the person reading the result, not for the workflow)."""
        details = self.details
        if "traceback" in details:
            details = {k: v for k, v in details.items() if k != "traceback"}
        return {"code": self.code, "message": self.message, "details": details}

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(slots=True)
class StepResult:
    """The outcome of one step (the last iteration or attempt, for loops and retries)."""

    step_id: str
    # success | failed | skipped | waiting (asked for an approval or event, or holds a step that
    # did) | pending (never started: it runs after a waiting step) | canceled
    status: str = "pending"
    output: Any = None
    error: StepError | None = None
    attempts: int = 0
    backend: str = "native"
    duration_ms: float = 0.0

    def __repr__(self) -> str:
        tail = f", error={self.error.code}" if self.error else ""
        return f"StepResult({self.step_id!r}, status={self.status!r}, attempts={self.attempts}{tail})"


class RunResult:
    """The result of one workflow run.

    Attributes:
        run_id: The run's id.
        workflow: The workflow's name.
        status: ``completed``, ``failed``, ``waiting_approval`` or ``canceled``.
        outputs: The workflow's declared outputs (empty when none are declared).
        steps: Every executed (or skipped) step by id, in plan order.
        events: Telemetry events, in deterministic order.
        error: Why the run failed, when it did.
        last_agent: The agent that acted last (after handoffs, the one handed to); None without agents.
    """

    def __init__(
        self,
        run_id: str,
        workflow: str,
        status: str,
        outputs: dict[str, Any],
        steps: dict[str, StepResult],
        events: list[dict[str, Any]],
        trace_rows: list[dict[str, Any]] | None = None,
        usage_rows: list[dict[str, Any]] | None = None,
        error: StepError | None = None,
        pending: list[Any] | None = None,
        duration_ms: float = 0.0,
    ) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.status = status
        self.last_agent: str | None = None  # the agent that acted last, where agents ran
        self.outputs = outputs
        self.steps = steps
        self.finished = list(steps)  # step ids in the order they finished (`metrics`)
        self._events = events
        self._trace_rows = trace_rows if trace_rows is not None else []
        self.usage_rows = usage_rows if usage_rows is not None else []
        self.error = error
        self.pending = pending if pending is not None else []
        self.duration_ms = duration_ms
        self._lazy: Any = None

    def defer(self, bookkeeping: Any) -> None:
        """Build `trace_rows` and `events` from ``bookkeeping.build()`` when first read."""
        self._lazy = bookkeeping

    @property
    def deferred(self) -> Any:
        """What `defer` was given, while `trace_rows` and `events` are not built yet; else None."""
        return self._lazy

    def _materialise(self) -> None:
        lazy, self._lazy = self._lazy, None
        self._trace_rows, self._events = lazy.build()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (a batch run's result coming back from a worker) with its rows and events built."""
        if self._lazy is not None:
            self._materialise()
        state = dict(self.__dict__)
        state.pop("_frames", None)  # built again from the rows when read
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event of the run, in deterministic order (graph rank, iteration, attempt)."""
        if self._lazy is not None:
            self._materialise()
        return self._events

    @events.setter
    def events(self, value: list[dict[str, Any]]) -> None:
        if self._lazy is not None:
            self._materialise()
        self._events = value

    @property
    def trace_rows(self) -> list[dict[str, Any]]:
        """The trace as plain rows (`trace` is the same as a DataFrame)."""
        if self._lazy is not None:
            self._materialise()
        return self._trace_rows

    @trace_rows.setter
    def trace_rows(self, value: list[dict[str, Any]]) -> None:
        if self._lazy is not None:
            self._materialise()
        self._trace_rows = value

    @property
    def trace(self) -> pd.DataFrame:
        """One row per step execution (iterations and retries included), as a plain DataFrame.

        The same frame while the rows do not change. In a notebook it displays truncated (head
        and tail), with the run id once and a footer naming the variable (`owf_magics.runtime.frames`).
        """
        return self._frame("trace", self.trace_rows, TRACE_COLUMNS)

    @property
    def usage(self) -> pd.DataFrame:
        """Token usage per step and model (a plain DataFrame, displayed like `trace`)."""
        return self._frame("usage", self.usage_rows, USAGE_COLUMNS)

    def _frame(self, kind: str, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> pd.DataFrame:
        cache: dict[str, tuple[int, int, Any]] = self.__dict__.setdefault("_frames", {})
        hit = cache.get(kind)
        if hit is not None and hit[0] == id(rows) and hit[1] == len(rows):
            frame: pd.DataFrame = hit[2]
            return frame
        frame = typed_frame(rows, columns, kind=kind, run_id=self.run_id)
        cache[kind] = (id(rows), len(rows), frame)
        frames_shown()
        return frame

    @property
    def total_tokens(self) -> int:
        return sum(int(r.get("total_tokens") or 0) for r in self.usage_rows)

    @property
    def cost_usd(self) -> float:
        return round(sum(float(r.get("cost_usd") or 0.0) for r in self.usage_rows), 8)

    @property
    def metrics(self) -> dict[str, Any]:
        """``{execution_time_ms, tokens_used, cost_usd, nodes_executed}``: the run's time, usage and
        the ids of the steps that completed, in the order they finished (AgentFlow's metrics)."""
        return {
            "execution_time_ms": self.duration_ms,
            "tokens_used": self.total_tokens,
            "cost_usd": self.cost_usd,
            "nodes_executed": [
                sid
                for sid in getattr(self, "finished", self.steps)
                if sid in self.steps and self.steps[sid].status == "success"
            ],
        }

    @property
    def error_body(self) -> dict[str, Any] | None:
        """The unified error format ``{status: "error", message, details}`` of a failed run, else None;
        ``details`` holds the code, the failed step and the error's own details."""
        if self.error is None:
            return None
        failed = next((sid for sid, s in self.steps.items() if s.status == "failed"), None)
        return {
            "status": "error",
            "message": self.error.message,
            "details": {"code": self.error.code, "step": failed, **self.error.details},
        }

    @property
    def summary(self) -> RunSummary:
        """The run summary: called, a few lines of text (status, steps by status, tokens and cost);
        as a mapping, the summary a workflow-runner request reports (``workflow_name``,
        ``session_id``, ``final_output``, ``last_response_id``, ``error``), empty for other
        workflows; ``last_agent`` too wherever agents ran (after handoffs, the one handed to)."""
        data = self.runner_summary()
        if self.last_agent and "last_agent" not in data:
            data = {**data, "last_agent": self.last_agent}
        return RunSummary(data, self.summary_text())

    def runner_summary(self) -> dict[str, Any]:
        found = self.outputs.get("summary") if isinstance(self.outputs, dict) else None
        if isinstance(found, dict) and "workflow_name" in found:
            return found
        for step in self.steps.values():  # a failed request reports its summary in the error
            kept = step.error.details.get("summary") if step.error is not None else None
            if isinstance(kept, dict):
                return kept
        return {}

    def summary_text(self) -> str:
        """A few lines: status, steps by status, tokens and cost."""
        text = f"run {self.run_id} of '{self.workflow}': {status_phrase(self.status, self.steps)}; "
        text += f"{self.total_tokens} tokens, ${self.cost_usd:.6f}"
        if self.last_agent:
            text += f"; last agent {self.last_agent}"
        if self.error:
            text += f"\n  {self.error}"
        return text

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        """Notebook display: summary, outputs, trace and usage (see owf_magics.notebook.views.RunView)."""
        return mimebundle(self)

    def __repr__(self) -> str:
        return f"<RunResult {self.run_id} {self.workflow!r} {self.status}: {plural(len(self.steps), 'step')}>"
