"""Rate limits and budgets: how fast steps may call providers, agents and named queues, and how
much a run or step may spend.

`RateLimiter` keeps token buckets (pyrate-limiter's ``StateBucket`` with its ``TokenBucket``
algorithm) for requests, tokens and messages per key, and serves waiters of one key in weighted
fair order across sub-queues (AgentFlow Core's "weighted subqueues"). Its clock is injectable, so
tests drive time by hand (`ManualClock`). `Budget` stops a run *before* a cost or token limit
would be crossed. `limit_spec`, `run_budget` and `step_budget` read the spec's
``policies.rateLimit``, ``policies.cost`` and step ``guardrails.maxCost``/``maxTokens``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from owf_magics.errors import CanceledError, OWFError

if TYPE_CHECKING:
    from pyrate_limiter import StateBucket

    from owf_magics.manifest.models import Policies, RateLimitPolicy, StepBase, Workflow

MINUTE = 60.0
DAY = 86_400.0
DIMENSIONS = ("requests", "tokens", "messages")


# ------------------------------------------------------------------------------------------------
# clocks


class Clock(Protocol):
    """Time for the limiter: ``now()`` in seconds (monotonic) and an async ``sleep``."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    """The real clock: ``time.monotonic`` and ``asyncio.sleep``."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ManualClock:
    """A clock that moves only when told to (`advance`), for tests without real sleeps.

    ``await clock.sleep(s)`` returns once `advance` has moved time to at least ``now + s``.
    Sleepers may be in any thread's event loop.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def now(self) -> float:
        with self._lock:
            return self._now

    async def sleep(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if seconds <= 0:
                fut.set_result(None)
            else:
                heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), loop, fut))
        await fut

    @property
    def sleepers(self) -> int:
        """How many sleeps are waiting for time to move."""
        with self._lock:
            return sum(1 for *_, f in self._sleepers if not f.done())

    def next_wakeup(self) -> float | None:
        """When the earliest waiting sleep ends, or None."""
        with self._lock:
            live = [when for when, _, _, f in self._sleepers if not f.done()]
            return min(live) if live else None

    def advance(self, seconds: float) -> None:
        """Move time forward and wake the sleeps that are due."""
        with self._lock:
            self._now += seconds
            due = []
            while self._sleepers and self._sleepers[0][0] <= self._now + 1e-9:
                due.append(heapq.heappop(self._sleepers))
        for _, _, loop, fut in due:
            loop.call_soon_threadsafe(_wake, fut)


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class _PyrateClock:
    """Our clock as pyrate-limiter's (integer milliseconds)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def now(self) -> int:
        return int(self.clock.now() * 1000)


# ------------------------------------------------------------------------------------------------
# limits


@dataclass(frozen=True, slots=True)
class Rate:
    """`amount` units per `per` seconds, with at most `burst` units at once.

    `burst` defaults to `amount` (rounded down, at least 1): a full period's worth may go at once,
    then units come back at the steady rate.
    """

    amount: float
    per: float
    burst: int | None = None

    def __post_init__(self) -> None:
        if self.amount <= 0 or self.per <= 0:
            raise OWFError(
                f"a rate needs a positive amount and period, got {self.amount} per {self.per}s", code="VALIDATION"
            )
        if self.burst is not None and self.burst < 1:
            raise OWFError(f"burst must be at least 1, got {self.burst}", code="VALIDATION")

    @property
    def capacity(self) -> int:
        return self.burst if self.burst is not None else max(1, math.floor(self.amount))

    def _pyrate(self) -> Any:
        from pyrate_limiter import Rate as PyrateRate

        # capacity units refill in capacity/amount periods: the steady rate stays amount/per
        interval_ms = max(1, round(self.per * 1000 * self.capacity / self.amount))
        return PyrateRate(self.capacity, interval_ms)


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """The limits of one key: rates for requests, tokens and messages, and sub-queue weights.

    Attributes:
        requests: Request rates (all must allow a request).
        tokens: Token rates (an acquisition asks for its projected tokens).
        messages: Message rates.
        weights: Sub-queue name → weight (≥ 1). Waiters of busier sub-queues are served in
            proportion to these weights; unnamed sub-queues weigh 1.
    """

    requests: tuple[Rate, ...] = ()
    tokens: tuple[Rate, ...] = ()
    messages: tuple[Rate, ...] = ()
    weights: Mapping[str, int] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.requests or self.tokens or self.messages)


