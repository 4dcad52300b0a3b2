"""Inputs and resume answers given as ``KEY=VALUE`` text (one parser for the CLI and the magics)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from owf_magics.errors import OWFError


def input_pairs(pairs: Iterable[str] | None, declared: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Inputs from ``KEY=VALUE`` texts (the CLI's and the magic's ``--input``).

    A value for an input declared ``type: string`` stays the text as written (``01234``,
    ``2024-01-01`` and ``1.10`` included); other values are read as JSON (numbers, ``true``,
    lists, objects) and stay text when they are not JSON.

    Raises:
        OWFError: VALIDATION for a pair without ``=`` or with an empty key.
    """
    import json

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise OWFError(f"--input takes KEY=VALUE, got {pair!r}", code="VALIDATION", details={"input": pair})
        spec = (declared or {}).get(key)
        if getattr(spec, "type", None) == "string":
            out[key] = value
            continue
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError as exc:
            kind = getattr(spec, "type", None)
            if kind in JSON_EXAMPLES:  # the input wants JSON: say so, with the value as JSON
                raise OWFError(
                    f"--input {key}: {kind} values are read as JSON, and {value!r} is not JSON ({exc.msg}); "
                    f"write it as JSON, e.g. --input {key}='{JSON_EXAMPLES[kind](value)}'",
                    code="VALIDATION",
                    details={"input": key, "type": kind, "value": value},
                ) from None
            out[key] = value
    return out


def _as_json_list(value: str) -> str:
    """``[a, b, c]`` as the JSON list it was meant to be (``["a", "b", "c"]``)."""
    import json

    inner = value.strip().removeprefix("[").removesuffix("]")
    items = [i.strip().strip("'\"") for i in inner.split(",") if i.strip()]
    return json.dumps(items or ["a", "b"])


#: Declared input types whose --input value must be JSON (a list or an object written YAML-style,
#: ``[a, b]``, is not), with the value as it was meant, in JSON.
JSON_EXAMPLES: dict[str, Callable[[str], str]] = {
    "array": _as_json_list,
    "object": lambda _value: '{"key": "value"}',
}


def resume_answers(
    approve: Iterable[str] | None, reject: Iterable[str] | None, event: str | None
) -> tuple[dict[str, bool], Any]:
    """`resume`'s approvals and event from command-line style flags (the CLI and the magic):
    request ids to approve and to reject, and the event payload as JSON (or plain text)."""
    import json

    approvals = dict.fromkeys(approve or [], True) | dict.fromkeys(reject or [], False)
    if event is None:
        return approvals, None
    try:
        return approvals, json.loads(event)
    except json.JSONDecodeError:
        return approvals, event
