"""The exception tree, its envelope, and secrets staying out of reprs."""

from __future__ import annotations

import pytest

from owf_magics import ExecutionContext, ManifestError, OWFError, UnavailableError
from owf_magics.errors import ERROR_CODES, Diagnostic


def test_envelope_and_codes():
    err = UnavailableError("Backend 'x' is not installed", details={"backend": "x"})
    assert err.to_dict() == {
        "status": "error",
        "code": "UNAVAILABLE",
        "message": "Backend 'x' is not installed",
        "details": {"backend": "x"},
    }
    assert isinstance(err, OWFError)
    assert set(ERROR_CODES) == {"VALIDATION", "UNAVAILABLE", "BACKEND_ERROR", "TIMEOUT", "CANCELED", "INTERNAL_ERROR"}


def test_manifest_error_lists_every_problem_sorted():
    diags = [
        Diagnostic("UNKNOWN_REFERENCE", "b", file="f.yaml", line=9, step_id="s"),
        Diagnostic("INVALID_TYPE", "a", file="f.yaml", line=3, hint="fix it"),
    ]
    err = ManifestError(diags)
    assert err.code == "VALIDATION"
    assert [d.line for d in err.diagnostics] == [3, 9]
    text = str(err)
    assert text.startswith("2 problems found")
    assert "f.yaml:3: INVALID_TYPE a Fix: fix it" in text
    assert err.to_dict()["details"]["diagnostics"][1]["step_id"] == "s"


def test_load_raises_manifest_error_with_locations(ow):
    with pytest.raises(ManifestError) as info:
        ow.load("name: w\nsteps:\n  - id: a\n    type: transfrom\n    expression: x\n", name="cell.yaml", line_offset=1)
    [d] = info.value.diagnostics
    assert (d.code, d.file, d.line, d.path) == ("INVALID_VALUE", "cell.yaml", 5, "steps[0].type")
    assert "transform" in d.hint


def test_execution_context_repr_hides_secrets():
    ctx = ExecutionContext(run_id="r1", secrets={"API_KEY": "sk-very-secret"}, environment={"HOME": "/root"})
    assert "sk-very-secret" not in repr(ctx) and "/root" not in repr(ctx)
    assert "1 hidden" in repr(ctx)
