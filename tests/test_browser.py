"""A real browser: JupyterLab on 127.0.0.1, the tour opened in headless Chromium and run cell by cell.

Chromium is Debian's package (``scripts/ensure-system-deps.sh`` installs it when it can), driven by
Playwright's Python package pointed at that executable: nothing is downloaded. The test skips, saying
why, where Chromium, Playwright or JupyterLab is missing. The screenshot is kept in
``test-artifacts/browser-tour.png`` (or under ``$OWF_ARTIFACTS``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("OWF_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.slow


def _requirements() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium, or set OWF_CHROMIUM)"
    for module in ("playwright", "jupyterlab"):
        try:
            __import__(module)
        except ImportError:
            return f"the Python package '{module}' is not installed (pip install -e '.[dev]')"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def lab(tmp_path):
    why = _requirements()
    if why:
        pytest.skip(why)
    root = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", root)
    port, token = _free_port(), secrets.token_hex(16)
    # the live widget view is what a person sees: not deterministic mode; everything private to tmp
    env = dict(os.environ, OWF_DETERMINISTIC="0")
    for var, sub in (
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("JUPYTERLAB_SETTINGS_DIR", "settings"),
        ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
    ):
        env[var] = str(tmp_path / sub)
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        # no network: no update checks, no news, no extension manager lookups
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.news_url=",
        "--LabApp.extension_manager=readonly",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    # render every cell (no lazy windowing), and never ask about fetching news
    settings = tmp_path / "settings"
    for ext, name, body in (
        ("@jupyterlab/notebook-extension", "tracker", '{"windowingMode": "none"}'),
        ("@jupyterlab/apputils-extension", "notification", '{"fetchNews": "false"}'),
    ):
        (settings / ext).mkdir(parents=True, exist_ok=True)
        (settings / ext / f"{name}.jupyterlab-settings").write_text(body)
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start:\n{(tmp_path / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.3)
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_the_tour_runs_in_jupyterlab_in_chromium(lab):
    from playwright.sync_api import sync_playwright

    base, token = lab
    artifacts = Path(os.environ.get("OWF_ARTIFACTS", ROOT / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/lab/tree/01-tour.ipynb?token={token}")
            page.wait_for_selector(".jp-Notebook", timeout=60_000)
            with contextlib.suppress(Exception):  # JupyterLab may ask which kernel to start; no dialog is fine
                page.click(".jp-Dialog button.jp-mod-accept", timeout=8_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
            page.click('.lm-MenuBar-itemLabel >> text="Run"', timeout=10_000)
            page.click('.lm-Menu-itemLabel >> text="Run All Cells"', timeout=10_000)
            # the last cell's trace table means every cell before it ran without an error
            page.wait_for_selector("table.owf-frame", state="attached", timeout=120_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
            page.screenshot(path=str(artifacts / "browser-tour.png"), full_page=True)
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            assert errors.count() == 0, errors.first.text_content()
            # the graph: drawn (graphviz SVG inline, or JupyterLab's mermaid), with the step names in it
            graph = page.locator(".jp-OutputArea-output svg").filter(has_text="summarize")
            assert graph.count() >= 1
            resolution = page.locator("table.owf-resolution")
            assert resolution.count() >= 1
            assert "default" in (resolution.first.text_content() or "")  # the source, in the contract's word
            trace = page.locator("table.owf-frame").filter(has_text="count_words")
            assert trace.count() >= 1
            # the live run view ended as tabs
            tabs = page.locator(".lm-TabBar-tabLabel").all_text_contents()
            for title in ("Output", "Trace", "Usage", "Events", "Graph", "YAML"):
                assert title in tabs
            # pictures of the parts a person looks at (kept as artifacts, never compared)
            for name, locator in (("graph", graph.first), ("run", page.locator(".widget-tab").first)):
                locator.scroll_into_view_if_needed(timeout=10_000)
                page.wait_for_timeout(500)
                page.screenshot(path=str(artifacts / f"browser-tour-{name}.png"))
        finally:
            browser.close()
    assert (artifacts / "browser-tour.png").stat().st_size > 10_000


NESTED = """workflows:
  - name: child
    inputs: {v: {type: number}}
    steps:
      - {id: double, type: transform, expression: "{{ inputs.v * 2 }}"}
  - name: parent
    steps:
      - {id: call, type: workflow, workflow: child, input: {v: 21}}
