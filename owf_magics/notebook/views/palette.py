"""Colours of the graph: one per backend from the Okabe-Ito palette, safe for colour-blind readers.

Okabe and Ito's eight colours were chosen to stay apart under the common colour-vision deficiencies.
Node fills are those colours mixed with a quarter of white, so black labels stay readable;
``tests/test_graph_views.py`` simulates deuteranopia and protanopia (Machado et al., 2009) and checks
that every two fills stay a minimum CIELAB distance apart. The built-in backends have fixed colours;
other backend names take one of the remaining four by a stable hash of the name.
"""

from __future__ import annotations

import zlib
from functools import lru_cache

#: Okabe-Ito colours (the black is left out: it is the labels' colour).
OKABE_ITO: dict[str, str] = {
    "sky blue": "#56B4E9",
    "bluish green": "#009E73",
    "orange": "#E69F00",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
    "yellow": "#F0E442",
    "blue": "#0072B2",
}
WHITE_MIX = 0.25  # how much white goes into a fill
SHADE_MIX = 0.35  # how much black goes into a stroke

BUILT_IN = {"native": "sky blue", "langchain": "bluish green", "assistants": "orange"}
OTHERS = ("vermillion", "reddish purple", "yellow", "blue")


def _mix(colour: str, towards: tuple[int, int, int], amount: float) -> str:
    rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    out = [round(c * (1 - amount) + t * amount) for c, t in zip(rgb, towards, strict=True)]
    return "#" + "".join(f"{c:02x}" for c in out)


def colour_name(backend: str) -> str:
    """The Okabe-Ito colour name a backend is drawn in."""
    if backend in BUILT_IN:
        return BUILT_IN[backend]
    return OTHERS[zlib.crc32(backend.encode()) % len(OTHERS)]


@lru_cache(maxsize=256)
def backend_colours(backend: str) -> tuple[str, str]:
    """(fill, stroke) for a backend: the fill a light tint of its colour, the stroke a dark shade."""
    base = OKABE_ITO[colour_name(backend)]
    return _mix(base, (255, 255, 255), WHITE_MIX), _mix(base, (0, 0, 0), SHADE_MIX)


def all_fills() -> dict[str, str]:
    """Every fill the graph can use, by colour name (what the colour-blind check measures)."""
    return {name: _mix(hexa, (255, 255, 255), WHITE_MIX) for name, hexa in OKABE_ITO.items()}
