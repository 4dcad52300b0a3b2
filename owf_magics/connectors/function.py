"""The ``function`` handler kind: a Python callable named ``module.attr``, called with the action input.

Sync functions run in the run's bounded thread pool unless marked `inline`; async ones are awaited.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from owf_magics.errors import UnavailableError
from owf_magics.manifest.models import Handler
from owf_magics.runtime.backend import ExecutionContext
from owf_magics.runtime.context import CURRENT_KEY, RunContext
from owf_magics.runtime.scratch import scratch

F = TypeVar("F", bound=Callable[..., Any])
SYNC, ASYNC = 1, 2  # how `direct_mode` says a handler runs on the loop


def resolve_function(target: str) -> Any:
    """The callable named ``module.attr`` (or ``module:attr``); UNAVAILABLE when it cannot be imported."""
    from owf_magics.runtime.registry import load_target

    module, sep, attr = target.partition(":")
    if not sep:
        module, _, attr = target.rpartition(".")
    try:
        return load_target(f"{module}:{attr}")
    except (ImportError, AttributeError, ValueError) as exc:
        raise UnavailableError(
            f"handler function '{target}' cannot be imported: {exc}",
            details={"function": target, "suggestion": "make the module importable (on sys.path) and the name right"},
        ) from exc


def inline(fn: F) -> F:
    """Mark a sync handler as cheap, so the executor calls it on the event loop, not in the pool.

    Only for functions that return at once and never block (no I/O, no sleeps, no locks): a
    blocking inline handler stalls every other step of the run. Unmarked sync handlers run in the
    bounded thread pool (``OpenWorkflow(max_workers=...)``); async handlers are awaited directly.
    """
    fn.__owf_inline__ = True  # type: ignore[attr-defined]
    return fn


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """How to call one handler, worked out once: its arguments, its context, where it runs."""

    fn: Callable[..., Any]
    is_async: bool
    inline: bool
    whole: bool  # takes the input as one argument (input/data/payload/args) instead of keywords
    wants_context: bool
    maybe_async: bool  # a callable object, whose __call__ may return an awaitable

    @property
    def mode(self) -> int:
        """`SYNC`, `ASYNC` or 0 (see `direct_mode`)."""
        if self.maybe_async:
            return 0
        if self.is_async:
            return ASYNC
        return SYNC if self.inline else 0

    def __call__(self, input: Any, context: ExecutionContext | None) -> Any:
        kwargs = {"context": context} if self.wants_context else {}
        if self.whole or not isinstance(input, dict):
            return self.fn(input, **kwargs)
        return self.fn(**input, **kwargs)


def prepare_function(target: str, fn: Any = None) -> FunctionCall:
    """Resolve a handler and inspect its signature (once per function object)."""
    return _prepare(fn if fn is not None else resolve_function(target))


def _prepare(fn: Any) -> FunctionCall:
    try:
        return _prepare_cached(fn)
    except TypeError:  # an unhashable callable object
        return _inspect(fn)


@functools.lru_cache(maxsize=4096)
def _prepare_cached(fn: Any) -> FunctionCall:
    return _inspect(fn)


def _inspect(fn: Any) -> FunctionCall:
    params = inspect.signature(fn).parameters
    names = [n for n in params if n != "context"]
    return FunctionCall(
        fn,
        inspect.iscoroutinefunction(fn),
        bool(getattr(fn, "__owf_inline__", False)),
        len(names) == 1 and names[0] in ("input", "data", "payload", "args"),
        "context" in params,
        not (inspect.isfunction(fn) or inspect.ismethod(fn) or inspect.isbuiltin(fn)),
    )


def call_function(target: str, input: Any, context: ExecutionContext | None = None, *, fn: Any = None) -> Any:
    """Call a handler with the action input: as keyword arguments, or whole when it takes one
    parameter named input/data/payload/args; the context is passed when it accepts ``context``."""
    return prepare_function(target, fn)(input, context)


@inline
def echo_handler(input: dict[str, Any]) -> dict[str, Any]:
    """A function handler that returns its input (used by ``owf backend test``)."""
    return dict(input)


def direct_mode(run: RunContext, target: str) -> int:
    """`SYNC` for an ``@inline`` sync handler (called on the loop), `ASYNC` for a coroutine
    function (awaited on the loop), else 0: the pool, a callable object, or a handler that cannot
    be imported (the step's normal path reports that)."""
    call = run.functions.get(target)
    if call is None:
        try:
            call = run.functions[target] = prepare_function(target)
        except Exception:
            return 0
    return call.mode


def handler_context(run: RunContext, step_id: str) -> ExecutionContext:
    """The context a handler asking for ``context`` gets; ``metadata["sessions"]`` is the run
    store when it keeps sessions (``append_messages``/``get_messages``/``clear_session``)."""
    store = run.store if run.store is not None else getattr(run.host, "store", None)
    metadata: dict[str, Any] = {"sessions": store} if hasattr(store, "append_messages") else {}
    metadata["scratch"] = scratch(run)  # made on first use, removed when the run ends
    metadata["step_key"] = CURRENT_KEY.get()  # e.g. "loop[2].step": which iteration calls
    metadata["files_root"] = getattr(run.host, "files_root", None)  # where `file` inputs must be
    return ExecutionContext(
        run_id=run.run_id, node_id=step_id, secrets=dict(run.secrets), deadline=run.deadline, metadata=metadata
    )


def call_inline(run: RunContext, call: FunctionCall, data: Any, step_id: str) -> Any:
    """Call a handler on the loop now (what `handle` does, without its coroutine): an inline
    handler's result, or an async handler's coroutine for the caller to await."""
    if call.wants_context:
        ctx = handler_context(run, step_id)
        return call.fn(data, context=ctx) if call.whole or not isinstance(data, dict) else call.fn(**data, context=ctx)
    return call.fn(data) if call.whole or not isinstance(data, dict) else call.fn(**data)


async def handle(run: RunContext, handler: Handler, data: Any, step_id: str) -> Any:
    """Call the handler's Python function: awaited, inline (``@inline``) or in the run's thread pool."""
    target: str = handler.function  # type: ignore[assignment]
    call = run.functions.get(target)
    if call is None:
        call = run.functions[target] = prepare_function(target)
    ctx = handler_context(run, step_id) if call.wants_context else None
    if call.is_async:
        return await call(data, ctx)
    if call.inline:
        out = call(data, ctx)
    else:
        out = await asyncio.get_running_loop().run_in_executor(run.pool, call, data, ctx)
    if call.maybe_async and inspect.isawaitable(out):  # an object whose __call__ is async
        return await out
    return out
