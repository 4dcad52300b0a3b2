"""Workflow-runner requests: validator.go's checks, every problem at once, each at its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from owf_magics import ManifestError, OpenWorkflow

CORPUS = Path(__file__).parent / "malformed_runner"
M, T, V = "MISSING_REQUIRED_FIELD", "INVALID_TYPE", "INVALID_VALUE"
R, D = "UNKNOWN_REFERENCE", "DUPLICATE_MANIFEST"

EXPECTED: dict[str, list[tuple[str, int]]] = {
    "empty_query.json": [(M, 2)],
    "missing_session_id.json": [(M, 3)],
    "missing_user_id.json": [(M, 3)],
    "missing_account_id.json": [(M, 3)],
    "negative_history.json": [(V, 3)],
    "negative_turns.json": [(V, 3)],
    "callback_string_not_url.json": [(V, 4)],
    "callback_http_no_target.json": [(M, 4)],
    "callback_bad_target.json": [(V, 4)],
    "callback_bad_mode.json": [(V, 4)],
    "model_without_model.json": [(M, 9)],
    "tool_without_type.json": [(M, 9)],
    "mcp_without_address.json": [(M, 9)],
    "input_guardrail_without_name.json": [(M, 9)],
    "output_guardrail_without_name.json": [(M, 9)],
    "duplicate_agent.json": [(D, 10)],
    "unknown_starting_agent.json": [(R, 7)],
    "unknown_handoff.json": [(R, 9)],
    "unknown_agent_tool.json": [(R, 9)],
    "no_agents.json": [(M, 8)],
    "agent_without_name.json": [(R, 7), (M, 9)],
    "output_type_without_schema.json": [(M, 9)],
    "many_problems.json": [(M, 2), (M, 3), (M, 3), (M, 3), (V, 3), (M, 4), (M, 9), (R, 9)],
    "no_session.yaml": [(M, 1)],
    "wrong_types.yaml": [(T, 4), (T, 12)],
}


def test_the_corpus_is_complete() -> None:
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(EXPECTED)
    assert len(EXPECTED) >= 20


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_malformed_request(name: str) -> None:
    ow = OpenWorkflow(state=":memory:")
    with pytest.raises(ManifestError) as info:
        ow.load(CORPUS / name)
    got = sorted((d.code, d.line) for d in info.value.diagnostics)
    assert got == sorted(EXPECTED[name])
    assert all(d.file and d.file.endswith(name) and d.hint for d in info.value.diagnostics)


def test_stdout_verbose_needs_no_target() -> None:
    """validator.go refuses it (only "stdout" skips the URL check); we accept it (docs/decisions.md)."""
    text = (CORPUS / "unknown_handoff.json").read_text()
    text = text.replace('"handoff": ["ghost"]', '"handoff": []').replace('"stdout"', '"stdout_verbose"')
    ow = OpenWorkflow(state=":memory:")
    ow.load(text)
    assert ow.workflow("wf") is not None
