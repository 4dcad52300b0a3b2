"""Execution backends: the contract, the registry of names, and the built-in native backend."""

from __future__ import annotations

from .base import Backend, BackendInfo, ExecutionContext
from .registry import ALIASES, BUILTINS, ENTRY_POINT_GROUP, BackendRegistry

__all__ = ["ALIASES", "BUILTINS", "ENTRY_POINT_GROUP", "Backend", "BackendInfo", "BackendRegistry", "ExecutionContext"]
