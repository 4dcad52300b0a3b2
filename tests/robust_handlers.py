"""Handlers the robustness and secret-canary tests call (`handler: {function: tests.robust_handlers.X}`)."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote, quote_plus


def encodings(token: str) -> dict[str, Any]:
    """A careless handler: returns the credential it was given, raw and in every common encoding."""
    raw = token.encode()
    return {
        "raw": token,
        "upper": token.upper(),
        "lower": token.lower(),
        "reversed": token[::-1],
        "base64": base64.b64encode(raw).decode(),
        "base64_unpadded": base64.b64encode(raw).decode().rstrip("="),
        "base64_url": base64.urlsafe_b64encode(raw).decode(),
        "hex": raw.hex(),
        "hex_upper": raw.hex().upper(),
        "percent": quote(token, safe=""),
        "percent_plus": quote_plus(token, safe=""),
        "in_text": f"the key is {token}, do not share",
        "basic": "Basic " + base64.b64encode(b"user:" + raw).decode(),
        "nested": [{"deep": [token.upper()]}, (token,)],
        token: "as a key",
    }


def leak_in_error(token: str) -> None:
    raise RuntimeError(
        f"could not authenticate with {token} ({token[::-1]}, {base64.b64encode(token.encode()).decode()})"
    )


def short(token: str) -> dict[str, Any]:
    """What a handler might do with a two-character credential."""
    return {"whole": token, "upper": token.upper(), "header": f"Bearer {token}", "word": "keep these words intact"}


class _Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def unstorable(kind: str) -> Any:
    """A value the run store cannot write as JSON."""
    if kind == "cycle":
        loop: dict[str, Any] = {"a": 1}
        loop["self"] = loop
        return loop
    if kind == "huge_int":
        return {"n": 10**5000}
    if kind == "tuple_key":
        return {("a", "b"): 1}
    return {"object": _Unprintable()}


def leave(code: int) -> None:
    """A function written for a command line, reused as a handler: it exits."""
    raise SystemExit(code)
