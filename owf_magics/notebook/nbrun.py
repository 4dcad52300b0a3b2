"""Run a notebook headlessly through a real kernel (nbclient), for ``make demo`` and ``make golden``.

``python -m owf_magics.notebook.nbrun NOTEBOOK [--write] [--show TAG ...]`` executes every cell, fails on
the first unexpected error, prints the plain-text outputs of the cells tagged TAG, and with
``--write`` stores the outputs back into the file (deterministic mode on, so they compare).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


def execute(path: Path, *, deterministic: bool = True, timeout: int = 300) -> Any:
    """Execute the notebook at `path` in a fresh kernel; returns the executed notebook.

    Raises:
        nbclient.exceptions.CellExecutionError: A cell failed that is not tagged ``raises-exception``.
    """
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    saved = os.environ.get("OWF_DETERMINISTIC"), os.environ.get("OWF_WIDGETS")
    os.environ["OWF_DETERMINISTIC"] = "1" if deterministic else "0"
    os.environ["OWF_WIDGETS"] = "never"  # nobody watches a headless run: show results statically
    try:
        client = nbclient.NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        )
        client.execute()
    finally:
        for name, value in zip(("OWF_DETERMINISTIC", "OWF_WIDGETS"), saved, strict=True):
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return nb


def tagged_text(nb: Any, tag: str) -> list[str]:
    """The plain-text outputs of every cell carrying `tag`, in order."""
    out: list[str] = []
    for cell in nb.cells:
        if tag not in cell.get("metadata", {}).get("tags", []):
            continue
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                out.append(str(o.get("text", "")))
            elif "data" in o and "text/plain" in o["data"]:
                out.append(str(o["data"]["text/plain"]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m owf_magics.notebook.nbrun", description=__doc__)
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--write", action="store_true", help="store the outputs back into the notebook")
    parser.add_argument("--show", action="append", default=[], metavar="TAG", help="print outputs of cells tagged TAG")
    parser.add_argument("--live-values", action="store_true", help="show run ids and timings (not deterministic)")
    args = parser.parse_args(argv)
    from nbclient.exceptions import CellExecutionError

    try:
        nb = execute(args.notebook, deterministic=not args.live_values)
    except CellExecutionError as exc:
        print(f"{args.notebook}: a cell failed\n{exc}", file=sys.stderr)
        return 1
    for tag in args.show:
        for text in tagged_text(nb, tag):
            print(text.rstrip())
            print()
    if args.write:
        import nbformat

        for cell in nb.cells:  # keep the files quiet in version control
            cell.get("metadata", {}).pop("execution", None)
        nbformat.write(nb, args.notebook)
        print(f"wrote {args.notebook}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
