"""An LLM node's image messages as image content parts (the OpenAI chat format the chat models take).

A message ``{type: image, role, text?, image_url | image_path | image_data}`` becomes an optional
text part and an ``image_url`` part with ``detail: high``: ``image_url`` is sent as given (an
http(s) or data URL), ``image_data`` as a data URL (base64 without a ``data:`` prefix is taken as
PNG), ``image_path`` is read and sent as a data URL; the path is resolved (``..`` and links)
inside the registry's ``files_root`` (the working directory by default), like a ``file`` variable.
Text messages are text parts, in order. The agent loop sends a list of parts as the user
message's content (`agents/content.py`).
"""

from __future__ import annotations

import base64
import mimetypes
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: The largest image file read for a message (bytes): a model takes a few MB at most.
MAX_IMAGE_BYTES = 20 * 2**20


def has_images(node: Mapping[str, Any]) -> bool:
    messages = node.get("messages")
    return any(isinstance(m, Mapping) and m.get("type") == "image" for m in messages or [])


def _read(path: str, files_root: Any) -> str:
    root = Path(files_root if files_root is not None else os.getcwd()).resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root):
        raise ValueError(f"image_path {path!r} resolves outside the files root {str(root)!r}")
    if not target.is_file():
        raise ValueError(f"image_path {path!r} does not exist")
    if target.stat().st_size > MAX_IMAGE_BYTES:
        raise ValueError(f"image_path {path!r} is over {MAX_IMAGE_BYTES} bytes")
    mime = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(target.read_bytes()).decode('ascii')}"


def message_parts(messages: Any = None, context: Any = None) -> dict[str, Any]:
    """The node's messages (rendered) as content parts: ``{"parts": [...]}``."""
    files_root = (getattr(context, "metadata", None) or {}).get("files_root")
    parts: list[dict[str, Any]] = []
    for m in messages or []:
        if not isinstance(m, Mapping):
            continue
        text = m.get("text")
        if text not in (None, ""):
            parts.append({"type": "text", "text": str(text)})
        if m.get("type") != "image":
            continue
        if m.get("image_data"):
            data = str(m["image_data"])
            url = data if data.startswith("data:") else f"data:image/png;base64,{data}"
        elif m.get("image_url"):
            url = str(m["image_url"])
        elif m.get("image_path"):
            url = _read(str(m["image_path"]), files_root)
        else:
            raise ValueError("an image message needs image_url, image_path or image_data")
        parts.append({"type": "image_url", "image_url": {"url": url, "detail": "high"}})
    if not parts:
        parts.append({"type": "text", "text": ""})
    return {"parts": parts}


def image_messages(node: Mapping[str, Any], translate: Any, mapping: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The node's user messages (and templated system ones) with their templates translated, for
    `message_parts` at run time; static system messages stay the agent's system prompt."""
    out: list[dict[str, Any]] = []
    for m in node.get("messages") or []:
        if not isinstance(m, Mapping):
            continue
        entry: dict[str, Any] = {"type": "image" if m.get("type") == "image" else "text"}
        for key in ("text", "image_url", "image_path", "image_data"):
            value = m.get(key) if key != "text" else m.get("text", m.get("content"))
            if value is None:
                continue
            value = str(value)
            for k, v in mapping.items():
                value = value.replace("{{" + str(k) + "}}", str(v))
            entry[key] = value
        if m.get("role") == "system" and entry["type"] == "text" and "{{" not in entry.get("text", ""):
            continue  # the system prompt
        out.append({k: translate(v) if k != "type" else v for k, v in entry.items()})
    return out
