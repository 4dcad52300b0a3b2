"""Rate limits driven by a hand-moved clock (no sleeps), weighted sub-queues, budgets, and the
spec's policies parsed into them."""

from __future__ import annotations

import asyncio
import threading

import pytest

from owf_magics.agents.limits import (
    Budget,
    BudgetExceededError,
    LimitSpec,
    ManualClock,
    MonotonicClock,
    Rate,
    RateLimiter,
    agent_budget,
    agent_key,
    combined_check,
    combined_record,
    limit_spec,
    provider_key,
    queue_key,
    run_budget,
    step_budget,
)
from owf_magics.errors import CanceledError, OWFError


async def settle() -> None:
    """Let every ready task run until it blocks (no time passes)."""
    for _ in range(50):
        await asyncio.sleep(0)


def test_requests_per_minute_with_a_burst():
    async def main():
        clock = ManualClock()
        limiter = RateLimiter(clock)
        limiter.set_limit("k", requests_per_minute=6)  # burst defaults to 6: a minute's worth
        tasks = [asyncio.create_task(limiter.acquire("k")) for _ in range(8)]
        await settle()
        assert sum(t.done() for t in tasks) == 6
        assert clock.next_wakeup() == pytest.approx(10.0)  # one request every 10 s after the burst
        clock.advance(10)
        await settle()
        assert sum(t.done() for t in tasks) == 7
        clock.advance(10)
        await settle()
        assert all(t.done() for t in tasks)
        return [t.result() for t in tasks]

    waited = asyncio.run(main())
    assert waited == [0, 0, 0, 0, 0, 0, pytest.approx(10.0), pytest.approx(20.0)]


def test_tokens_per_minute_waits_for_enough_tokens():
    async def main():
        clock = ManualClock()
        limiter = RateLimiter(clock)
        limiter.configure(provider_key("openai"), limit_spec({"tokensPerMinute": 1000}))
        assert await limiter.acquire(provider_key("openai"), tokens=600) == 0
        task = asyncio.create_task(limiter.acquire(provider_key("openai"), tokens=600))
        await settle()
        assert not task.done()
        clock.advance(11.9)
        await settle()
        assert not task.done()  # 200 tokens at 1000/min need 12 s
        clock.advance(0.1)
        await settle()
        return await task

    assert asyncio.run(main()) == pytest.approx(12.0)


def test_an_acquisition_that_can_never_fit_is_an_error():
    async def main():
        limiter = RateLimiter(ManualClock())
        limiter.set_limit("k", tokens_per_minute=1000)
        with pytest.raises(OWFError) as err:
            await limiter.acquire("k", tokens=1001)
        assert err.value.code == "VALIDATION" and err.value.details["capacity"] == 1000

    asyncio.run(main())


def test_messages_per_second_and_requests_per_day_together():
    async def main():
        clock = ManualClock()
        limiter = RateLimiter(clock)
        limiter.configure(
            queue_key("q"),
            limit_spec({"messagesPerSecond": 5, "requestsPerDay": 3, "requestsPerMinute": 100}),
        )
        for _ in range(3):
            await limiter.acquire(queue_key("q"), messages=1)
        # the day's 3 requests are gone: the 4th waits for the day rate (a day / 3 = 8 h)
        task = asyncio.create_task(limiter.acquire(queue_key("q"), messages=1))
        await settle()
        assert not task.done()
        assert clock.next_wakeup() == pytest.approx(86_400 / 3)
        clock.advance(86_400 / 3)
        await settle()
        return await task

    assert asyncio.run(main()) == pytest.approx(86_400 / 3)


def test_keys_without_limits_are_free_and_limits_can_be_removed():
    async def main():
        limiter = RateLimiter(ManualClock())
        assert await limiter.acquire("nothing", tokens=10**9) == 0
        limiter.set_limit("k", requests_per_minute=1, burst=1)
        assert limiter.limits("k") is not None
        await limiter.acquire("k")
        limiter.configure("k", None)
        assert limiter.limits("k") is None
        assert await limiter.acquire("k") == 0  # no longer limited
        assert limiter.set_limit("k") is None  # no limit given: nothing set

    asyncio.run(main())


