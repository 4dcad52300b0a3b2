"""The ``image`` handler kind: an image from a prompt through an image source.

Offline by default: the ``offline`` provider describes a deterministic image (its id is a hash of
prompt, model and size) without any network, so workflows and tests run anywhere. Other
providers are UNAVAILABLE here, with what to configure instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from owf_magics.connectors.base import placeholders
from owf_magics.errors import UnavailableError
from owf_magics.manifest.models import Handler
from owf_magics.runtime.context import RunContext

OFFLINE = "offline"


def offline_image(prompt: str, model: str, size: str) -> dict[str, Any]:
    """A deterministic image description for `prompt` (no pixels, no network)."""
    digest = hashlib.sha256(f"{model}\0{size}\0{prompt}".encode()).hexdigest()[:16]
    return {"url": f"offline://image/{digest}.png", "prompt": prompt, "model": model, "size": size}


async def handle(run: RunContext, handler: Handler, data: Any, step_id: str) -> Any:
    """The image for the input's ``prompt`` from the handler's provider (``offline`` by default)."""
    config = placeholders(dict(handler.image or {}), {}, run)
    data = data if isinstance(data, Mapping) else {"prompt": data}
    provider = str(config.get("provider") or OFFLINE)
    model = str(config.get("model") or config.get("model_name") or "offline-image")
    size = str(data.get("size") or config.get("size") or "512x512")
    prompt = str(data.get("prompt") or "")
    if provider != OFFLINE:
        raise UnavailableError(
            f"step '{step_id}': image provider '{provider}' is not available offline",
            details={"provider": provider, "suggestion": "use provider: offline, or a function handler that calls it"},
        )
    return offline_image(prompt, model, size)
