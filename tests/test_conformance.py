"""The backend conformance suite (owf_magics.testing) run against native, langchain and a fake backend."""

from __future__ import annotations

import pytest

from owf_magics.testing import BackendConformance, FakeBackend

pytest.importorskip("langgraph")

SUITES = [BackendConformance("native"), BackendConformance("langchain"), BackendConformance("langgraph")]


@pytest.mark.parametrize(
    "check",
    [c for suite in SUITES for c in suite.checks()],
    ids=[f"{s.backend}-{c.__name__}" for s in SUITES for c in s.checks()],
)
def test_conformance(check):
    check()


def test_a_backend_that_breaks_the_contract_fails_the_suite():
    """The suite is not vacuous: a fake backend that answers from a table fails parity and telemetry."""
    suite = BackendConformance("fake", factory=lambda: FakeBackend(version="9.9.9"))
    report = suite.run_all()
    assert report["check_resolution_priority"] is None
    assert report["check_version_warnings"] is None
    assert report["check_output_parity"] is not None and "differs" in report["check_output_parity"]
    assert report["check_tool_translation"] is not None
    assert report["check_telemetry_metadata"] is not None


def test_fake_backend_records_calls_and_reports_usage(ow):
    from owf_magics.errors import BackendError

    fake = FakeBackend(
        {"summarizer": "short", "db.query": lambda data, ctx: {"rows": data["n"]}},
        usage={"summarizer": {"prompt_tokens": 3, "completion_tokens": 2}},
    )
    ow.register_backend("fake", fake)
    ow.load("""
connector: {name: db, kind: sdk}
actions: [{name: query, input: {type: object}, handler: {function: owf_magics.testing.echo}}]
---
agents: [{name: summarizer, model: {provider: echo}}]
workflows:
  - name: w
    steps:
      - {id: q, connector: db, action: query, input: {n: 4}}
      - {id: s, type: agent, agent: summarizer, input: "{{ steps.q.output }}"}
    outputs: {s: {value: "{{ steps.s.output }}"}, q: {value: "{{ steps.q.output }}"}}
""")
    r = ow.workflow("w").execute(prefer_backend="fake")
    assert r.outputs == {"s": "short", "q": {"rows": 4}}
    assert [(k, n) for k, n, _, _ in fake.calls] == [("connector", "db.query"), ("agent", "summarizer")]
    assert r.trace.total_tokens.tolist() == [0, 5] and r.trace.backend.tolist() == ["fake", "fake"]
    ow.register_backend("fake", FakeBackend(error=BackendError("down")))
    failed = ow.workflow("w").execute(prefer_backend="fake")
    assert failed.steps["q"].error.code == "BACKEND_ERROR" and failed.steps["q"].error.message == "down"
