"""jq and JSONPath expressions for transform steps: compiled once per distinct text.

The loader checks their syntax (so a typo fails validation, not the run); the executor runs them.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.lru_cache(maxsize=1024)
def jq_program(expression: str) -> Any:
    """A compiled jq program."""
    import jq

    return jq.compile(expression)


@functools.lru_cache(maxsize=1024)
def jsonpath(expression: str) -> Any:
    """A parsed JSONPath expression (jsonpath-ng's extended syntax: filters, arithmetic)."""
    from jsonpath_ng.ext.parser import parse

    return parse(expression)


def syntax_error(language: str, expression: str) -> str | None:
    """Why `expression` does not compile as `language` (``jq`` or ``jsonpath``), or None."""
    try:
        if language == "jq":
            jq_program(expression)
        elif language == "jsonpath":
            jsonpath(expression)
    except Exception as exc:  # each library raises its own error types for bad syntax
        return " ".join(str(exc).split()) or type(exc).__name__
    return None
