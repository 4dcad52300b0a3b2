"""AgentFlow Core `WorkflowSpec` documents, recognised by their root ``nodes``, ``edges`` and
``start_node``, converted to an OpenWorkflow workflow (see `build`) after `spec.check`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from owf_magics.errors import DiagnosticBag
from owf_magics.formats.agentflow.build import GRAPH_STATE, build
from owf_magics.formats.agentflow.spec import check
from owf_magics.manifest.loader import LMap, SourceDocument

__all__ = ["AGENTFLOW", "GRAPH_STATE", "AgentFlowFormat"]


class AgentFlowFormat:
    """The AgentFlow Core WorkflowSpec format (registered as ``agentflow``)."""

    name = "agentflow"

    def detect(self, data: Mapping[str, Any]) -> bool:
        return isinstance(data.get("nodes"), list) and "edges" in data and "start_node" in data

    def convert(self, doc: SourceDocument, bag: DiagnosticBag) -> list[SourceDocument]:
        root = doc.data if isinstance(doc.data, LMap) else _lmap(doc.data)
        errors = len(bag.errors)
        spec = check(root, doc.file, bag)
        if len(bag.errors) > errors:
            return []
        return [SourceDocument(build(spec, root), doc.file, doc.index, doc.line)]


def _lmap(value: Any) -> Any:
    """Already-parsed data (a dict from Python) as position-less LMap/LSeq."""
    from owf_magics.manifest.loader import LSeq

    if isinstance(value, Mapping):
        return LMap({k: _lmap(v) for k, v in value.items()})
    if isinstance(value, list):
        return LSeq([_lmap(v) for v in value])
    return value


AGENTFLOW = AgentFlowFormat()
