"""Workflow-runner requests (the OpenAI Agents Go SDK's ``WorkflowRequest``) as OpenWorkflow."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from owf_magics.errors import DiagnosticBag
from owf_magics.formats.runner.convert import convert_request
from owf_magics.manifest.loader import SourceDocument


class RunnerFormat:
    """Root ``query`` and ``workflow.starting_agent``."""

    name = "runner"

    def detect(self, data: Mapping[str, Any]) -> bool:
        wf = data.get("workflow")
        return "query" in data and isinstance(wf, Mapping) and "starting_agent" in wf

    def convert(self, doc: SourceDocument, bag: DiagnosticBag) -> list[SourceDocument]:
        return convert_request(doc, bag)


RUNNER = RunnerFormat()
