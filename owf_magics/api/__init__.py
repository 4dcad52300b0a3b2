"""The facade users hold: `OpenWorkflow` (load, plan, run, resume) and `Workflow` (one loaded workflow).

It wires the layers below together: the catalog and validation, the backend registry, the run
store, queue, callbacks and telemetry, and the engine (which it hands itself as the run's `Host`).
"""

from __future__ import annotations

from owf_magics.api.inputs import input_pairs, resume_answers
from owf_magics.api.openworkflow import OpenWorkflow, Workflows, loaded_kinds
from owf_magics.api.workflow import Workflow

__all__ = ["OpenWorkflow", "Workflow", "Workflows", "input_pairs", "loaded_kinds", "resume_answers"]
