"""Retry policies: the delay before the next attempt and which errors are retried."""

from __future__ import annotations

from owf_magics.manifest.models import (
    RetryPolicy,
)
from owf_magics.runtime.results import StepError


def retry_delay(policy: RetryPolicy, attempt: int) -> float:
    base = policy.initialDelay if policy.initialDelay is not None else 1.0
    if policy.backoff == "fixed":
        delay = base
    elif policy.backoff == "linear":
        delay = base * attempt
    else:
        delay = base * (policy.backoffFactor ** (attempt - 1))
    return min(delay, policy.maxDelay) if policy.maxDelay is not None else delay


def retryable(policy: RetryPolicy, error: StepError) -> bool:
    if not policy.retryOn:
        return error.code not in ("VALIDATION", "CANCELED")
    wanted = {r.lower() for r in policy.retryOn}
    names = {error.code.lower(), str(error.details.get("original_error", "")).lower()}
    if error.code == "TIMEOUT":
        names.add("timeout")
    return bool(wanted & names)