def check_fits(key: str, spec: LimitSpec, amounts: Mapping[str, int]) -> None:
    """Refuse one acquisition that asks for more than a bucket of `key` can ever hold.

    Raises:
        OWFError: ``VALIDATION`` (e.g. 10,000 tokens against 5,000 tokens a minute with no burst).
    """
    for dim, amount in amounts.items():
        rates = getattr(spec, dim)
        if amount > 0 and rates and amount > (capacity := min(r.capacity for r in rates)):
            raise OWFError(
                f"{amount} {dim} at once can never fit the limit of '{key}' (at most {capacity} at a time)",
                code="VALIDATION",
                details={"key": key, dim: amount, "capacity": capacity},
            )


def provider_key(name: str) -> str:
    """The limiter key of a model provider (``provider:openai``)."""
    return f"provider:{name}"


def agent_key(ref: str) -> str:
    """The limiter key of an agent (``agent:agent:acme/x@1.0.0``)."""
    return f"agent:{ref}"


def queue_key(name: str) -> str:
    """The limiter key of a named queue (``queue:name``)."""
    return f"queue:{name}"


@dataclass(eq=False)
class _Waiter:
    loop: asyncio.AbstractEventLoop
    fut: asyncio.Future[None]
    subqueue: str


class _Key:
    """One key's buckets and its waiting lines (one per sub-queue)."""

    def __init__(self, spec: LimitSpec, clock: Clock) -> None:
        from pyrate_limiter import StateBucket, TokenBucket

        self.spec = spec
        pyclock = _PyrateClock(clock)
        # one bucket per rate: pyrate-limiter wants a bucket's rates "generous before tight",
        # which a manifest need not respect (100/min with 3/day); every bucket must admit
        self.buckets: dict[str, list[StateBucket]] = {
            dim: [StateBucket([r._pyrate()], algorithm=TokenBucket(), clock=pyclock) for r in rates]  # type: ignore[arg-type]
            for dim, rates in (("requests", spec.requests), ("tokens", spec.tokens), ("messages", spec.messages))
            if rates
        }
        self.lines: dict[str, deque[_Waiter]] = {}
        self.credit: dict[str, int] = {}
        self.busy = False

    def weight(self, subqueue: str) -> int:
        return max(1, int(self.spec.weights.get(subqueue, 1)))

    def pick(self) -> _Waiter | None:
        """The next waiter to serve, by smooth weighted round robin over non-empty sub-queues."""
        active = [q for q, line in self.lines.items() if line]
        if not active:
            return None
        total = sum(self.weight(q) for q in active)
        for q in active:
            self.credit[q] = self.credit.get(q, 0) + self.weight(q)
        best = max(active, key=lambda q: self.credit[q])  # ties: the sub-queue seen first
        self.credit[best] -= total
        return self.lines[best].popleft()


