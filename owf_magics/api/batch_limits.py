"""One rate limiter for a whole batch on Dask: the batch's `RateLimiter` lives in a Dask actor, and
every worker's registry takes its turns there.

In-process, a batch's runs already share the registry's limiter. On a cluster each worker has its
own registry, so without this a ``policies.rateLimit`` of 60 requests a minute would allow 60 per
worker. `ow.map(..., client=)` starts a `BatchLimiter` actor for the call and hands it to every task;
`install` puts a `SharedRateLimiter` in the worker's registry, which asks the actor for each
acquisition of a limited key: one short round trip to the actor's worker that books a slot and
says how long to wait, then the wait happens in the worker (paid only by calls that have a limit;
keys without limits never leave the process).

If the actor's worker dies, the proxy says so once in the log and goes on with the worker's own
limiter (the limit then holds per worker, as if each had its own quota): a batch never fails
because its limiter was lost. See docs/scale.md ("Rate limits across workers").
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from owf_magics.agents.limits import LimitSpec, RateLimiter, check_fits
from owf_magics.errors import OWFError

log = logging.getLogger("owf_magics.batch")


REMOTE_TIMEOUT = 5.0  # seconds a reservation may take before the actor counts as lost


class BatchLimiter:
    """The Dask actor: the batch's buckets, handing out reservations.

    `reserve` never waits: it books the earliest moment the request fits every rate of its key
    (GCRA: each rate keeps the theoretical time its bucket is empty again) and returns the delay;
    the caller sleeps that long in its own process. Requests are served in the order they reach
    the actor, so no call holds a connection while it waits, and a lost actor is noticed at once.
    Sub-queue weights apply within a worker only (docs/scale.md).
    """

    def __init__(self) -> None:
        self._tat: dict[tuple[str, str, int], float] = {}  # (key, dimension, rate index) -> time
        self._lock = threading.Lock()
        self.reservations = 0

    def reserve(self, key: str, spec: LimitSpec, requests: int, tokens: int, messages: int) -> float:
        """Book `requests`, `tokens` and `messages` of `key`; seconds until the caller may go.

        Raises:
            OWFError: ``VALIDATION`` when one acquisition asks for more than a bucket can ever hold.
        """
        amounts = {"requests": requests, "tokens": tokens, "messages": messages}
        check_fits(key, spec, amounts)
        with self._lock:
            now = time.monotonic()
            go = self._earliest(key, spec, amounts, now)
            self._book(key, spec, amounts, go)
            return go - now

    def try_reserve(self, key: str, spec: LimitSpec, requests: int, tokens: int, messages: int) -> bool:
        """Book the request only when it fits now; else book nothing and say False."""
        amounts = {"requests": requests, "tokens": tokens, "messages": messages}
        check_fits(key, spec, amounts)
        with self._lock:
            now = time.monotonic()
            if self._earliest(key, spec, amounts, now) > now:
                return False
            self._book(key, spec, amounts, now)
            return True

    def _rates(self, spec: LimitSpec, amounts: dict[str, int]) -> list[tuple[str, int, Any, int]]:
        return [
            (dim, i, rate, amount)
            for dim, amount in amounts.items()
            if amount > 0
            for i, rate in enumerate(getattr(spec, dim))
        ]

    def _earliest(self, key: str, spec: LimitSpec, amounts: dict[str, int], now: float) -> float:
        """The first moment every rate of `key` has room (GCRA). One pass is enough: moving the
        moment later never takes room away from a rate already satisfied."""
        go = now
        for dim, i, rate, amount in self._rates(spec, amounts):
            tat = self._tat.get((key, dim, i), now)
            go = max(go, tat + (amount - rate.capacity) * rate.per / rate.amount)
        return go

    def _book(self, key: str, spec: LimitSpec, amounts: dict[str, int], go: float) -> None:
        for dim, i, rate, amount in self._rates(spec, amounts):
            tat = max(self._tat.get((key, dim, i), go), go)
            self._tat[(key, dim, i)] = tat + amount * rate.per / rate.amount
        self.reservations += 1

    def stats(self) -> dict[str, Any]:
        return {"reservations": self.reservations, "keys": sorted({k for k, _d, _i in self._tat})}


class SharedRateLimiter:
    """A worker's view of the batch's limiter: the same methods as `RateLimiter`.

    Limits are configured locally (the manifests set them on first use, as in-process) and sent
    with each acquisition, so the actor needs no set-up; a key without limits costs nothing.

    Args:
        actor: The `BatchLimiter` actor handle shipped with the task.
        key: The actor's key (to tell one batch's proxy from another's).
    """

    def __init__(self, actor: Any, key: str) -> None:
        self.key = key
        self._actor: Any = actor
        self._local = RateLimiter()
        self._lock = threading.Lock()

    @property
    def shared(self) -> bool:
        """False once the actor was lost and the worker's own limiter took over."""
        return self._actor is not None

    def configure(self, key: str, spec: LimitSpec | None) -> None:
        self._local.configure(key, spec)

    def set_limit(self, key: str, **limits: Any) -> LimitSpec | None:
        return self._local.set_limit(key, **limits)

    def limits(self, key: str) -> LimitSpec | None:
        return self._local.limits(key)

    def _lost(self, exc: BaseException) -> None:
        with self._lock:
            if self._actor is None:
                return
            self._actor = None
        log.warning(
            "the batch's shared rate limiter is unreachable (%s: %s); this worker goes on with its own limiter",
            type(exc).__name__,
            exc,
        )

    async def acquire(
        self, key: str, *, requests: int = 1, tokens: int = 0, messages: int = 0, subqueue: str = ""
    ) -> float:
        spec = self._local.limits(key)
        if spec is None:
            return 0.0
        actor = self._actor
        if actor is not None:
            try:
                future = actor.reserve(key, spec, requests, tokens, messages)
                delay: float = await asyncio.to_thread(future.result, REMOTE_TIMEOUT)
            except OWFError:
                raise  # the limiter's own refusal (more at once than a bucket holds)
            except Exception as exc:  # the actor's worker is gone: keep going locally
                self._lost(exc)
            else:
                if delay > 0:
                    await asyncio.sleep(delay)
                return delay
        return await self._local.acquire(key, requests=requests, tokens=tokens, messages=messages, subqueue=subqueue)

    def try_acquire(self, key: str, *, requests: int = 1, tokens: int = 0, messages: int = 0) -> bool:
        spec = self._local.limits(key)
        if spec is None:
            return True
        actor = self._actor
        if actor is not None:
            try:
                allowed: bool = actor.try_reserve(key, spec, requests, tokens, messages).result(REMOTE_TIMEOUT)
                return allowed
            except OWFError:
                raise
            except Exception as exc:  # the actor's worker is gone
                self._lost(exc)
        return self._local.try_acquire(key, requests=requests, tokens=tokens, messages=messages)

    acquire_all = RateLimiter.acquire_all  # `acquire` on each key in turn, through this proxy's `acquire`


def install(ow: Any, where: tuple[str, str]) -> None:
    """Give a worker's registry the batch's shared limiter (once per batch).

    Args:
        ow: The worker's registry.
        where: The actor's worker address and key. Tasks carry these rather than the actor handle,
            which Dask would make a dependency of every task: a lost limiter would then fail the
            batch's tasks instead of falling back.
    """
    from distributed import actor as dask_actor

    Actor: Any = dask_actor.Actor  # untyped: mypy strict would refuse the call
    address, key = where
    current = getattr(ow, "_limiter", None)
    if isinstance(current, SharedRateLimiter) and current.key == key:
        return
    ow._limiter = SharedRateLimiter(Actor(BatchLimiter, address, key), key)
