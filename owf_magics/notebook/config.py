"""Notebook settings: the ``OWF`` traitlets configurable and ``[tool.owf_magics]`` in pyproject.toml.

``%config OWF.deterministic = True`` and the pyproject table set the same traits; every change is
copied into the display settings the views read. Imported only by the magics (it needs traitlets).
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path
from typing import Any

from traitlets import Bool, Enum, Int, Unicode, default, observe
from traitlets.config import Configurable

from owf_magics.errors import did_you_mean
from owf_magics.notebook.views.settings import SETTINGS, deterministic_from_env

SHOW_CHOICES = ("graph", "resolution", "yaml")


class OWF(Configurable):
    """Settings of the ``%%workflow`` magics (``%config OWF`` lists them)."""

    deterministic = Bool(
        help="Hide wall-clock values and run ids in what is displayed (on by default under CI and pytest).",
    ).tag(config=True)
    prefer_backend = Unicode(
        None, allow_none=True, help="The backend for steps that name none (like --prefer-backend)."
    ).tag(config=True)
    state = Unicode(
        None,
        allow_none=True,
        help="Where the cells' registry stores runs: a SQLite path, ':memory:', or 'none' "
        "(default: .owf/runs.db under the working directory). Read when the first cell runs.",
    ).tag(config=True)
    show = Unicode("graph,resolution", help="What a %%workflow cell shows: any of graph, resolution, yaml.").tag(
        config=True
    )
    max_rows = Int(20, help="Rows a trace or usage table shows before it is truncated.").tag(config=True)
    widgets = Enum(
        ("auto", "always", "never"),
        "auto",
        help="Live ipywidgets view of runs: auto (in a widget front end, not in deterministic mode), always, never.",
    ).tag(config=True)
    svg = Bool(True, help="Draw graphs as SVG through graphviz's dot when it is installed.").tag(config=True)
    direction = Enum(
        ("auto", "TD", "LR"), "auto", help="Graph direction: auto (LR when tall and narrow), TD or LR."
    ).tag(config=True)
    quiet = Bool(False, help="Show nothing after a %%workflow cell unless asked (like --quiet).").tag(config=True)

    @default("deterministic")
    def _deterministic_default(self) -> bool:
        return deterministic_from_env()

    @default("widgets")
    def _widgets_default(self) -> str:
        value = os.environ.get("OWF_WIDGETS", "auto")
        return value if value in ("auto", "always", "never") else "auto"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sync()

    @observe("deterministic", "max_rows", "svg")
    def _changed(self, change: Any) -> None:
        self._sync()

    def _sync(self) -> None:
        SETTINGS.deterministic = bool(self.deterministic)
        SETTINGS.max_rows = int(self.max_rows)
        SETTINGS.svg = bool(self.svg)

    def show_list(self, value: str | None = None) -> list[str]:
        """Parse a ``graph,resolution,yaml`` list (an empty string shows nothing)."""
        text = self.show if value is None else value
        return parse_show(text)


def parse_show(text: str) -> list[str]:
    """``graph,resolution`` → ``["graph", "resolution"]``; unknown words raise ValueError with a suggestion."""
    out = []
    for word in (w.strip() for w in text.split(",")):
        if not word:
            continue
        if word not in SHOW_CHOICES:
            best = did_you_mean(word, SHOW_CHOICES)
            hint = f" Did you mean '{best}'?" if best else ""
            raise ValueError(f"--show takes {', '.join(SHOW_CHOICES)}; got '{word}'.{hint}")
        out.append(word)
    return out


def find_pyproject(start: Path | None = None) -> Path | None:
    """The nearest pyproject.toml at or above `start` (the working directory by default)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def pyproject_settings(path: Path | None) -> tuple[dict[str, Any], list[str]]:
    """The ``[tool.owf_magics]`` table of a pyproject.toml, and a message per unknown key.

    Returns:
        (known settings, problems) — problems name the key, the file and the closest known key.
    """
    if path is None:
        return {}, []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        return {}, [f"could not read {path}: {exc}"]
    table = data.get("tool", {}).get("owf_magics", {})
    if not isinstance(table, dict):
        return {}, [f"[tool.owf_magics] in {path} is not a table"]
    known = set(OWF.class_trait_names(config=True))
    out: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in table.items():
        name = key.replace("-", "_")
        if name in known:
            out[name] = value
            continue
        best = did_you_mean(name, sorted(known))
        hint = f" Did you mean '{best}'?" if best else f" Known settings: {', '.join(sorted(known))}."
        problems.append(f"unknown setting '{key}' in [tool.owf_magics] of {path}.{hint}")
    return out, problems


def apply_pyproject(owf: OWF, path: Path | None) -> list[str]:
    """Set `owf`'s traits from pyproject.toml; prints and returns the problems found."""
    values, problems = pyproject_settings(path)
    for key, value in values.items():
        try:
            setattr(owf, key, value)
        except Exception as exc:  # traitlets raises TraitError with the expected type
            problems.append(f"bad value for '{key}' in [tool.owf_magics] of {path}: {exc}")
    for p in problems:
        print(f"owf_magics: {p}", file=sys.stderr)
    return problems