class RateLimiter:
    """Token-bucket limits per key, shared by every run that uses this object.

    Keys without limits are free. Waiters of one key are served one at a time: FIFO within a
    sub-queue, weighted round robin across sub-queues. Safe to use from several threads' event
    loops at once.

    Args:
        clock: Time source; default the real monotonic clock. Tests pass a `ManualClock`.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or MonotonicClock()
        self._keys: dict[str, _Key] = {}
        self._lock = threading.Lock()

    def configure(self, key: str, spec: LimitSpec | None) -> None:
        """Set (or with None / an empty spec, remove) the limits of `key`."""
        with self._lock:
            if spec is None or (spec.empty and not spec.weights):
                self._keys.pop(key, None)
            else:
                self._keys[key] = _Key(spec, self.clock)

    def set_limit(
        self,
        key: str,
        *,
        requests_per_minute: float | None = None,
        requests_per_day: float | None = None,
        tokens_per_minute: float | None = None,
        messages_per_second: float | None = None,
        burst: int | None = None,
        weights: Mapping[str, int] | None = None,
    ) -> LimitSpec | None:
        """`configure` with the spec's units; `burst` applies to the per-minute request rate.
        Returns the spec set (None when no limit was given)."""
        spec = limit_spec(
            {
                "requestsPerMinute": requests_per_minute,
                "requestsPerDay": requests_per_day,
                "tokensPerMinute": tokens_per_minute,
                "messagesPerSecond": messages_per_second,
                "burst": burst,
                "weights": dict(weights or {}),
            }
        )
        self.configure(key, spec)
        return spec

    def limits(self, key: str) -> LimitSpec | None:
        """The limits of `key`, or None."""
        with self._lock:
            state = self._keys.get(key)
            return state.spec if state else None

    def waiting(self, key: str) -> int:
        """How many acquisitions of `key` are waiting for room (the one being admitted included)."""
        with self._lock:
            state = self._keys.get(key)
            return 0 if state is None else sum(len(line) for line in state.lines.values()) + int(state.busy)

    async def acquire(
        self, key: str, *, requests: int = 1, tokens: int = 0, messages: int = 0, subqueue: str = ""
    ) -> float:
        """Wait until `key` allows this many requests, tokens and messages, then take them.

        Args:
            key: e.g. `provider_key`\\ ("openai"), `agent_key`\\ (ref) or `queue_key`\\ (name).
            requests: Requests to take (usually 1).
            tokens: Tokens to take (the projected prompt + completion tokens).
            messages: Messages to take.
            subqueue: The sub-queue to wait in (see `LimitSpec.weights`).

        Returns:
            Seconds waited (by the limiter's clock).

        Raises:
            OWFError: ``VALIDATION`` when one acquisition asks for more than a bucket can ever
                hold (e.g. 10,000 tokens against a 5,000 tokens-per-minute limit with no burst).
        """
        with self._lock:
            state = self._keys.get(key)
        if state is None:
            return 0.0
        amounts = {"requests": requests, "tokens": tokens, "messages": messages}
        check_fits(key, state.spec, amounts)
        start = self.clock.now()
        await self._turn(state, subqueue)
        try:
            for dim, buckets in state.buckets.items():
                amount = amounts[dim]
                for bucket in buckets if amount > 0 else ():
                    await self._take(bucket, amount)
        finally:
            self._release(state)
        return self.clock.now() - start

    def try_acquire(self, key: str, *, requests: int = 1, tokens: int = 0, messages: int = 0) -> bool:
        """Take these amounts from `key` now if every bucket has room, else take nothing: False.

        For callers that fail instead of waiting (AgentFlow's ``on_limit: fail``). A key with
        waiters already in line has no room for someone who does not wait.
        """
        from pyrate_limiter import RateItem

        with self._lock:
            state = self._keys.get(key)
            if state is None:
                return True
            if state.busy:
                return False
            amounts = {"requests": requests, "tokens": tokens, "messages": messages}
            stamp = int(self.clock.now() * 1000)
            chosen = [
                (bucket, RateItem("owf", stamp, weight=amounts[dim]))
                for dim, buckets in state.buckets.items()
                if amounts[dim] > 0
                for bucket in buckets
            ]
            if any(bucket.waiting(item) for bucket, item in chosen):
                return False
            return all(bucket.put(item) for bucket, item in chosen)

    async def acquire_all(
        self, keys: Iterable[str], *, requests: int = 1, tokens: int = 0, messages: int = 0, subqueue: str = ""
    ) -> float:
        """`acquire` on each key in turn (e.g. provider, agent, then queue); total seconds waited."""
        waited = 0.0
        for key in keys:
            waited += await self.acquire(key, requests=requests, tokens=tokens, messages=messages, subqueue=subqueue)
        return waited

    async def _turn(self, state: _Key, subqueue: str) -> None:
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop, loop.create_future(), subqueue)
        with self._lock:
            state.lines.setdefault(subqueue, deque()).append(waiter)
            state.credit.setdefault(subqueue, 0)
            if not state.busy:
                chosen = state.pick()
                assert chosen is not None
                state.busy = True
                _grant(chosen)
        try:
            await waiter.fut
        except asyncio.CancelledError:
            with self._lock:
                line = state.lines.get(subqueue)
                if line is not None and waiter in line:
                    line.remove(waiter)  # never granted: just leave the line
                    raise
            self._release(state)  # granted just as we were canceled: pass the turn on
            raise

    def _release(self, state: _Key) -> None:
        with self._lock:
            chosen = state.pick()
            if chosen is None:
                state.busy = False
            else:
                _grant(chosen)

    async def _take(self, bucket: StateBucket, amount: int) -> None:
        from pyrate_limiter import RateItem

        while True:
            item = RateItem("owf", int(self.clock.now() * 1000), weight=amount)
            if bucket.put(item):
                return
            wait_ms = bucket.waiting(item)
            assert isinstance(wait_ms, int)
            await self.clock.sleep(max(wait_ms, 1) / 1000)


def _grant(waiter: _Waiter) -> None:
    waiter.loop.call_soon_threadsafe(_wake, waiter.fut)


# ------------------------------------------------------------------------------------------------
# budgets


class BudgetExceededError(CanceledError):
    """A step was stopped before it would cross a cost or token budget (code ``CANCELED``;
    ``details.reason == "budget"``)."""


@dataclass
class Budget:
    """How much a run (or a step) may spend, and how much it has.

    Call `check` with what the next model call is projected to cost *before* making it, and
    `record` with what it actually cost afterwards. Thread-safe.

    Args:
        max_cost_usd: Spend limit in USD (None: no limit).
        max_tokens: Token limit (None: no limit).
        scope: What the budget belongs to, for messages (``run``, ``step 'x'``...).
    """

    max_cost_usd: float | None = None
    max_tokens: int | None = None
    scope: str = "run"
    spent_cost_usd: float = 0.0
    spent_tokens: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    @property
    def unlimited(self) -> bool:
        return self.max_cost_usd is None and self.max_tokens is None

    def check(self, projected_tokens: int = 0, projected_cost: float = 0.0, *, step_id: str | None = None) -> None:
        """Raise `BudgetExceededError` if spending this much more would cross a limit.

        Reaching a limit exactly is allowed; going past it is not.
        """
        with self._lock:
            tokens_after = self.spent_tokens + projected_tokens
            cost_after = round(self.spent_cost_usd + projected_cost, 10)
            if self.max_tokens is not None and tokens_after > self.max_tokens:
                self._raise("tokens", self.max_tokens, self.spent_tokens, projected_tokens, step_id)
            if self.max_cost_usd is not None and cost_after > self.max_cost_usd + 1e-12:
                self._raise("cost_usd", self.max_cost_usd, self.spent_cost_usd, projected_cost, step_id)

    def record(self, tokens: int = 0, cost: float = 0.0) -> None:
        """Add what was actually spent."""
        with self._lock:
            self.spent_tokens += int(tokens)
            self.spent_cost_usd = round(self.spent_cost_usd + float(cost), 10)

    @property
    def remaining_tokens(self) -> int | None:
        return None if self.max_tokens is None else max(0, self.max_tokens - self.spent_tokens)

    @property
    def remaining_cost_usd(self) -> float | None:
        return None if self.max_cost_usd is None else max(0.0, round(self.max_cost_usd - self.spent_cost_usd, 10))

    def _raise(self, what: str, limit: float, spent: float, projected: float, step_id: str | None) -> None:
        where = f" at step '{step_id}'" if step_id else ""
        unit = "tokens" if what == "tokens" else "USD"
        raise BudgetExceededError(
            f"stopped{where}: the {self.scope} budget of {limit:g} {unit} would be crossed "
            f"({spent:g} spent + {projected:g} projected)",
            details={
                "reason": "budget",
                "scope": self.scope,
                "limit": what,
                "max": limit,
                "spent": spent,
                "projected": projected,
                "step_id": step_id,
            },
        )


def combined_check(
    budgets: Iterable[Budget | None],
    projected_tokens: int = 0,
    projected_cost: float = 0.0,
    *,
    step_id: str | None = None,
) -> None:
    """`Budget.check` on every budget given (None ones are skipped), e.g. the step's and the run's."""
    for budget in budgets:
        if budget is not None:
            budget.check(projected_tokens, projected_cost, step_id=step_id)


def combined_record(budgets: Iterable[Budget | None], tokens: int = 0, cost: float = 0.0) -> None:
    """`Budget.record` on every budget given."""
    for budget in budgets:
        if budget is not None:
            budget.record(tokens, cost)


# ------------------------------------------------------------------------------------------------
# from manifests


def _get(source: Any, name: str) -> Any:
    if source is None:
        return None
    if isinstance(source, Mapping):
        return source.get(name)
    return getattr(source, name, None)


def limit_spec(policy: RateLimitPolicy | Mapping[str, Any] | None) -> LimitSpec | None:
    """The `LimitSpec` of a ``policies.rateLimit`` (a model or a plain dict), or None when it sets
    no limit.

    Reads ``requestsPerMinute`` (alias ``rpm``), ``requestsPerDay``, ``tokensPerMinute``,
    ``messagesPerSecond``, ``burst`` (of the per-minute request rate) and, from plain dicts only,
    ``weights`` (sub-queue → weight; the canonical model has no such field yet).
    """
    if policy is None:
        return None
    rpm = _get(policy, "requestsPerMinute") or _get(policy, "rpm")
    burst = _get(policy, "burst")
    requests: list[Rate] = []
    if rpm:
        requests.append(Rate(float(rpm), MINUTE, int(burst) if burst else None))
    rpd = _get(policy, "requestsPerDay")
    if rpd:
        requests.append(Rate(float(rpd), DAY))
    tpm = _get(policy, "tokensPerMinute")
    mps = _get(policy, "messagesPerSecond")
    weights = _get(policy, "weights") or {}
    spec = LimitSpec(
        requests=tuple(requests),
        tokens=(Rate(float(tpm), MINUTE),) if tpm else (),
        messages=(Rate(float(mps), 1.0),) if mps else (),
        weights={str(k): int(v) for k, v in dict(weights).items()},
    )
    return None if spec.empty and not spec.weights else spec


def run_budget(workflow: Workflow | Mapping[str, Any] | None) -> Budget | None:
    """A run's budget from the workflow's ``policies.cost`` (``maxCostPerRequest`` and
    ``maxTokensPerRequest``: one request is one run), or None when it sets no limit."""
    cost = _get(_get(workflow, "policies"), "cost")
    budget = Budget(_opt_float(_get(cost, "maxCostPerRequest")), _opt_int(_get(cost, "maxTokensPerRequest")), "run")
    return None if budget.unlimited else budget


def agent_budget(policies: Policies | Mapping[str, Any] | None, *, agent: str = "") -> Budget | None:
    """One agent call's budget from the agent's ``policies.cost.maxCostPerRequest`` /
    ``maxTokensPerRequest`` (one request is one agent step), or None."""
    cost = _get(policies, "cost")
    budget = Budget(
        _opt_float(_get(cost, "maxCostPerRequest")), _opt_int(_get(cost, "maxTokensPerRequest")), f"agent '{agent}'"
    )
    return None if budget.unlimited else budget


def step_budget(
    step: StepBase | Mapping[str, Any], workflow: Workflow | Mapping[str, Any] | None = None
) -> Budget | None:
    """A step's budget from its ``guardrails.maxCost`` (USD per execution) and
    ``guardrails.maxTokens``, falling back to the workflow's ``guardrails``; None when unset."""
    step_id = str(_get(step, "id") or "")
    own = _get(step, "guardrails")
    inherited = _get(workflow, "guardrails")
    max_cost = _get(own, "maxCost")
    max_tokens = _get(own, "maxTokens")
    if max_cost is None:
        max_cost = _get(inherited, "maxCost")
    if max_tokens is None:
        max_tokens = _get(inherited, "maxTokens")
    budget = Budget(_opt_float(max_cost), _opt_int(max_tokens), f"step '{step_id}'")
    return None if budget.unlimited else budget


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)
