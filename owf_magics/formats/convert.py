"""``owf convert``: a file in any known format, printed as OpenWorkflow YAML."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from owf_magics.errors import DiagnosticBag
from owf_magics.formats.registry import convert_documents, detect_format, to_plain
from owf_magics.manifest.loader import parse_path

TARGETS = ("openworkflow",)


def convert_file(path: str | os.PathLike[str], to: str = "openworkflow") -> str:
    """The file's documents as OpenWorkflow YAML (multi-document when there are several).

    Raises ManifestError with every problem found (parse errors, a format's own diagnostics).
    Documents already in OpenWorkflow form are printed as they are.
    """
    if to not in TARGETS:
        raise ValueError(f"unknown target format {to!r}; expected one of: {', '.join(TARGETS)}")
    bag = DiagnosticBag()
    docs = parse_path(Path(path), bag=bag)
    bag.raise_if_errors()
    converted = convert_documents(docs, bag)
    bag.raise_if_errors()
    header = "".join(
        f"# converted from {detect_format(d.data).name} ({d.file}) by owf convert\n"  # type: ignore[union-attr]
        for d in docs
        if detect_format(d.data) is not None
    )
    body = yaml.safe_dump_all(
        [to_plain(d.data) for d in converted], sort_keys=False, allow_unicode=True, default_flow_style=False
    )
    return header + body
