"""Connector actions and the handler kinds that run them (function, http, command: one module each)."""

from __future__ import annotations

from owf_magics.connectors.actions import HANDLER_KINDS, run_action, validate_action_input
from owf_magics.connectors.base import HandlerKind
from owf_magics.connectors.function import FunctionCall, call_function, inline, prepare_function

__all__ = [
    "HANDLER_KINDS",
    "FunctionCall",
    "HandlerKind",
    "call_function",
    "inline",
    "prepare_function",
    "run_action",
    "validate_action_input",
]
