"""A user message's content: text, or a list of content parts (text and images) as chat models take.

An agent step whose input is a list of parts, each ``{"type": "text", "text": ...}`` or
``{"type": "image_url", "image_url": {"url": ..., "detail"?: ...}}`` (the OpenAI chat format,
which LangChain chat models accept as ``HumanMessage`` content), sends them as they are, so an
image reaches the model as an image; any other input is sent as text (JSON for data).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

PART_TYPES = ("text", "image_url")


def is_content_parts(value: Any) -> bool:
    """Whether `value` is a non-empty list of text / image_url content parts."""
    if not isinstance(value, list) or not value:
        return False
    for part in value:
        if not isinstance(part, Mapping) or part.get("type") not in PART_TYPES:
            return False
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            return False
        if part["type"] == "image_url":
            image = part.get("image_url")
            if not isinstance(image, Mapping) or not isinstance(image.get("url"), str):
                return False
    return True


def message_content(data: Any) -> str | list[Any]:
    """What the user message carries for an agent input: the parts, the text, or the data as JSON."""
    if isinstance(data, str):
        return data
    if is_content_parts(data):
        return [dict(p) for p in data]
    return json.dumps(data, default=str, sort_keys=True)
