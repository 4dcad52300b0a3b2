"""The ``queue`` handler kind: a message passes a named queue, within its bandwidth.

The handler config is an AgentFlow queue: ``id``, ``bandwidth{max_messages_per_second,
max_requests_per_minute, tokens_per_minute, burst_size}``, ``subqueues[{id, weight}]`` and
``on_limit`` (``wait``, the default, or ``fail``); ``key`` names the limiter key (``queue:<key>``,
by default ``queue:<id>``). Limits are enforced by the registry's rate
limiter (`owf_magics.agents.limits.RateLimiter`, reached through ``run.host``), so every run of
the registry shares one queue and a test can drive its clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from owf_magics.errors import OWFError
from owf_magics.manifest.models import Handler
from owf_magics.runtime.context import RunContext


class QueueRateLimitExceeded(OWFError):
    """A queue with ``on_limit: fail`` had no room for a message."""

    default_code = "CANCELED"


def weights(subqueues: Any) -> dict[str, int]:
    """AgentFlow sub-queue weights (0..1, or any positive number) as the limiter's integer weights."""
    out: dict[str, int] = {}
    for sq in subqueues or ():
        if isinstance(sq, Mapping) and sq.get("id") is not None:
            w = float(sq.get("weight") or 0)
            out[str(sq["id"])] = max(1, round(w * 100)) if w <= 1 else max(1, round(w))
    return out


def configure(limiter: Any, key: str, config: Mapping[str, Any]) -> None:
    """Set `key`'s limits from the queue's bandwidth, once per registry (later runs share them)."""
    if limiter.limits(key) is not None:
        return
    bw = config.get("bandwidth") or {}
    limiter.set_limit(
        key,
        messages_per_second=bw.get("max_messages_per_second"),
        requests_per_minute=bw.get("max_requests_per_minute"),
        tokens_per_minute=bw.get("tokens_per_minute"),
        burst=bw.get("burst_size"),
        weights=weights(config.get("subqueues")),
    )


async def handle(run: RunContext, handler: Handler, data: Any, step_id: str) -> Any:
    """Wait for room in the queue (or fail at once with ``on_limit: fail``); the input passes on."""
    config = dict(handler.queue or {})
    qid = str(config.get("id") or step_id)
    key = f"queue:{config.get('key') or qid}"  # `key` keeps two specs' queues named q1 apart
    limiter = run.host.rate_limiter
    configure(limiter, key, config)
    data = data if isinstance(data, Mapping) else {}
    subqueue = str(data.get("subqueue") or "")
    tokens = int(data.get("tokens") or 0)
    if config.get("on_limit", "wait") == "fail":
        if not limiter.try_acquire(key, requests=1, tokens=tokens, messages=1):
            raise QueueRateLimitExceeded(
                f"QueueRateLimitExceeded: queue '{qid}' is over its bandwidth (on_limit: fail)",
                details={"error": "QueueRateLimitExceeded", "queue": qid, "step": step_id},
            )
        return {"queue": qid, "subqueue": subqueue, "waited_s": 0.0}
    waited = await limiter.acquire(key, requests=1, tokens=tokens, messages=1, subqueue=subqueue)
    return {"queue": qid, "subqueue": subqueue, "waited_s": waited}
