"""The run queue: FIFO starts, the concurrency limit, handles, cancel, shutdown, and use from
inside a running event loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from owf_magics.errors import CanceledError, OWFError
from owf_magics.runs.queue import RunQueue


def test_200_runs_with_limit_3_all_complete_in_submission_order_never_more_than_3():
    lock = threading.Lock()
    started: list[int] = []
    running = 0
    peak = 0

    def job(i: int):
        async def run() -> int:
            nonlocal running, peak
            with lock:
                started.append(i)
                running += 1
                peak = max(peak, running)
            for _ in range(5):  # yield so that runs overlap
                await asyncio.sleep(0)
            with lock:
                running -= 1
            return i * 2

        return run

    with RunQueue(max_concurrent=3) as q:
        handles = [q.submit(job(i), label=f"job{i}") for i in range(200)]
        results = [h.result(timeout=60) for h in handles]
        status = q.queue_status()
    assert results == [i * 2 for i in range(200)]
    assert started == list(range(200))  # start order == submission order
    assert peak == 3  # the limit was reached and never passed
    assert status.completed == 200 and status.running == [] and status.queued == []
    ids = [h.run_id for h in handles]
    assert ids == sorted(ids) and len(set(ids)) == 200
    assert all(h.status == "completed" for h in handles)


def test_run_ids_are_timestamp_plus_padded_sequence():
    q = RunQueue()
    a, b = q.new_run_id(), q.new_run_id()
    date, clock, seq = a.split("_")
    assert len(date) == 8 and len(clock) == 6 and seq == "000001"
    assert b.endswith("_000002") and a < b
    h = q.submit(lambda: 1, run_id="mine")
    assert h.run_id == "mine" and h.result(timeout=30) == 1
    q.shutdown()


def test_queue_status_while_runs_wait():
    gate = threading.Event()
    q = RunQueue(max_concurrent=2)

    async def blocked() -> str:
        await asyncio.to_thread(gate.wait, 30)
        return "ok"

    handles = [q.submit(blocked, label="b") for _ in range(5)]
    for _ in range(1000):  # bounded wait until the first two have started
        if q.queue_status().running == [h.run_id for h in handles[:2]]:
            break
        threading.Event().wait(0.005)
    status = q.queue_status()
    assert status.running == [h.run_id for h in handles[:2]]
    assert status.queued == [h.run_id for h in handles[2:]]
    assert [h.status for h in handles] == ["running", "running", "queued", "queued", "queued"]
    assert status.to_dict()["max_concurrent"] == 2
    with pytest.raises(TimeoutError):
        handles[0].result(timeout=0.01)
    gate.set()
    assert [h.result(timeout=30) for h in handles] == ["ok"] * 5
    q.shutdown()
    assert q.queue_status().completed == 5


def test_sync_callables_errors_and_result_status():
    class Result:
        status = "waiting_approval"

    with RunQueue() as q:
        in_thread = q.submit(lambda: threading.current_thread().name)
        failing = q.submit(lambda: 1 / 0)
        waiting = q.submit(Result)
        assert in_thread.result(timeout=30) != q.name  # plain functions run in a worker thread
        with pytest.raises(ZeroDivisionError):
            failing.result(timeout=30)
        assert failing.status == "failed"
        assert isinstance(waiting.result(timeout=30), Result)
        assert waiting.status == "waiting_approval"  # a RunResult's own status shows through
        assert q.queue_status().failed == 1
    with pytest.raises(TypeError):
        q2 = RunQueue()

        async def coro() -> None:
            pass

        c = coro()
        try:
            q2.submit(c)  # type: ignore[arg-type]
        finally:
            c.close()
    with pytest.raises(OWFError):
        RunQueue(max_concurrent=0)


def test_cancel_queued_and_running_runs():
    gate = threading.Event()
    started: list[str] = []
    q = RunQueue(max_concurrent=1)

    async def long() -> str:
        started.append("long")
        await asyncio.to_thread(gate.wait, 30)
        await asyncio.sleep(3600)  # only cancellation ends it
        return "never"

    def quick(name: str):
        async def run() -> str:
            started.append(name)
            return name

        return run

    first = q.submit(long)
    second = q.submit(quick("second"))
    third = q.submit(quick("third"))
    assert second.cancel() is True  # queued: never starts
    assert second.status == "canceled"
    with pytest.raises(CanceledError):
        second.result(timeout=5)
    gate.set()
    for _ in range(1000):
        if first.status == "running" and started == ["long"]:
            break
        threading.Event().wait(0.005)
    assert first.cancel() is True  # running: its task is canceled
    with pytest.raises(CanceledError) as err:
        first.result(timeout=30)
    assert err.value.code == "CANCELED"
    assert third.result(timeout=30) == "third"
    assert started == ["long", "third"]
    assert third.cancel() is False  # already done
    q.shutdown()
    status = q.queue_status()
    assert (status.completed, status.canceled) == (1, 2)


def test_shutdown_cancels_queued_cleanly_and_lets_running_finish():
    gate = threading.Event()
    q = RunQueue(max_concurrent=1)
    made: list[int] = []

    def job(i: int):
        async def run() -> int:
            made.append(i)
            if i == 0:
                await asyncio.to_thread(gate.wait, 30)
            return i

        return run

    handles = [q.submit(job(i)) for i in range(4)]
    for _ in range(1000):
        if handles[0].status == "running":
            break
        threading.Event().wait(0.005)
    releaser = threading.Timer(0.05, gate.set)
    releaser.start()
    q.shutdown(cancel_queued=True, wait=True, timeout=30)
    releaser.join()
    assert handles[0].result(timeout=1) == 0
    assert [h.status for h in handles[1:]] == ["canceled"] * 3
    assert made == [0]  # queued runs were never started (no coroutine made, none left un-awaited)
    assert q._thread is not None and not q._thread.is_alive()  # the loop stopped
    with pytest.raises(OWFError) as err:
        q.submit(job(9))
    assert err.value.code == "UNAVAILABLE"


def test_shutdown_without_cancel_runs_everything():
    q = RunQueue(max_concurrent=2)
    handles = [q.submit(lambda i=i: i) for i in range(10)]
    q.shutdown(cancel_queued=False, wait=True, timeout=60)
    assert [h.result(timeout=1) for h in handles] == list(range(10))
    RunQueue().shutdown()  # a queue never used shuts down at once


def test_works_from_inside_a_running_event_loop():
    async def notebook_cell() -> tuple[int, int]:
        # a Jupyter kernel runs cells inside a loop: submit, then await or block on the handle
        with RunQueue() as q:

            async def work() -> int:
                await asyncio.sleep(0)
                return 41

            h1 = q.submit(work)
            h2 = q.submit(work)
            a = await h1.aresult()
            b = h2.result(timeout=30) + 1
            return a, b

    assert asyncio.run(notebook_cell()) == (41, 42)


def test_aresult_of_a_canceled_run_raises_canceled():
    async def main() -> None:
        q = RunQueue(max_concurrent=1)

        async def block() -> None:
            await asyncio.sleep(3600)

        running = q.submit(block)
        queued = q.submit(block)
        queued.cancel()
        with pytest.raises(CanceledError):
            await queued.aresult()
        running.cancel()
        with pytest.raises(CanceledError):
            await running.aresult()
        q.shutdown(wait=False)

    asyncio.run(main())


def test_result_from_inside_the_queue_loop_is_refused():
    q = RunQueue()

    async def outer():
        inner = q.submit(lambda: 1)
        with pytest.raises(RuntimeError):
            inner.result()
        return await inner.aresult()

    assert q.submit(outer).result(timeout=30) == 1
    q.shutdown()


def test_executor_runs_through_the_queue(ow):
    ow.load(
        """
name: queued
inputs: {n: {type: number}}
steps:
  - {id: a, type: transform, expression: "{{ inputs.n * 2 }}"}
outputs: {o: {value: "{{ steps.a.output }}"}}
"""
    )
    wf = ow.workflow("queued")
    with RunQueue(max_concurrent=3) as q:
        handles = [q.submit(lambda n=n: wf.aexecute(inputs={"n": n}), label="queued") for n in range(12)]
        results = [h.result(timeout=60) for h in handles]
    assert [r.outputs["o"] for r in results] == [{"result": n * 2} for n in range(12)]
    assert all(h.status == "completed" for h in handles)
