"""The package's shape: the public names are pinned, layers talk through what they export, modules stay small.

The layer contracts themselves are import-linter's (`.importlinter`, run by `make test`); these
tests check what it does not: underscore names reached across modules, module size, the engine
interface, and that the engine runs a workflow without importing the facade or the notebook.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import owf_magics

PACKAGE = Path(owf_magics.__file__).parent
MAX_LINES = 800

#: The public surface (../shared/CONTRACT.md): a change here is a change of the contract.
PUBLIC = [
    "Backend",
    "BackendError",
    "BackendInfo",
    "CanceledError",
    "Diagnostic",
    "ExecutionContext",
    "ManifestError",
    "OWFError",
    "OpenWorkflow",
    "Plan",
    "PlanEntry",
    "StepTimeoutError",
    "UnavailableError",
    "Workflow",
    "Workflows",
    "__version__",
    "inline",
    "load_ipython_extension",
    "unload_ipython_extension",
]


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_public_names_are_pinned():
    assert sorted(owf_magics.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(owf_magics, name) is not None, name


def test_no_module_imports_an_underscore_name_of_another():
    reach_ins = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("owf_magics"):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        reach_ins.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.module}.{alias.name}")
    assert not reach_ins, "import what the module exports instead:\n" + "\n".join(reach_ins)


def test_no_module_is_over_the_size_limit():
    big = [
        f"{p.relative_to(PACKAGE)} has {n} lines"
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    ]
    assert not big, "split by job:\n" + "\n".join(big)


def test_every_layer_folder_is_a_package_with_a_docstring():
    for folder in (
        "manifest",
        "plan",
        "runtime",
        "connectors",
        "agents",
        "engine",
        "runs",
        "backends",
        "api",
        "notebook",
    ):
        init = PACKAGE / folder / "__init__.py"
        assert init.is_file(), folder
        assert ast.get_docstring(ast.parse(init.read_text())), f"{folder}/__init__.py says what the room holds"


def test_the_engine_interface_is_exported():
    from owf_magics import engine

    for name in engine.__all__:
        assert not name.startswith("_")
        assert getattr(engine, name) is not None, name


def test_a_run_imports_neither_the_notebook_layer_nor_heavy_libraries():
    """The engine runs without the notebook layer; results reach the views only when displayed."""
    code = (
        "from owf_magics import OpenWorkflow\n"
        "ow = OpenWorkflow(state=':memory:')\n"
        "ow.load({'workflows': [{'name': 'w', 'steps': [{'id': 'a', 'type': 'transform', 'expression': '{{ 1 + 1 }}'}],"
        " 'outputs': {'x': {'value': '{{ steps.a.output.result }}'}}}]})\n"
        "r = ow.workflow('w').execute()\n"
        "assert r.status == 'completed' and str(r.outputs['x']) == '2', (r.status, r.outputs)\n"
        "import sys, json; print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    mods = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert not {m for m in mods if m.startswith("owf_magics.notebook")}
    assert not {m for m in mods if m.split(".")[0] in ("IPython", "ipywidgets", "graphviz", "langgraph", "langchain")}


def test_results_display_through_the_notebook_renderers():
    """The display seam: a RunResult's rich display comes from owf_magics.notebook.views.hooks."""
    ow = owf_magics.OpenWorkflow(state=":memory:")
    ow.load("workflows: [{name: w, steps: [{id: a, type: transform, expression: x}]}]")
    wf = ow.workflow("w")
    result = wf.execute()
    bundle = result._repr_mimebundle_()
    assert "text/html" in bundle and "a" in bundle["text/plain"]
    plan_bundle = wf.plan()._repr_mimebundle_()
    assert "text/html" in plan_bundle
    assert "owf_magics.notebook.views.hooks" in sys.modules
