"""An input's declared rules (``pattern``, ``minLength``/``maxLength``, ``minimum``/``maximum``,
``format``), checked with its type and ``enum`` before anything runs (OpenFlow's variable
``validation``, which `formats.openflow` maps onto the workflow's inputs)."""

from __future__ import annotations

import base64
import binascii
import datetime
import re
import uuid
from typing import Any
from urllib.parse import urlparse

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _format_ok(fmt: str, value: str) -> bool:
    if fmt == "email":
        return EMAIL.match(value) is not None
    if fmt in ("url", "uri"):
        parsed = urlparse(value)
        return parsed.scheme in ("http", "https", "ftp", "ws", "wss", "file") and bool(parsed.netloc or parsed.path)
    if fmt == "date":
        try:
            datetime.date.fromisoformat(value)
        except ValueError:
            return False
        return True
    if fmt == "uuid":
        try:
            uuid.UUID(value)
        except ValueError:
            return False
        return True
    if fmt == "base64":
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
        return True
    return True  # formats we do not know are not checked (as JSON Schema does)


def rule_problems(name: str, spec: Any, value: Any) -> list[str]:
    """What is wrong with `value` for the input's rules (nothing for a None value)."""
    out: list[str] = []
    if value is None:
        return out
    if isinstance(value, str):
        if spec.minLength is not None and len(value) < spec.minLength:
            out.append(f"input '{name}' must be at least {spec.minLength} characters long")
        if spec.maxLength is not None and len(value) > spec.maxLength:
            out.append(f"input '{name}' must be at most {spec.maxLength} characters long")
        if spec.pattern is not None:
            try:
                matched = re.search(spec.pattern, value) is not None
            except re.error:
                matched = True  # an invalid pattern is reported at load
            if not matched:
                out.append(f"input '{name}' must match the pattern {spec.pattern!r}")
        if spec.format is not None and not _format_ok(spec.format, value):
            out.append(f"input '{name}' is not a valid {spec.format}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if spec.minimum is not None and value < spec.minimum:
            out.append(f"input '{name}' must be at least {spec.minimum:g}")
        if spec.maximum is not None and value > spec.maximum:
            out.append(f"input '{name}' must be at most {spec.maximum:g}")
    return out
