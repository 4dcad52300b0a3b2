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
