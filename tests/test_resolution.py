"""Backend resolution: step > agent > workflow default > prefer_backend > native."""

from __future__ import annotations

import dataclasses
import sys
import textwrap

import pytest

from owf_magics import Backend, BackendInfo, ManifestError, UnavailableError

MANIFESTS = """
agents:
  - name: lc
    model: {provider: echo}
    execution: {backend: langchain, runtime: python}
  - name: plain
    model: {provider: echo}
workflows:
  - name: Resolve
    steps:
      - id: by_step
        type: agent
        agent: lc
        execution: {backend: native}
      - id: by_agent
        type: agent
        agent: lc
      - id: by_default
        type: agent
        agent: plain
      - id: logic
        type: transform
        expression: "{{ steps.by_default.output }}"
"""


def test_priority_without_workflow_default(ow):
    ow.load(MANIFESTS)
    plan = ow.workflow("Resolve").plan()
    assert (plan["by_step"].backend, plan["by_step"].source) == ("native", "step")
    assert (plan["by_agent"].backend, plan["by_agent"].source) == ("langchain", "agent")
    assert (plan["by_default"].backend, plan["by_default"].source) == ("native", "default")
    assert plan["by_agent"].runtime == "python"
    assert list(plan) == ["by_step", "by_agent", "by_default", "logic"]


def test_prefer_backend_and_workflow_default(ow):
    ow.load(MANIFESTS)
    plan = ow.workflow("Resolve").plan(prefer_backend="langgraph")
    assert (plan["by_default"].backend, plan["by_default"].source) == ("langchain", "prefer")
    assert plan["by_default"].requested == "langchain"
    assert plan["by_step"].source == "step"
    ow.load(MANIFESTS.replace("  - name: Resolve\n", "  - name: Resolve\n    execution: {backend: native}\n"))
    plan = ow.workflow("Resolve").plan(prefer_backend="langchain")
    assert (plan["by_default"].backend, plan["by_default"].source) == ("native", "workflow")
    assert plan["by_agent"].source == "agent"


def test_plan_is_frozen(ow):
    ow.load(MANIFESTS)
    plan = ow.workflow("Resolve").plan()
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan["by_step"].backend = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        plan.entries["x"] = plan["by_step"]  # type: ignore[index]


def test_unknown_prefer_backend_is_unavailable_with_suggestion(ow):
    ow.load(MANIFESTS)
    with pytest.raises(UnavailableError) as err:
        ow.workflow("Resolve").plan(prefer_backend="langchian")
    assert err.value.code == "UNAVAILABLE"
    assert "langchain" in err.value.details["suggestion"]


def test_unavailable_backend_is_reported_by_plan(ow, monkeypatch):
    from owf_magics.runtime import registry

    real = registry._missing  # langgraph is installed here: make it look missing
    monkeypatch.setattr(registry, "_missing", lambda mods: ("langgraph",) if "langgraph" in mods else real(mods))
    ow.load(MANIFESTS)
    plan = ow.workflow("Resolve").plan()
    assert not plan["by_agent"].available
    assert plan["by_agent"].adapter_version == "-"
    with pytest.raises(UnavailableError) as err:
        plan.check_available()
    assert err.value.details["step_id"] == "by_agent"


class EchoBackend(Backend):
    def invoke(self, manifest, input, context):
        return {"status": "success", "output": input}

    def get_info(self):
        return BackendInfo("mine", "9.9.9", True, "test backend", "python", ("agent",))


def test_registered_backend_resolves_and_is_available(ow):
    ow.register_backend("mine", EchoBackend())
    ow.load(MANIFESTS.replace("execution: {backend: native}", "execution: {backend: mine}"))
    plan = ow.workflow("Resolve").plan()
    assert (plan["by_step"].backend, plan["by_step"].adapter_version, plan["by_step"].available) == (
        "mine",
        "9.9.9",
        True,
    )
    assert any(i.name == "mine" for i in ow.backends())


def test_malformed_backend_registration_names_the_fix(ow):
    with pytest.raises(TypeError, match="instance, not the class"):
        ow.register_backend("x", EchoBackend)
    with pytest.raises(TypeError, match="invoke"):
        ow.register_backend("x", object())
    with pytest.raises(TypeError, match="lower-case"):
        ow.register_backend("Bad Name", EchoBackend())


def test_unknown_backend_in_manifest_is_invalid_backend(ow):
    with pytest.raises(ManifestError) as err:
        ow.load(MANIFESTS.replace("execution: {backend: native}", "execution: {backend: natve}"))
    [d] = err.value.diagnostics
    assert d.code == "INVALID_BACKEND" and d.step_id == "by_step" and "native" in d.hint


def test_entry_point_backend(tmp_path, monkeypatch, ow):
    from owf_magics.runtime import registry

    pkg = tmp_path / "thirdparty_backend.py"
    pkg.write_text(
        textwrap.dedent("""
        from owf_magics import Backend, BackendInfo
        class ThirdParty(Backend):
            def invoke(self, manifest, input, context):
                return {"status": "success", "output": {"third": input}}
            def get_info(self):
                return BackendInfo("thirdparty", "0.0.1", True, "from an entry point")
    """)
    )
    dist = tmp_path / "thirdparty_backend-0.0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-backend\nVersion: 0.0.1\n")
    (dist / "entry_points.txt").write_text("[owf_magics.backends]\nthirdparty = thirdparty_backend:ThirdParty\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.entry_point_targets.cache_clear()
    try:
        ow.load("name: w\nexecution: {backend: thirdparty}\nsteps: [{id: a, type: transform, expression: x}]")
        plan = ow.workflow("w").plan()
        assert (plan["a"].backend, plan["a"].adapter_version, plan["a"].available) == ("thirdparty", "0.0.1", True)
        assert ow.backend("thirdparty").invoke({}, {"x": 1}, None)["output"] == {"third": {"x": 1}}
    finally:
        registry.entry_point_targets.cache_clear()
        sys.modules.pop("thirdparty_backend", None)


def test_compatibility_range_warns_with_both_versions(ow):
    from importlib.metadata import version

    installed = version("pydantic")
    ow.load("""
type: agent
name: picky
model: {provider: echo}
execution:
  backend: native
  compatibility: {pydantic: "<1.0.0", jinja2: ">=3.0"}
""")
    [w] = [w for w in ow.warnings if w.code == "VERSION_MISMATCH"]
    assert installed in w.message and "<1.0.0" in w.message and w.severity == "warning"


def test_a_reserved_backend_name_says_to_register_one(ow):
    ow.load("name: w\nsteps: [{id: a, type: transform, expression: x}]")
    with pytest.raises(UnavailableError) as err:
        ow.workflow("w").execute(prefer_backend="custom")
    assert "ow.register_backend('custom'" in err.value.details["suggestion"]
