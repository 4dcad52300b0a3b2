"""Static output everywhere a widget cannot live: notebooks executed headlessly (nbclient) keep the
run's summary, graph with statuses and trace as HTML and text beside the live widget."""

from __future__ import annotations

import re
from pathlib import Path

import nbclient
import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
DIGEST = (ROOT / "examples" / "research-digest.yaml").read_text(encoding="utf-8")
WIDGET = "application/vnd.jupyter.widget-view+json"
WIDGET_REPR = re.compile(r"^(VBox|HBox|Tab|HTML|Output|Label|IntProgress)\(")


def execute(nb: nbformat.NotebookNode, cwd: Path) -> nbformat.NotebookNode:
    client = nbclient.NotebookClient(
        nb, timeout=180, kernel_name="python3", store_widget_state=True, resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    return nb


def shown(cell: nbformat.NotebookNode) -> list[dict]:
    return [o["data"] for o in cell.get("outputs", []) if o["output_type"] in ("display_data", "execute_result")]


def unreadable(nb: nbformat.NotebookNode) -> list[str]:
    """Outputs a renderer without widgets could not read: widget-only, or a widget's repr as text."""
    problems = []
    for i, cell in enumerate(nb.cells):
        for data in shown(cell):
            plain = str(data.get("text/plain", ""))
            if WIDGET in data and not ({"text/html", "image/svg+xml"} & set(data)):
                problems.append(f"cell {i}: a widget with no static view")
            if not plain or WIDGET_REPR.match(plain):
                problems.append(f"cell {i}: text/plain is {plain[:40]!r}")
    return problems


@pytest.mark.slow
def test_a_run_cell_leaves_summary_graph_and_trace_beside_the_widget(monkeypatch):
    monkeypatch.setenv("OWF_WIDGETS", "always")  # the live widget, as in JupyterLab
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext owf_magics"),
        nbformat.v4.new_code_cell(f"%%workflow --run -o res\n{DIGEST}"),
        nbformat.v4.new_code_cell("import pickle\ntype(pickle.loads(pickle.dumps(res.trace))).__name__"),
        nbformat.v4.new_code_cell("t = res.trace\nt"),
    ]
    execute(nb, ROOT)
    [data] = shown(nb.cells[1])
    assert WIDGET in data  # the live view is still there, for a front end that draws widgets
    plain, page = data["text/plain"], data["text/html"]
    assert plain.startswith("run … of 'Research Digest': completed (4 success)")
    assert "graph:" in plain and "trace:" in plain and "every row" not in plain  # 5 rows: all shown
    assert "owf-run" in page and "Research Digest" in page
    assert 'class="owf-graph"' in page and ("<svg" in page or "owf-mermaid" in page)
    assert "#16a34a" in page  # the steps' success colour on the graph
    assert 'class="owf-frame"' in page and "summarize" in page
    # the widget's state is stored too (JupyterLab redraws it from the notebook)
    models = nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
    assert data[WIDGET]["model_id"] in models
    assert unreadable(nb) == []
    # the trace is a plain DataFrame in the kernel too, shown with the run once and its own name
    assert shown(nb.cells[2])[0]["text/plain"] == "'DataFrame'"
    [trace] = shown(nb.cells[3])
    assert trace["text/plain"].startswith("run …\n") and trace["text/plain"].endswith("[5 rows]")
    assert "<caption>run …</caption>" in trace["text/html"]


NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_leaves_readable_static_outputs(path, monkeypatch, tmp_path):
    monkeypatch.setenv("OWF_WIDGETS", "always")  # the hardest case: every run drawn live
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    execute(nb, path.parent)
    assert unreadable(nb) == []
