"""The native backend: runs connector actions and agents in-process.

The workflow executor schedules steps; this backend executes the leaves it is handed.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .._version import __version__
from ..errors import BackendError, UnavailableError
from .base import Backend, BackendInfo, ExecutionContext

F = TypeVar("F", bound=Callable[..., Any])

LOGIC_CAPABILITIES = ("if", "switch", "forEach", "parallel", "wait", "try", "transform", "handoff", "workflow")


class NativeBackend(Backend):
    """Deterministic, in-process execution with minimal overhead."""

    name = "native"

    def get_info(self) -> BackendInfo:
        return BackendInfo(
            name="native",
            version=__version__,
            installed=True,
            description="OpenWorkflow native runtime",
            runtime="python",
            capabilities=("action", "agent", *LOGIC_CAPABILITIES),
        )

    def invoke(self, manifest: dict[str, Any], input: dict[str, Any], context: ExecutionContext) -> dict[str, Any]:
        kind = manifest.get("type")
        if kind == "connector":
            action_name = context.metadata.get("action")
            action = next((a for a in manifest.get("actions", []) if a.get("name") == action_name), None)
            if action is None:
                raise BackendError(f"connector '{manifest.get('name')}' has no action '{action_name}'")
            handler = action.get("handler") or {}
            if handler.get("function"):
                return {"status": "success", "output": call_function(handler["function"], input, context)}
            raise UnavailableError(
                f"the native backend runs '{next(iter(handler), 'no')}' handlers through the workflow executor",
                details={"backend": "native"},
            )
        if kind == "agent":
            provider = (manifest.get("model") or {}).get("provider")
            if provider == "echo":
                return {"status": "success", "output": input}
            raise UnavailableError(f"model provider '{provider}' runs through the workflow executor")
        raise BackendError(f"the native backend cannot invoke a manifest of type {kind!r}")


def resolve_function(target: str) -> Any:
    """The callable named ``module.attr`` (or ``module:attr``); UNAVAILABLE when it cannot be imported."""
    from .registry import load_target

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
