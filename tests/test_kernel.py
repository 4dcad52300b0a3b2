"""The magics through real Jupyter kernels (nbclient): outputs reach the front end, errors fail cells."""

from __future__ import annotations

from pathlib import Path

import nbclient
import nbformat
import pytest
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
DIGEST = (ROOT / "examples" / "research-digest.yaml").read_text(encoding="utf-8")


def run_notebook(*sources: str, allow_errors: bool = False):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", allow_errors=allow_errors, resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()
    return nb


def outputs_of(cell):
    return [o for o in cell.outputs if o.output_type in ("display_data", "execute_result")]


@pytest.mark.slow
def test_define_run_and_inspect_in_a_kernel():
    nb = run_notebook(
        "%load_ext owf_magics",
        f"%%workflow\n{DIGEST}",
        f"%%workflow --run -o res\n{DIGEST}",
        "res.outputs['notes'], res.status",
        "%workflow trace res",
        "import sys; print('IPython' in sys.modules, 'ipywidgets' in sys.modules)",
    )
    _, define, run, value, trace, mods = nb.cells
    graph, table = outputs_of(define)
    assert graph.data["text/vnd.mermaid"].startswith("flowchart TD")
    assert "Backend resolution: Research Digest" in table.data["text/html"]
    # deterministic mode is on under pytest: no run id, no durations in what is shown
    summary = outputs_of(run)[-1].data["text/plain"]
    assert summary.startswith("run … of 'Research Digest': completed (4 success); 56 tokens")
    assert outputs_of(value)[0].data["text/plain"] == "(2, 'completed')"
    assert "[5 rows]" in outputs_of(trace)[0].data["text/plain"]
    assert mods.outputs[0].text.strip() == "True False"


@pytest.mark.slow
def test_manifest_and_run_errors_fail_the_cell_for_nbclient():
    bad = "%%workflow\nworkflows:\n  - name: bad\n    steps:\n      - id: a\n        type: agent\n        agent: agent:x/nope@1.0.0\n"
    failing = (
        "%%workflow --run -o res\nworkflows:\n  - name: failing\n    steps:\n      - id: t\n"
        "        type: transform\n        language: jq\n        input: {a: 1}\n        expression: '.a | error'\n"
    )
    with pytest.raises(CellExecutionError) as info:
        run_notebook("%load_ext owf_magics", bad)
    text = str(info.value)
    assert "UNKNOWN_REFERENCE at <cell 2>:7, step 'a'" in text  # In [2]: the execution count
    assert "> 7 |         agent: agent:x/nope@1.0.0" in text
    assert "owf_magics/registry.py" not in text  # no internal traceback
    nb = run_notebook("%load_ext owf_magics", bad, failing, "%workflow --nope", allow_errors=True)
    errors = [next((o for o in c.outputs if o.output_type == "error"), None) for c in nb.cells]
    assert errors[0] is None
    assert errors[1].ename == "CellManifestError"
    assert errors[2].ename == "WorkflowRunError" and "step 't'" in "\n".join(errors[2].traceback)
    # IPython reports a UsageError on stderr, and the kernel still answers that the cell failed
    assert errors[3] is None
    assert "UsageError: unrecognized arguments: --nope" in nb.cells[3].outputs[0].text
    with pytest.raises(CellExecutionError):
        run_notebook("%load_ext owf_magics", "%workflow --nope")


@pytest.mark.slow
def test_completion_in_a_workflow_cell_is_answered_by_the_kernel():
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(ROOT))
    try:
        kc.execute_interactive("%load_ext owf_magics", timeout=60)
        kc.execute_interactive(f"%%workflow --quiet\n{DIGEST}", timeout=60)

        def complete(code: str) -> list[str]:
            msg_id = kc.complete(code, len(code))
            reply = kc.get_shell_msg(timeout=30)
            assert reply["parent_header"]["msg_id"] == msg_id
            content = reply["content"]
            return [code[: content["cursor_start"]] + m for m in content["matches"]]

        head = "%%workflow\nworkflows:\n  - name: w\n    steps:\n      - id: first\n"
        assert head + "        type: transform" in complete(head + "        type: tra")
        assert complete(head + "        agent: agent:demo/su") == [head + "        agent: agent:demo/summarizer@1.0.0"]
        assert head + '        input: "{{ steps.first' in complete(head + '        input: "{{ steps.fi')
        assert complete(head + "      - {id: b, connector: no") == [head + "      - {id: b, connector: notes"]
        assert complete("%workflow run ") == ['%workflow run "Research Digest"']
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.mark.slow
def test_live_widget_view_in_a_kernel(monkeypatch):
    """With widgets forced on, the run is drawn by ipywidgets through the kernel's comms."""
    monkeypatch.setenv("OWF_WIDGETS", "always")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext owf_magics"),
        nbformat.v4.new_code_cell(f"%%workflow --run -o res\n{DIGEST}"),
    ]
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", store_widget_state=True, resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()
    [view] = [o for o in nb.cells[1].outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    models = nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
    by_name = {}
    for model in models.values():
        by_name.setdefault(model["model_name"], []).append(model["state"])
    [progress] = by_name["IntProgressModel"]
    assert progress["value"] == progress["max"] == 4
    [tabs] = by_name["TabModel"]
    assert tabs["titles"] == ["Output", "Trace", "Usage", "Events", "Graph", "YAML"]
    assert view["data"]["application/vnd.jupyter.widget-view+json"]["model_id"] in models


@pytest.mark.slow
def test_nbrun_prints_tagged_outputs_and_writes_them_back(tmp_path, capsys):
    from owf_magics.notebook.nbrun import main

    nb = nbformat.v4.new_notebook()
    shown = nbformat.v4.new_code_cell(f"%%workflow --run -o res\n{DIGEST}")
    shown.metadata["tags"] = ["demo"]
    nb.cells = [nbformat.v4.new_code_cell("%load_ext owf_magics"), shown, nbformat.v4.new_code_cell("1 + 1")]
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    assert main([str(path), "--show", "demo", "--write"]) == 0
    out = capsys.readouterr().out
    assert "run … of 'Research Digest': completed (4 success); 56 tokens" in out
    assert "\n2\n" not in out  # untagged cells are not printed
    written = nbformat.read(path, as_version=4)
    assert written.cells[2].outputs[0]["data"]["text/plain"] == "2"
    # a failing cell makes the command fail
    nb.cells.append(nbformat.v4.new_code_cell("%workflow run nosuch"))
    nbformat.write(nb, path)
    assert main([str(path)]) == 1
