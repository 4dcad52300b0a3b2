"""The backend contract of the spec's SDK: `Backend`, `BackendInfo` and `ExecutionContext`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """What a backend says about itself (``owf backends list`` prints these).

    Attributes:
        name: The name manifests use (``native``, ``langchain``...).
        version: The adapter's version (``"-"`` when not installed).
        installed: Whether it can run here now.
        description: One line for listings.
        runtime: ``python``, ``node``, or None.
        capabilities: What it can run: ``action``, ``agent``, logic step types, ``streaming``...
        frameworks: Versions of the frameworks it wraps, e.g. ``{"langgraph": "0.6.1"}``.
        missing: What is missing, when not installed.
        install_hint: The command that installs it.
    """

    name: str
    version: str
    installed: bool = True
    description: str = ""
    runtime: str | None = None
    capabilities: tuple[str, ...] = ()
    frameworks: dict[str, str] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    install_hint: str | None = None


@dataclass(slots=True)
class ExecutionContext:
    """The context every backend call receives (fields as in execution-backends.md)."""

    run_id: str
    workflow_id: str | None = None
    node_id: str | None = None
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    environment: dict[str, str] = field(default_factory=dict, repr=False)
    trace_id: str | None = None
    deadline: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # secrets and environment never appear in reprs
        return (
            f"ExecutionContext(run_id={self.run_id!r}, workflow_id={self.workflow_id!r}, "
            f"node_id={self.node_id!r}, secrets=<{len(self.secrets)} hidden>, trace_id={self.trace_id!r})"
        )


class Backend(ABC):
    """An execution backend. Subclass it, then ``OpenWorkflow.register_backend(name, instance)``."""

    @abstractmethod
    def invoke(self, manifest: dict[str, Any], input: dict[str, Any], context: ExecutionContext) -> dict[str, Any]:
        """Execute an agent or action manifest with `input`; return a structured result dict."""

    @abstractmethod
    def get_info(self) -> BackendInfo:
        """Name, version and capabilities."""

    async def ainvoke(
        self, manifest: dict[str, Any], input: dict[str, Any], context: ExecutionContext
    ) -> dict[str, Any]:
        """Async form of `invoke`; by default runs `invoke` in a worker thread."""
        import asyncio

        return await asyncio.to_thread(self.invoke, manifest, input, context)