def test_weighted_sub_queues_share_in_proportion_and_keep_fifo_within():
    async def main():
        clock = ManualClock()
        limiter = RateLimiter(clock)
        limiter.configure(
            "q", LimitSpec(requests=(Rate(60, 60, burst=1),), weights={"high": 3, "low": 1})
        )  # one request per second
        served: list[str] = []

        async def one(name: str, sub: str) -> None:
            await limiter.acquire("q", subqueue=sub)
            served.append(name)

        tasks = [asyncio.create_task(one("first", "other"))]
        for i in range(8):
            tasks.append(asyncio.create_task(one(f"h{i}", "high")))
            tasks.append(asyncio.create_task(one(f"l{i}", "low")))
        await settle()
        assert served == ["first"]
        for _ in range(16):
            clock.advance(1)
            await settle()
        assert len(served) == 17
        return served

    served = asyncio.run(main())
    window = served[1:9]
    assert sum(s.startswith("h") for s in window) == 6 and sum(s.startswith("l") for s in window) == 2
    highs = [int(s[1:]) for s in served if s.startswith("h")]
    lows = [int(s[1:]) for s in served if s.startswith("l")]
    assert highs == sorted(highs) and lows == sorted(lows)  # FIFO within each sub-queue
    assert served[-4:] == ["l4", "l5", "l6", "l7"]  # once high is empty, low gets every turn


def test_canceled_waiters_never_block_the_line():
    async def main():
        clock = ManualClock()
        limiter = RateLimiter(clock)
        limiter.set_limit("k", requests_per_minute=60, burst=1)
        await limiter.acquire("k")
        head = asyncio.create_task(limiter.acquire("k"))  # holds the turn, sleeping for a token
        queued = asyncio.create_task(limiter.acquire("k"))  # waits in line
        last = asyncio.create_task(limiter.acquire("k"))
        await settle()
        queued.cancel()
        head.cancel()
        await settle()
        assert head.cancelled() and queued.cancelled()
        clock.advance(1)
        await settle()
        assert last.done()
        return last.result()

    assert asyncio.run(main()) == pytest.approx(1.0)


def test_one_limiter_shared_by_event_loops_in_several_threads():
    clock = ManualClock()
    limiter = RateLimiter(clock)
    limiter.set_limit("k", requests_per_minute=2)  # 2 at once, then one per 30 s
    results: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        waited = asyncio.run(limiter.acquire("k"))
        with lock:
            results.append(waited)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    ready = threading.Event()
    for _ in range(2000):  # wait (bounded) until two have gone and the third sleeps on the clock
        with lock:
            if len(results) == 2 and clock.sleepers == 1:
                ready.set()
                break
        threading.Event().wait(0.005)
    assert ready.is_set()
    clock.advance(30)
    for t in threads:
        t.join(30)
    assert sorted(results) == [0, 0, pytest.approx(30.0)]


def test_real_clock_does_not_wait_when_there_is_room():
    async def main():
        limiter = RateLimiter(MonotonicClock())
        limiter.set_limit("k", requests_per_minute=1000)
        return [await limiter.acquire("k") for _ in range(5)]

    assert all(w < 1.0 for w in asyncio.run(main()))


def test_rates_validate():
    with pytest.raises(OWFError):
        Rate(0, 60)
    with pytest.raises(OWFError):
        Rate(1, 60, burst=0)
    assert Rate(0.5, 1).capacity == 1 and Rate(2.5, 1).capacity == 2 and Rate(10, 60, burst=3).capacity == 3


# ------------------------------------------------------------------------------------------------
# budgets


