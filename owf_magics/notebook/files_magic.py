"""Files and export in the magics: ``%%workflow --file``, ``%workflow load`` and ``show --format``.

``%%workflow --file flow.yaml`` writes the cell's YAML to that file and loads it *from* that name,
so diagnostics say ``flow.yaml:3`` and quote the file. ``%workflow load PATH`` loads a manifest
file or a directory of them. ``%workflow show NAME --format mermaid|dot|svg|png|text`` shows the
graph in one form (``-o VAR`` binds the text or bytes). ``--xray [N]`` opens sub-workflows and
``--reasons`` writes why each backend was chosen in the step labels, in cells and ``show``.
Each function takes the `WorkflowMagics` (typed Any: importing it here would be a cycle).
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.display import SVG, Image, display

from owf_magics.errors import ManifestError, OWFError, did_you_mean
from owf_magics.notebook.errors import CellManifestError, read_source
from owf_magics.notebook.views.graphview import GraphView, graph_options
from owf_magics.notebook.views.scene import warm_subplans

if TYPE_CHECKING:
    from owf_magics.plan.resolution import Plan

FORMATS = ("mermaid", "dot", "svg", "png", "text")
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def xray_value(args: Any) -> bool | int | None:
    """``--xray`` → True (every level), ``--xray 2`` → 2, absent → None (the default)."""
    value = getattr(args, "xray", None)
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in ("all", "true", "yes"):
        return True
    if text.isdigit():
        return int(text)
    raise UsageError(f"--xray takes a depth (a number) or nothing, got {value!r}; put the workflow NAME before --xray")


def graph_settings(args: Any) -> dict[str, Any]:
    """The graph options a magic line asks for (for `graph_options`)."""
    return {"xray": xray_value(args), "show_reasons": True if getattr(args, "reasons", False) else None}


def graph_scope(args: Any) -> AbstractContextManager[None]:
    """While one magic line runs, graph views (static and live) follow its --xray and --reasons."""
    return graph_options(**graph_settings(args))


def write_cell_file(path_text: str, cell: str) -> str:
    """Write a cell's YAML to `path_text` (folders created); the name diagnostics will use."""
    path = Path(os.path.expanduser(path_text))
    if path.suffix.lower() not in MANIFEST_SUFFIXES:
        raise UsageError(f"--file {path_text}: name a .yaml, .yml or .json file, so %workflow load reads it back")
    if path.is_dir():
        raise UsageError(f"--file {path_text} is a directory; name a file in it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(cell if cell.endswith("\n") else cell + "\n", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--file {path_text}: cannot write it ({exc.strerror or exc})") from None
    return os.fspath(path)


def load_line(magics: Any, rest: list[str]) -> None:
    """``%workflow load PATH``: load a manifest file, or every .yaml/.yml/.json file in a directory."""
    if len(rest) != 1:
        raise UsageError("%workflow load takes one PATH: a manifest file or a directory of them")
    path = Path(os.path.expanduser(rest[0]))
    if not path.exists():
        siblings = [p.name for p in path.parent.glob("*")] if path.parent.is_dir() else []
        best = did_you_mean(path.name, siblings)
        hint = f" Did you mean '{path.parent / best}'?" if best else ""
        raise UsageError(f"%workflow load: {rest[0]} does not exist.{hint}")
    if path.is_dir() and not any(p.suffix.lower() in MANIFEST_SUFFIXES for p in path.rglob("*")):
        raise UsageError(f"%workflow load: {rest[0]} holds no .yaml, .yml or .json file")
    try:
        items = magics.ow.load(path)
    except ManifestError as exc:
        raise CellManifestError(exc, read_source(magics.sources)) from None
    except OWFError as exc:
        raise UsageError(f"{exc.code}: {exc.message}") from None
    magics._replace(f"file:{path.resolve()}", items)  # loading it again replaces what it defined
    workflows = [i for i in items if i.kind == "workflow"]
    if workflows:
        from owf_magics.api import Workflow

        magics.last_workflow = Workflow(magics.ow, workflows[0])
    if not magics.settings.quiet:
        counts: dict[str, int] = {}
        for i in items:
            counts[i.kind] = counts.get(i.kind, 0) + 1
        what = ", ".join(f"{n} {k}{'s' if n != 1 else ''}" for k, n in counts.items()) or "nothing"
        names = f": {', '.join(i.name for i in workflows)}" if workflows else ""
        print(f"loaded {what} from {rest[0]}{names}")


def show_format(magics: Any, plan: Plan, fmt: str, args: Any) -> None:
    """``%workflow show NAME --format F``: the graph in one form, displayed (and bound with -o VAR)."""
    if fmt not in FORMATS:
        best = did_you_mean(fmt, FORMATS)
        hint = f" Did you mean '{best}'?" if best else ""
        raise UsageError(f"--format takes {', '.join(FORMATS)}; got '{fmt}'.{hint}")
    opts = graph_settings(args)
    view = GraphView(plan, direction=magics.settings.direction, xray=opts["xray"], show_reasons=opts["show_reasons"])
    try:
        data = view.render(fmt)
    except OWFError as exc:
        raise UsageError(f"{exc.code}: {exc.message}") from None
    if getattr(args, "output", None):
        magics._ns()[args.output] = data
    if fmt == "png":
        assert isinstance(data, bytes)
        display(Image(data=data, format="png"))
    elif fmt == "svg":
        display(SVG(data=data))
    else:
        print(data, end="")


def warm(magics: Any, plan: Plan) -> None:
    """Plan the sub-workflows of `plan`, so every graph view of it can draw them."""
    warm_subplans(magics.ow, plan)