"""


def _fifty_step_notebook(path: Path) -> None:
    """A notebook that defines and runs a 50-step chain, then shows its graph on its own."""
    import nbformat

    steps = "\n".join(
        f"      - {{id: step_{i:02d}, type: transform, expression: 'value {i}'"
        + (f", needs: [step_{i - 1:02d}]}}" if i else "}")
        for i in range(50)
    )
    cells = [
        nbformat.v4.new_code_cell("%load_ext owf_magics"),
        nbformat.v4.new_code_cell(f"%%workflow fifty --run -o res\nworkflows:\n  - name: fifty\n    steps:\n{steps}\n"),
        nbformat.v4.new_code_cell("%workflow show fifty --show graph"),
        nbformat.v4.new_code_cell(f"%%workflow parent --quiet\n{NESTED}"),
        # JupyterLab's own mermaid renderer draws the mermaid form: sub-workflow group, tooltips
        nbformat.v4.new_code_cell(
            "from IPython.display import display\n"
            "from owf_magics.notebook.magics import registry\n"
            "from owf_magics.notebook.views import GraphView\n"
            "view = GraphView(registry().workflow('parent').plan(), xray=True, show_reasons=True)\n"
            "display({'text/vnd.mermaid': view.mermaid()}, raw=True)"
        ),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.write(nb, path)


# how many pixels of a PNG differ from its most common colour, decoded by the browser itself
_COUNT_INK = """async (b64) => {
  const img = new Image();
  img.src = 'data:image/png;base64,' + b64;
  await img.decode();
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d');
  g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  const counts = new Map();
  for (let i = 0; i < d.length; i += 4) {
    const k = (d[i] << 16) | (d[i + 1] << 8) | d[i + 2];
    counts.set(k, (counts.get(k) || 0) + 1);
  }
  const background = Math.max(...counts.values());
  return {width: c.width, height: c.height, ink: c.width * c.height - background, colours: counts.size};
}"""


def test_a_fifty_step_workflow_scrolls_in_its_container_and_the_trace_fits_the_page(lab, tmp_path):
    from playwright.sync_api import sync_playwright

    base, token = lab
    _fifty_step_notebook(tmp_path / "notebooks" / "fifty.ipynb")
    artifacts = Path(os.environ.get("OWF_ARTIFACTS", ROOT / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "browser-fifty.png"
    width = 1400
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 1000})
            page.goto(f"{base}/lab/tree/fifty.ipynb?token={token}")
            page.wait_for_selector(".jp-Notebook", timeout=60_000)
            with contextlib.suppress(Exception):  # the notebook names its kernel: a dialog is unlikely
                page.click(".jp-Dialog button.jp-mod-accept", timeout=1_500)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
            page.click('.lm-MenuBar-itemLabel >> text="Run"', timeout=10_000)
            page.click('.lm-Menu-itemLabel >> text="Run All Cells"', timeout=10_000)
            # the third cell's graph (outside the run's widget)
            static = ".jp-OutputArea-output > .owf-graph .owf-graph-scroll, .jp-RenderedHTMLCommon .owf-graph-scroll"
            page.wait_for_selector(static, state="attached", timeout=90_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            assert errors.count() == 0, errors.first.text_content()

            # the graph: 50 steps left to right, wider than the page, in a container that scrolls
            box = page.locator(static).last
            box.scroll_into_view_if_needed(timeout=10_000)
            sizes = box.evaluate("e => ({sw: e.scrollWidth, cw: e.clientWidth})")
            assert sizes["sw"] > sizes["cw"] > 200, sizes
            moved = box.evaluate("e => { e.scrollLeft = 600; return e.scrollLeft; }")
            assert moved > 0
            assert box.bounding_box()["x"] + box.bounding_box()["width"] <= width
            # the zoom buttons scale the drawing inside the box
            graph = box.locator("xpath=..")  # the .owf-graph holding the legend and the box
            before = box.evaluate("e => e.scrollWidth")
            graph.locator("button[title='zoom in']").click(timeout=10_000)
            assert box.evaluate("e => e.scrollWidth") > 1.2 * before
            graph.locator("button[title='actual size']").click(timeout=10_000)
            assert abs(box.evaluate("e => e.scrollWidth") - before) <= 2
            box.evaluate("e => { e.scrollLeft = 600; }")
            legend = page.locator(".owf-legend").last.bounding_box()
            assert legend["y"] < box.bounding_box()["y"]  # the legend sits on top
            assert box.locator("svg title").filter(has_text="backend native: ").count() >= 50  # reasons on hover

            # JupyterLab draws mermaid as an <img> of the SVG it made (strict security)
            mermaid = page.locator(".jp-RenderedMermaid img").last
            mermaid.wait_for(state="attached", timeout=30_000)
            drawn = urllib.parse.unquote(mermaid.get_attribute("src") or "")
            assert "<svg" in drawn and "Syntax error" not in drawn
            for text in ("call → child v1.0.0", "double", "why: "):
                assert text in drawn, text
            box.scroll_into_view_if_needed(timeout=10_000)
            page.screenshot(path=str(shot))
            ink = page.evaluate(_COUNT_INK, __import__("base64").b64encode(shot.read_bytes()).decode())
            # the run's live view: its Graph tab scrolls too, its Trace tab renders inside the page width
            page.locator(".lm-TabBar-tabLabel", has_text="Graph").first.click(timeout=10_000)
            live = page.locator(".widget-tab .owf-graph-scroll").first
            live.wait_for(state="visible", timeout=10_000)
            assert live.evaluate("e => e.scrollWidth > e.clientWidth")
            page.locator(".lm-TabBar-tabLabel", has_text="Trace").first.click(timeout=10_000)
            trace = page.locator("table.owf-frame").filter(has_text="step_00").first
            trace.wait_for(state="visible", timeout=10_000)
            # the trace's box ends inside the page (a table wider than it scrolls in that box), and
            # nothing pushes the notebook wider than its window
            right = trace.evaluate("e => e.closest('.owf-table-box').getBoundingClientRect().right")
            assert right <= width, f"the trace ends at {right}px on a {width}px page"
            notebook = page.locator(".jp-WindowedPanel-outer, .jp-Notebook").first
            assert notebook.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), "the notebook scrolls sideways"
            page.screenshot(path=str(artifacts / "browser-fifty-trace.png"))
        finally:
            browser.close()
    assert shot.stat().st_size > 20_000
    assert (ink["width"], ink["height"]) == (width, 1000)
    assert ink["ink"] > 0.02 * width * 1000 and ink["colours"] > 50, ink  # not a blank page
