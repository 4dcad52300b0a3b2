"""OpenFlow flows (the protocol of seed 003; semantics as its TypeScript SDK runs them) loaded and
run as OpenWorkflow: `OPENFLOW` detects a flow by its shape, validates it with the protocol's
codes and converts it (see `convert`). docs/formats.md says what maps to what."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from owf_magics.errors import DiagnosticBag
from owf_magics.formats.openflow.convert import FlowConverter
from owf_magics.formats.openflow.validate import validate_flow
from owf_magics.manifest.loader import SourceDocument


class OpenFlowFormat:
    """``nodes`` at the root with ``variables``, ``input`` or ``output``."""

    name = "openflow"

    def detect(self, data: Mapping[str, Any]) -> bool:
        return "nodes" in data and any(k in data for k in ("variables", "input", "output")) and "workflows" not in data

    def convert(self, doc: SourceDocument, bag: DiagnosticBag) -> list[SourceDocument]:
        local = DiagnosticBag()
        validate_flow(doc.data, doc.file, local)
        bag.extend([*local.errors, *local.warnings])
        if local.errors:
            return []
        converted = FlowConverter(doc.data).document()
        return [SourceDocument(converted, doc.file, doc.index, doc.line)]


OPENFLOW = OpenFlowFormat()

__all__ = ["OPENFLOW", "OpenFlowFormat"]
