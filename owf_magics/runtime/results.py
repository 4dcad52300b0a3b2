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


@dataclass
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
    """

    run_id: str
    workflow: str
    status: str
    outputs: dict[str, Any]
    steps: dict[str, StepResult]
    events: list[dict[str, Any]]
    trace_rows: list[dict[str, Any]] = field(repr=False, default_factory=list)
    usage_rows: list[dict[str, Any]] = field(repr=False, default_factory=list)
    error: StepError | None = None
    pending: list[Any] = field(default_factory=list)
    duration_ms: float = 0.0

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

    def summary(self) -> str:
        """A few lines: status, steps by status, tokens and cost."""
        counts: dict[str, int] = {}
        for s in self.steps.values():
            counts[s.status] = counts.get(s.status, 0) + 1
        parts = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        text = f"run {self.run_id} of '{self.workflow}': {self.status} ({parts}); "
        text += f"{self.total_tokens} tokens, ${self.cost_usd:.6f}"
        if self.error:
            text += f"\n  {self.error}"
        return text

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        """Notebook display: summary, outputs, trace and usage (see owf_magics.notebook.views.RunView)."""
        return mimebundle(self)

    def __repr__(self) -> str:
        return f"<RunResult {self.run_id} {self.workflow!r} {self.status}: {len(self.steps)} steps>"
