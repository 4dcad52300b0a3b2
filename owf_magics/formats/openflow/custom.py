"""Custom OpenFlow node types, ``namespace:node_type``, registered by the user.

A registered type runs as an action step calling a Python function (``module.attr``, imported by
the ``function`` handler kind when the step runs) with ``{config, input}`` rendered; its return
value is the node's output. The namespaces ``core``, ``std`` and ``openflow`` are reserved.
"""

from __future__ import annotations

import re

RESERVED_NAMESPACES = ("core", "std", "openflow")
TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]*:[A-Za-z][A-Za-z0-9_]*$")

_registry: dict[str, str] = {}


def register_node_type(node_type: str, function: str) -> None:
    """Run nodes of ``node_type`` (``namespace:name``) with the function ``module.attr``."""
    if not TYPE_NAME.match(node_type):
        raise ValueError(f"a custom node type is namespace:name (lowercase namespace), got {node_type!r}")
    if node_type.split(":", 1)[0] in RESERVED_NAMESPACES:
        raise ValueError(f"the namespace of {node_type!r} is reserved ({', '.join(RESERVED_NAMESPACES)})")
    if "." not in function and ":" not in function:
        raise ValueError(f"the function is module.attr, got {function!r}")
    _registry[node_type] = function


def unregister_node_type(node_type: str) -> None:
    _registry.pop(node_type, None)


def custom_function(node_type: str) -> str | None:
    """The function a registered custom type runs with, or None."""
    return _registry.get(node_type)


def action_name(node_type: str) -> str:
    return "custom_" + node_type.replace(":", "__")
