"""Where a ``${...}`` placeholder sits in an HTTP handler's URL template: in the authority or after it.

The load (a diagnostic with file:line) and the ``http`` handler (a refusal before anything is sent)
ask the same question: does an ``${input.x}`` value decide the URL's scheme, host or port?
"""

from __future__ import annotations

import re

#: ``${name}`` placeholders of handler configs (the same syntax `connectors.base` substitutes).
PLACEHOLDER = re.compile(r"\$\{\s*([A-Za-z_][\w.]*)\s*\}")


def is_input(name: str) -> bool:
    """Whether a placeholder name reads a run's input (``input.x``): a value, never trusted."""
    return name.startswith("input.")


def authority_done(prefix: str) -> bool:
    """Whether literal text `prefix` has ended a URL's ``scheme://host:port`` part."""
    scheme_end = prefix.find("://")
    if scheme_end < 0:
        return False
    return bool(re.search(r"[/?#]", prefix[scheme_end + 3 :]))


def input_in_authority(template: str) -> str | None:
    """The first ``${input...}`` placeholder that surely sits in the URL's scheme, host or port.

    Seen at load, before the trusted placeholders (``${env.X}``...) have values: after one of
    them, where the authority ends is only known at run time (`connectors.http_limits` checks it
    again there), so None.
    """
    for m in PLACEHOLDER.finditer(template):
        if not is_input(m.group(1)):
            return None
        if not authority_done(template[: m.start()]):
            return m.group(0)
    return None
