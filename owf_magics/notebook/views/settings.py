"""Display settings shared by the views and the magics: deterministic mode and row limits.

Deterministic mode hides wall-clock values and random ids in what is displayed, so executed
notebooks compare byte for byte. It is on under CI and pytest unless ``OWF_DETERMINISTIC=0``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

#: Environment variables whose presence means "running under CI or a test runner".
CI_VARIABLES = ("CI", "PYTEST_CURRENT_TEST", "PYTEST_VERSION", "NBVAL", "GITHUB_ACTIONS")
_FALSE = ("", "0", "false", "no", "off")


def deterministic_from_env(environ: dict[str, str] | None = None) -> bool:
    """Whether deterministic mode is on by default in this process.

    ``OWF_DETERMINISTIC`` decides when set (``1``/``0``); otherwise any of `CI_VARIABLES` with a
    true-looking value turns it on.
    """
    env = os.environ if environ is None else environ
    explicit = env.get("OWF_DETERMINISTIC")
    if explicit is not None:
        return explicit.strip().lower() not in _FALSE
    return any(env.get(name, "").strip().lower() not in _FALSE for name in CI_VARIABLES)


@dataclass
class DisplaySettings:
    """What every view reads when it renders (the magics' ``OWF`` configurable writes it).

    Attributes:
        deterministic: Hide wall-clock values (durations, timestamps) and run ids.
        max_rows: Rows a table shows before it is truncated (a footer says how to see all).
        max_chars: Characters of a value shown in a table cell.
        svg: Draw graphs as SVG through graphviz's ``dot`` when it is installed.
    """

    deterministic: bool
    max_rows: int = 20
    max_chars: int = 80
    svg: bool = True


SETTINGS = DisplaySettings(deterministic=deterministic_from_env())

#: What a masked value displays as.
MASK = "…"