def test_budget_stops_before_a_limit_is_crossed():
    budget = Budget(max_tokens=100, max_cost_usd=1.0)
    budget.record(tokens=60, cost=0.5)
    budget.check(projected_tokens=40, projected_cost=0.5)  # reaching a limit exactly is fine
    with pytest.raises(BudgetExceededError) as err:
        budget.check(projected_tokens=41, step_id="summarise")
    exc = err.value
    assert isinstance(exc, CanceledError) and exc.code == "CANCELED"
    assert exc.details == {
        "reason": "budget",
        "scope": "run",
        "limit": "tokens",
        "max": 100,
        "spent": 60,
        "projected": 41,
        "step_id": "summarise",
    }
    assert "step 'summarise'" in exc.message and "100 tokens" in exc.message
    with pytest.raises(BudgetExceededError) as err:
        budget.check(projected_cost=0.51)
    assert err.value.details["limit"] == "cost_usd"
    assert (budget.remaining_tokens, budget.remaining_cost_usd) == (40, 0.5)
    assert Budget().unlimited and Budget().remaining_tokens is None
    Budget().check(10**9, 10**9)  # no limits: never raises


def test_combined_budgets_check_each():
    run = Budget(max_cost_usd=1.0)
    step = Budget(max_tokens=10, scope="step 's'")
    combined_record([run, step, None], tokens=8, cost=0.2)
    assert run.spent_cost_usd == pytest.approx(0.2) and step.spent_tokens == 8
    combined_check([run, None, step], projected_tokens=2, projected_cost=0.8)
    with pytest.raises(BudgetExceededError) as err:
        combined_check([run, step], projected_tokens=3)
    assert err.value.details["scope"] == "step 's'"


def test_policies_and_guardrails_from_manifests(ow):
    ow.load(
        """
agents:
  - name: helper
    model: {provider: echo}
    policies:
      rateLimit: {requestsPerMinute: 100, tokensPerMinute: 50000}
      cost: {maxCostPerRequest: 0.5, budgetAlert: 100}
workflows:
  - name: guarded
    policies:
      rateLimit: {rpm: 60, burst: 10, queue: batch}
      cost: {maxCostPerRequest: 2.0, maxTokensPerRequest: 5000}
    guardrails: {maxTokens: 800}
    steps:
      - {id: a, type: agent, agent: helper, input: {text: hi}, guardrails: {maxCost: 0.1, maxTokens: 1000}}
      - {id: b, type: agent, agent: helper, input: {text: hi}}
      - {id: c, type: transform, expression: x}
"""
    )
    wf = ow.workflow("guarded").item.model
    spec = limit_spec(wf.policies.rateLimit)
    assert spec is not None and spec.requests == (Rate(60, 60, 10),) and spec.tokens == ()
    budget = run_budget(wf)
    assert budget is not None and (budget.max_cost_usd, budget.max_tokens, budget.scope) == (2.0, 5000, "run")
    steps = {s.id: s for s in wf.steps}
    a = step_budget(steps["a"], wf)
    assert a is not None and (a.max_cost_usd, a.max_tokens, a.scope) == (0.1, 1000, "step 'a'")
    b = step_budget(steps["b"], wf)  # inherits the workflow's guardrails
    assert b is not None and (b.max_cost_usd, b.max_tokens) == (None, 800)
    assert step_budget(steps["c"]) is None
    helper = ow.agent("helper").model
    ab = agent_budget(helper.policies, agent="helper")
    assert ab is not None and ab.max_cost_usd == 0.5 and ab.scope == "agent 'helper'"
    agent_spec = limit_spec(helper.policies.rateLimit)
    assert agent_spec is not None and agent_spec.tokens == (Rate(50000, 60),)


def test_limit_spec_from_plain_dicts():
    assert limit_spec(None) is None
    assert limit_spec({}) is None
    spec = limit_spec({"rpm": 10, "weights": {"gold": 5}})
    assert spec is not None and spec.requests == (Rate(10, 60),) and spec.weights == {"gold": 5}
    assert run_budget(None) is None and run_budget({"policies": {"cost": {"budgetAlert": 5}}}) is None
    assert agent_budget(None) is None
    assert step_budget({"id": "s", "guardrails": {"maxCost": 0}}).max_cost_usd == 0.0  # type: ignore[union-attr]
    assert agent_key("agent:a/b@1") == "agent:agent:a/b@1" and queue_key("x") == "queue:x"
