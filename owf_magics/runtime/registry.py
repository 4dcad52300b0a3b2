"""Which backends exist: built-ins, user registrations and the ``owf_magics.backends`` entry points.

Built-ins are a table of ``"module:Class"`` strings plus the packages each needs, so listing them
imports nothing heavy. A backend is imported the first time it is asked for.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from owf_magics.errors import UnavailableError, did_you_mean
from owf_magics.runtime.backend import Backend, BackendInfo

ENTRY_POINT_GROUP = "owf_magics.backends"
ALIASES = {"langgraph": "langchain", "smartify": "native"}
_NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]*$")


@dataclass(frozen=True, slots=True)
class BuiltinBackend:
    name: str
    target: str  # "module:Class"
    requires: tuple[str, ...]  # importable modules it needs
    description: str
    install_hint: str
    runtime: str | None = "python"


BUILTINS: dict[str, BuiltinBackend] = {
    "native": BuiltinBackend(
        "native", "owf_magics.backends.native:NativeBackend", (), "OpenWorkflow native runtime", "included"
    ),
    "langchain": BuiltinBackend(
        "langchain",
        "owf_magics.backends.langchain:LangChainBackend",
        ("langgraph", "langchain_core", "langchain", "owf_magics.backends.langchain"),
        "LangChain integration (LangGraph agents and graphs)",
        "pip install 'owf-magics[langgraph]'",
    ),
    "assistants": BuiltinBackend(
        "assistants",
        "owf_magics.backends.assistants:AssistantsBackend",
        ("agents", "owf_magics.backends.assistants"),
        "OpenAI Agents SDK adapter",
        "pip install 'owf-magics[assistants]'",
    ),
}
#: Names the spec reserves: known (so not typos) but only usable once something registers them.
RESERVED = ("custom", "agentkit", "vertexai", "anthropic")


def _missing(modules: tuple[str, ...]) -> tuple[str, ...]:
    out = []
    for mod in modules:
        try:
            found = importlib.util.find_spec(mod) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(mod.replace("_", "-") if not mod.startswith("owf_magics") else f"{mod} (adapter module)")
    return tuple(out)


@lru_cache(maxsize=1)
def entry_point_targets() -> dict[str, str]:
    """``name -> "module:attr"`` for third-party backends (read once per process)."""
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_target(target: str) -> Any:
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


def check_backend(name: str, backend: Any) -> Backend:
    """Raise a TypeError that names the fix when `backend` does not honour the contract."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise TypeError(f"backend name {name!r} must be lower-case letters, digits, '-', '_' or '.'")
    if isinstance(backend, type):
        raise TypeError(f"register an instance, not the class: register_backend({name!r}, {backend.__name__}())")
    missing = [m for m in ("invoke", "get_info") if not callable(getattr(backend, m, None))]
    if missing:
        raise TypeError(
            f"backend {name!r} ({type(backend).__name__}) lacks {', '.join(missing)}: "
            "subclass owf_magics.Backend and implement invoke() and get_info()"
        )
    return backend  # type: ignore[no-any-return]


class BackendRegistry:
    """The backends one `OpenWorkflow` knows."""

    def __init__(self) -> None:
        self._registered: dict[str, Backend] = {}
        self._loaded: dict[str, Backend] = {}
        self.generation = 0  # bumped on every change: cached plans compare it

    def canonical(self, name: str) -> str:
        return ALIASES.get(name, name)

    def names(self) -> list[str]:
        """Every name a manifest may use: built-ins, aliases, reserved, registered, entry points."""
        out = dict.fromkeys([*BUILTINS, *ALIASES, *RESERVED, *self._registered, *entry_point_targets()])
        return list(out)

    def is_known(self, name: str) -> bool:
        return self.canonical(name) in self.names() or name in ALIASES

    def suggest(self, name: str) -> str | None:
        return did_you_mean(name, self.names())

    def register(self, name: str, backend: Backend) -> None:
        self._registered[self.canonical(name)] = check_backend(name, backend)
        self._loaded.pop(self.canonical(name), None)
        self.generation += 1

    def unregister(self, name: str) -> None:
        self._registered.pop(self.canonical(name), None)
        self.generation += 1

    def info(self, name: str) -> BackendInfo:
        """Metadata without importing a backend that is not installed."""
        name = self.canonical(name)
        if name in self._registered:
            return self._registered[name].get_info()
        builtin = BUILTINS.get(name)
        if builtin is not None:
            missing = _missing(builtin.requires)
            if missing:
                return BackendInfo(
                    name, "-", False, builtin.description, builtin.runtime, (), {}, missing, builtin.install_hint
                )
            return self.get(name).get_info()
        if name in entry_point_targets():
            try:
                return self.get(name).get_info()
            except UnavailableError as exc:
                return BackendInfo(name, "-", False, str(exc.message), None, missing=(entry_point_targets()[name],))
        if name in RESERVED:
            return BackendInfo(
                name,
                "-",
                False,
                "reserved by the spec; register a backend under this name",
                None,
                install_hint=f"ow.register_backend({name!r}, YourBackend())",
            )
        raise self.unavailable(name)

    def get(self, name: str) -> Backend:
        """The backend instance; raises `UnavailableError` with an install suggestion."""
        name = self.canonical(name)
        if name in self._registered:
            return self._registered[name]
        if name in self._loaded:
            return self._loaded[name]
        target: str | None = None
        hint: str | None = None
        builtin = BUILTINS.get(name)
        if builtin is not None:
            missing = _missing(builtin.requires)
            if missing:
                raise UnavailableError(
                    f"Backend '{name}' is not installed or configured (missing: {', '.join(missing)})",
                    details={
                        "backend": name,
                        "missing": list(missing),
                        "suggestion": f"Install: {builtin.install_hint}",
                    },
                )
            target, hint = builtin.target, builtin.install_hint
        elif name in entry_point_targets():
            target = entry_point_targets()[name]
            hint = f"reinstall the package that provides the '{name}' backend"
        if target is None:
            raise self.unavailable(name)
        try:
            obj = load_target(target)
            # an entry point may name a class, a factory function, or a ready instance
            if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "invoke")):
                obj = obj()
            backend = check_backend(name, obj)
        except (ImportError, AttributeError) as exc:
            raise UnavailableError(
                f"Backend '{name}' could not be loaded from {target}: {exc}",
                details={"backend": name, "suggestion": hint},
            ) from exc
        self._loaded[name] = backend
        return backend

    def unavailable(self, name: str) -> UnavailableError:
        best = self.suggest(name)
        suggestion = (
            f"Did you mean '{best}'?"
            if best
            else f"Register it with ow.register_backend({name!r}, backend) "
            f"or install a package that provides it in the '{ENTRY_POINT_GROUP}' entry-point group"
        )
        return UnavailableError(
            f"Backend '{name}' is not installed or registered",
            details={"backend": name, "suggestion": suggestion, "known": self.names()},
        )

    def infos(self) -> list[BackendInfo]:
        out = []
        for name in dict.fromkeys([*BUILTINS, *self._registered, *entry_point_targets(), "custom"]):
            out.append(self.info(name))
        return out
