"""The load boundary's last resort: whatever a parser or a check raises becomes a `ManifestError`.

Every problem a manifest can have is meant to be a diagnostic with its own code. Anything else
that escapes loading (a bug, a library's limit nobody anticipated: a RecursionError, a ValueError
from converting a huge integer) is still reported as a `ManifestError`, with one ``INTERNAL``
diagnostic naming the exception, so ``ow.load``/``ow.validate`` callers and ``owf validate
--json`` handle one exception type and never see a traceback.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from owf_magics.errors import Diagnostic, DiagnosticBag, ManifestError

log = logging.getLogger("owf_magics.load")

#: The longest exception text kept in the diagnostic (a library may put the whole input in it).
MAX_MESSAGE = 500


def source_name(sources: Sequence[Any], name: str | None) -> str:
    """The file name the diagnostic names: the first path, or `name`, or ``<string>``."""
    for source in sources:
        if isinstance(source, os.PathLike):
            return str(os.fspath(source))
        if isinstance(source, str) and "\n" not in source and source.strip().endswith((".yaml", ".yml", ".json")):
            return source.strip()
    return name or ("<object>" if sources and isinstance(sources[0], dict | list) else "<string>")


def load_failure(exc: BaseException, sources: Sequence[Any], name: str | None, bag: DiagnosticBag) -> ManifestError:
    """A `ManifestError` for an unexpected exception: what was found so far, plus ``INTERNAL``."""
    log.debug("loading failed unexpectedly", exc_info=exc)
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 1] + "…"
    internal = Diagnostic(
        "INTERNAL",
        f"loading stopped on an unexpected error: {text}",
        file=source_name(sources, name),
        hint="simplify the manifest around what it names; this is a bug in owf-magics, please report it",
    )
    return ManifestError([*bag.errors, internal], bag.warnings)
