"""Action handlers the executor tests call through `handler: {function: tests.handlers.X}`."""

from __future__ import annotations

import threading

from owf_magics import inline

CALLS: dict[str, int] = {}
GATE = threading.Event()


def count(name: str) -> dict[str, int]:
    CALLS[name] = CALLS.get(name, 0) + 1
    return {"name": name, "calls": CALLS[name]}


def flaky(key: str, fail_times: int) -> dict[str, int]:
    """Fails the first `fail_times` calls for `key`, then succeeds."""
    CALLS[key] = CALLS.get(key, 0) + 1
    if CALLS[key] <= fail_times:
        raise ConnectionError(f"attempt {CALLS[key]} failed")
    return {"attempts": CALLS[key]}


def boom(message: str = "boom") -> dict[str, str]:
    raise RuntimeError(message)


def wait_for_gate() -> dict[str, bool]:
    """Blocks until `open_gate` runs in another step: proves the two ran at the same time."""
    if not GATE.wait(timeout=10):
        raise TimeoutError("the other step never ran concurrently")
    return {"gate": True}


def open_gate() -> dict[str, bool]:
    GATE.set()
    return {"opened": True}


def echo(input):
    return {"echo": input}


ORDER = {
    "order_id": "o-1",
    "line_items": [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 1}],
    "total_amount": 30,
    "backorderPolicy": "hold",
}


def get_order(orderId: str) -> dict:
    return dict(ORDER, order_id=orderId)


def available(input):  # the whole input
    return {"available": True}


def ok(input):
    return {"ok": True, "input": input}


def thread_name() -> dict[str, str]:
    import threading

    return {"thread": threading.current_thread().name}


@inline
def thread_name_inline() -> dict[str, str]:
    import threading

    return {"thread": threading.current_thread().name}


async def thread_name_async() -> dict[str, str]:
    import threading

    return {"thread": threading.current_thread().name}


class AsyncCallable:
    """An object whose ``__call__`` is a coroutine function: its result is awaited too."""

    async def __call__(self, x: int) -> dict[str, int]:
        return {"double": 2 * x}


async_callable = AsyncCallable()


def interrupt_main() -> dict[str, bool]:
    """Sends the process SIGINT (as Ctrl-C does), then keeps the step busy."""
    import os
    import signal
    import time

    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(2)
    return {"finished": True}


def fail_with(text: str) -> None:
    """Fails with the given text in its message (an error message that would leak it)."""
    raise ValueError(f"could not use {text}")


def deadline_seen(context) -> dict[str, bool]:
    """Reports whether the run's deadline reached the handler's context."""
    return {"has_deadline": context.deadline is not None}


def log_call(name: str, path: str, hold: str = "") -> dict[str, str]:
    """Appends `name` to the file at `path` (counting calls across processes); while a file at
    `hold` exists, then blocks (a step in flight for as long as a test wants)."""
    import os
    import time

    with open(path, "a", encoding="utf-8") as fh:
        fh.write(name + "\n")
        fh.flush()
    while hold and os.path.exists(hold):
        time.sleep(0.05)
    return {"done": name}


@inline
def log_call_blocking(name: str, path: str, hold: str = "") -> dict[str, str]:
    """`log_call` on the event loop itself: while it holds, nothing else of its run can run."""
    return log_call(name, path, hold)


@inline
def committed_steps(path: str) -> list[str]:
    """The step keys committed to the run store at `path` (a SQLite file or a PostgreSQL URL), read
    on a connection of its own (what survives if the process dies now)."""
    import sqlite3

    if path.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(path) as pg:
            return sorted(r[0] for r in pg.execute("SELECT step_key FROM steps"))
    conn = sqlite3.connect(path)
    try:
        return sorted(r[0] for r in conn.execute("SELECT step_key FROM steps"))
    finally:
        conn.close()


@inline
def noop_inline() -> None:
    """Nothing, on the event loop."""


def fail_with_token(token: str) -> None:
    """Fails with a credential in its message (an error message that would leak it)."""
    raise ValueError(f"could not log in with {token}")


def nap(ms: int) -> dict[str, bool]:
    """Sleeps `ms` milliseconds; its output never depends on it (a step that only takes time)."""
    import time

    time.sleep(ms / 1000)
    return {"rested": True}
