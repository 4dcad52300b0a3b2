"""`import owf_magics` stays light: no notebook, data or LangGraph libraries."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("IPython", "ipywidgets", "pandas", "graphviz", "langgraph", "langchain", "langchain_core")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_package_loads_no_heavy_modules():
    mods = _modules_after("import owf_magics")
    assert not {m for m in mods if m.split(".")[0] in HEAVY}


def test_using_the_core_loads_no_heavy_modules():
    code = (
        "from owf_magics import OpenWorkflow\n"
        "ow = OpenWorkflow()\n"
        "ow.load('workflows: [{name: w, steps: [{id: a, type: transform, expression: x}]}]')\n"
        "ow.workflow('w').plan()\n"
    )
    mods = _modules_after(code)
    assert not {m for m in mods if m.split(".")[0] in HEAVY}


def test_public_names_are_exported():
    import owf_magics

    for name in owf_magics.__all__:
        assert getattr(owf_magics, name) is not None
