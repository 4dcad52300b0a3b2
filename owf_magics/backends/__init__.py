"""Built-in execution backends: native, langchain (LangGraph), the LangGraph compiler, assistants."""

from __future__ import annotations

from owf_magics.runtime.backend import Backend, BackendInfo, ExecutionContext
from owf_magics.runtime.registry import ALIASES, BUILTINS, ENTRY_POINT_GROUP, BackendRegistry

__all__ = ["ALIASES", "BUILTINS", "ENTRY_POINT_GROUP", "Backend", "BackendInfo", "BackendRegistry", "ExecutionContext"]
