"""What a run returns: `RunResult`, per-step `StepResult`, trace rows, usage rows and events.

Trace and usage are kept as plain rows; `RunResult.trace` and `RunResult.usage` turn them into
pandas DataFrames on first access (pandas is imported only then).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from owf_magics.runtime.display import mimebundle, shown_frame

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
        return {"code": self.code, "message": self.message, "details": self.details}

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(slots=True)
class StepResult:
    """The outcome of one step (the last iteration or attempt, for loops and retries)."""

    step_id: str
    status: str = "pending"  # success | failed | skipped | waiting | canceled
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
        steps: Every executed (or skipped) step by id.
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
        return dict(self.__dict__)

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
        """One row per step execution (iterations and retries included).

        A DataFrame that displays truncated, with a footer saying how to see every row.
        """
        import pandas as pd

        return shown_frame(pd.DataFrame(self.trace_rows, columns=list(TRACE_COLUMNS)), "res.trace")

    @property
    def usage(self) -> pd.DataFrame:
        """Token usage per step and model (displayed like `trace`)."""
        import pandas as pd

        return shown_frame(pd.DataFrame(self.usage_rows, columns=list(USAGE_COLUMNS)), "res.usage")

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
            "nodes_executed": [sid for sid, s in self.steps.items() if s.status == "success"],
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
        counts: dict[str, int] = {}
        for s in self.steps.values():
            counts[s.status] = counts.get(s.status, 0) + 1
        parts = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        text = f"run {self.run_id} of '{self.workflow}': {self.status} ({parts}); "
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
        return f"<RunResult {self.run_id} {self.workflow!r} {self.status}: {len(self.steps)} steps>"
