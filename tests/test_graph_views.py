"""Graph views of issue 11: sub-workflows (xray), big graphs left-to-right, colour-blind-safe backend
colours, the resolution reason on hover and in labels, and export (GraphView.save, the magics)."""

from __future__ import annotations

import itertools
import re
import shutil
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from owf_magics.errors import OWFError, UnavailableError
from owf_magics.notebook.views import SETTINGS, GraphView, overlay_from_result, to_dot, to_mermaid, to_text
from owf_magics.notebook.views.graph import _svg_of
from owf_magics.notebook.views.palette import all_fills, backend_colours
from owf_magics.notebook.views.scene import subplans_from
from tests.ipython_shell import magic_shell

ROOT = Path(__file__).resolve().parent.parent
SUBFLOW = (ROOT / "owf_magics" / "parity" / "subflow.yaml").read_text(encoding="utf-8")
HAS_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAS_DOT, reason="graphviz's dot is not installed")

# a child that itself calls the grandchild: xray=1 opens one level, xray=True both
NESTED = """
workflows:
  - name: grandchild
    steps:
      - {id: deep, type: transform, expression: "{{ 1 }}"}
  - name: child
    steps:
      - {id: inner, type: workflow, workflow: grandchild}
      - {id: after, type: transform, expression: "{{ 2 }}", needs: [inner]}
  - name: top
    steps:
      - {id: go, type: workflow, workflow: child}
"""

# every rule that can choose a backend: step, agent, workflow, --prefer-backend, and the default
REASONS = """
agents:
  - name: helper
    model: {provider: echo}
    execution: {backend: native}
workflows:
  - name: why
    execution: {backend: native}
    steps:
      - {id: by_step, type: transform, expression: "{{ 1 }}", execution: {backend: native}}
      - {id: by_agent, type: agent, agent: helper, input: {q: hi}, needs: [by_step]}
      - {id: by_workflow, type: transform, expression: "{{ 2 }}"}
  - name: plain
    steps:
      - {id: by_default, type: transform, expression: "{{ 3 }}"}
"""


def chain(n: int, name: str = "fifty") -> str:
    steps = []
    for i in range(n):
        needs = f", needs: [s{i - 1}]" if i else ""
        steps.append(f"      - {{id: s{i}, type: transform, expression: 'v{i}'{needs}}}")
    return f"workflows:\n  - name: {name}\n    steps:\n" + "\n".join(steps) + "\n"


# -- colour-blind safety ---------------------------------------------------------------------------

# Machado, Oliveira & Fernandes (2009), severity 1.0, applied to linear RGB
PROTANOPIA = ((0.152286, 1.052583, -0.204868), (0.114503, 0.786281, 0.099216), (-0.003882, -0.048116, 1.051998))
DEUTERANOPIA = ((0.367322, 0.860646, -0.227968), (0.280085, 0.672501, 0.047413), (-0.011820, 0.042940, 0.968881))
MIN_DELTA_E = 10.0  # CIE76 distance every two fills keep under each simulation (2.3 is "just noticeable")


def _linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _srgb(c: float) -> float:
    c = min(1.0, max(0.0, c))
    return 12.92 * c if c <= 0.0031308 else 1.055 * c ** (1 / 2.4) - 0.055


def _rgb(hexa: str) -> tuple[float, ...]:
    return tuple(int(hexa[i : i + 2], 16) / 255 for i in (1, 3, 5))


def _simulate(rgb: tuple[float, ...], m) -> tuple[float, ...]:
    lin = [_linear(c) for c in rgb]
    return tuple(_srgb(sum(m[i][j] * lin[j] for j in range(3))) for i in range(3))


def _lab(rgb: tuple[float, ...]) -> tuple[float, float, float]:
    r, g, b = (_linear(c) for c in rgb)
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def _delta_e(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return sum((p - q) ** 2 for p, q in zip(_lab(a), _lab(b), strict=True)) ** 0.5


@pytest.mark.parametrize("vision", ["normal", "protanopia", "deuteranopia"])
def test_every_two_backend_fills_stay_apart_for_colour_blind_readers(vision):
    matrix = {"protanopia": PROTANOPIA, "deuteranopia": DEUTERANOPIA}.get(vision)
    fills = {name: _rgb(h) for name, h in all_fills().items()}
    seen = {name: (_simulate(rgb, matrix) if matrix else rgb) for name, rgb in fills.items()}
    worst = min((_delta_e(seen[a], seen[b]), a, b) for a, b in itertools.combinations(seen, 2))
    assert worst[0] >= MIN_DELTA_E, f"{worst[1]} and {worst[2]} are only {worst[0]:.1f} apart under {vision}"
    # the simulation does something: red and green collapse for a deuteranope
    if matrix is DEUTERANOPIA:
        assert _delta_e(_simulate(_rgb("#ff0000"), matrix), _simulate(_rgb("#00aa00"), matrix)) < _delta_e(
            _rgb("#ff0000"), _rgb("#00aa00")
        )


def test_built_in_backends_have_three_different_colours_and_others_a_stable_one():
    fills = {backend_colours(b)[0] for b in ("native", "langchain", "assistants")}
    assert len(fills) == 3 and set(fills) <= set(all_fills().values())
    assert backend_colours("my-backend") == backend_colours("my-backend")
    assert backend_colours("my-backend")[0] not in fills


# -- sub-workflows -----------------------------------------------------------------------------------


@pytest.fixture
def subflow(ow):
    ow.load(SUBFLOW)
    wf = ow.workflow("parity-subflow")
    return wf, wf.plan(), subplans_from(ow)


def test_sub_workflow_is_closed_by_default_and_says_what_it_hides(subflow):
    _, plan, find = subflow
    text = to_mermaid(plan, subplans=find)
    assert "subgraph" not in text
    assert "▸ parity-child: 2 steps" in text
    assert "▸ parity-child: 2 steps" in to_text(plan, subplans=find)


def test_xray_opens_the_sub_workflow_in_mermaid_dot_and_text(subflow):
    _, plan, find = subflow
    mermaid = to_mermaid(plan, xray=True, subplans=find)
    assert 'subgraph g0["call → parity-child v1.0.0"]' in mermaid
    assert 'n0_0("double' in mermaid and "n0_0 --> n0_1" in mermaid and 'n0 -.->|"calls"| n0_0' in mermaid
    dot = to_dot(plan, xray=True, subplans=find)
    assert dot.count("subgraph cluster_") == 1 and 'label="call → parity-child v1.0.0"' in dot
    assert "n0_0 -> n0_1;" in dot
    text = to_text(plan, xray=True, subplans=find)
    assert "2 steps, 2 more in sub-workflows" in text and "┆ call → parity-child v1.0.0:" in text


def test_xray_depth_opens_that_many_levels(ow):
    ow.load(NESTED)
    plan, find = ow.workflow("top").plan(), subplans_from(ow)
    one = to_mermaid(plan, xray=1, subplans=find)
    assert "subgraph g0" in one and "subgraph g1" not in one
    assert '▸ grandchild: 1 step"' in one  # the second level stays closed (singular: 1 step)
    every = to_mermaid(plan, xray=True, subplans=find)
    assert "subgraph g1" in every and "n0_0_0" in every


def test_a_run_colours_the_steps_inside_an_opened_sub_workflow(subflow, deterministic):
    wf, plan, find = subflow
    overlay = overlay_from_result(wf.execute())
    assert overlay["call/double"].status == "success"
    view = GraphView(plan, overlay, xray=True, subplans=find, svg=False)
    assert "style n0_0 stroke:#16a34a" in view.mermaid()


def test_the_html_view_draws_closed_sub_workflows_in_collapsible_details(subflow):
    wf, plan, find = subflow
    overlay = overlay_from_result(wf.execute())
    page = GraphView(plan, overlay, subplans=find, svg=False).html()
    assert page.count('<details class="owf-subworkflow">') == 1
    details = page[page.index("<details") :]
    assert "call</b> → parity-child v1.0.0 (2 steps)" in details and "double" in details
    # the child's drawing carries the run's states of call/double and call/label
    assert "style n0 stroke:#16a34a" in details


def test_the_engine_s_plan_cache_lets_views_find_children_without_a_registry(subflow):
    wf, plan, _ = subflow
    wf.execute()  # the engine planned the child
    assert "▸ parity-child: 2 steps" in to_mermaid(plan)


# -- layout, legend, container -------------------------------------------------------------------


def test_a_tall_chain_lays_out_left_to_right_and_a_short_one_top_down(ow):
    ow.load(chain(50))
    ow.load(chain(4, "four"))
    tall, short = ow.workflow("fifty").plan(), ow.workflow("four").plan()
    assert to_mermaid(tall).startswith("flowchart LR")
    assert "rankdir=LR" in to_dot(tall)
    assert to_mermaid(short).startswith("flowchart TD")
    assert to_mermaid(tall, direction="TD").startswith("flowchart TD")  # asked for: obeyed


def test_wide_fan_out_stays_top_down(ow):
    steps = "\n".join(f"      - {{id: b{i}, type: transform, expression: x, needs: [a]}}" for i in range(30))
    ow.load(f"workflows:\n  - name: fan\n    steps:\n      - {{id: a, type: transform, expression: x}}\n{steps}\n")
    assert to_mermaid(ow.workflow("fan").plan()).startswith("flowchart TD")


def test_html_puts_the_legend_on_top_and_the_drawing_in_a_scroll_container(ow):
    ow.load(chain(50))
    page = GraphView(ow.workflow("fifty").plan()).html()
    legend, scroll = page.index('class="owf-legend"'), page.index('class="owf-graph-scroll"')
    canvas = page.index('class="owf-graph-canvas"')
    assert legend < scroll < canvas
    assert "overflow:auto" in page and "zoom in" in page
    if HAS_DOT:
        assert canvas < page.index("<svg")


@needs_dot
def test_svg_legend_is_on_top_of_the_drawing(ow):
    ow.load(REASONS)
    svg = GraphView(ow.workflow("why").plan()).svg_text()
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    ys = {t.text.strip(): float(t.get("y")) for t in root.iter(f"{ns}text") if t.text and t.text.strip()}
    assert ys["backends:"] < ys["by_step"]  # SVG y grows downwards


# -- the resolution reason ---------------------------------------------------------------------------


def _long(entry) -> str:
    """What the tooltip says of a step's reason (the words when the plan has them)."""
    return getattr(entry, "explanation", None) or entry.reason


def test_reasons_in_labels_on_request_and_in_mermaid_tooltips(ow):
    ow.load(REASONS)
    why, plain = ow.workflow("why").plan(), ow.workflow("plain").plan(prefer_backend="native")
    default = ow.workflow("plain").plan()
    # five rules, five different reasons: each label says its own
    reasons = {sid: p[sid].reason for p in (why, plain, default) for sid in p}
    assert {why["by_step"].source, why["by_agent"].source, why["by_workflow"].source} == {"step", "agent", "workflow"}
    assert (plain["by_default"].source, default["by_default"].source) == ("prefer", "default")
    assert len({why["by_step"].reason, why["by_agent"].reason, why["by_workflow"].reason}) == 3
    assert plain["by_default"].reason != default["by_default"].reason
    assert "why: " not in to_mermaid(why)
    labelled = to_mermaid(why, show_reasons=True)
    for sid in ("by_step", "by_agent", "by_workflow"):
        assert f"why: {reasons[sid]}" in labelled
    assert f"why: {plain['by_default'].reason}" in to_mermaid(plain, show_reasons=True)
    assert f"why: {default['by_default'].reason}" in to_mermaid(default, show_reasons=True)
    tips = dict(re.findall(r'click (\S+) callback "([^"]*)"', to_mermaid(why)))
    assert tips["n1"] == f"by_agent · agent · backend native: {_long(why['by_agent'])}"
    assert f"({default['by_default'].reason})" in to_text(default, show_reasons=True)


@needs_dot
def test_svg_titles_say_why_each_backend_on_hover(ow):
    ow.load(REASONS)
    plan = ow.workflow("why").plan()
    svg = GraphView(plan).svg_text()
    root = ET.fromstring(svg)
    titles = [t.text for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert f"by_step · transform\nbackend native: {_long(plan['by_step'])}" in titles
    assert f"by_workflow · transform\nbackend native: {_long(plan['by_workflow'])}" in titles
    assert "by_step → by_agent" in titles  # edges are named by step ids, not graphviz's n0->n1
    assert not [t for t in titles if re.fullmatch(r"n\d+(->n\d+)?", t or "")]


# -- export ------------------------------------------------------------------------------------------


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_save_writes_mermaid_and_dot_text(ow, tmp_path):
    ow.load(SUBFLOW)
    view = GraphView(ow.workflow("parity-subflow").plan())
    assert view.save(tmp_path / "g.mmd").read_text(encoding="utf-8").startswith("flowchart TD")
    assert view.save(tmp_path / "g.dot").read_text(encoding="utf-8").startswith('digraph "parity-subflow v1.0.0"')


@needs_dot
def test_save_draws_svg_and_png_through_graphviz(ow, tmp_path):
    ow.load(chain(50))
    view = GraphView(ow.workflow("fifty").plan())
    svg = view.save(tmp_path / "g.svg").read_text(encoding="utf-8")
    assert ET.fromstring(svg.split("\n", 1)[1]).tag.endswith("svg")
    width, height = _png_size(view.save(tmp_path / "g.png").read_bytes())
    assert width > 4 * height  # fifty steps, left to right


def test_svg_and_png_without_graphviz_say_what_to_install(ow, tmp_path, monkeypatch):
    ow.load(SUBFLOW)
    view = GraphView(ow.workflow("parity-subflow").plan())
    monkeypatch.setenv("PATH", str(tmp_path))
    _svg_of.cache_clear()
    try:
        for name in ("g.png", "g.svg"):
            with pytest.raises(UnavailableError) as info:
                view.save(tmp_path / name)
            assert info.value.code == "UNAVAILABLE" and "install graphviz" in info.value.message.replace(
                "install it", ""
            )
            assert ".mmd" in info.value.message and not (tmp_path / name).exists()
    finally:
        _svg_of.cache_clear()


def test_save_refuses_an_unknown_suffix_with_a_suggestion(ow, tmp_path):
    ow.load(SUBFLOW)
    with pytest.raises(OWFError) as info:
        GraphView(ow.workflow("parity-subflow").plan()).save(tmp_path / "g.pgn")
    assert info.value.code == "VALIDATION" and "Did you mean '.png'?" in info.value.message


# -- the magics (a real InteractiveShell) --------------------------------------------------------------


@pytest.fixture
def shell(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with magic_shell(state=":memory:", widgets="never") as ip:
        yield ip


def run(ip, source):
    with capture_output() as cap:
        result = ip.run_cell(source)
    return result, cap


def test_cell_file_writes_the_yaml_and_loads_it(shell, tmp_path):
    result, cap = run(shell, f"%%workflow --file flows/sub.yaml\n{SUBFLOW}")
    assert result.success, result.error_in_exec
    written = tmp_path / "flows" / "sub.yaml"
    assert written.read_text(encoding="utf-8") == SUBFLOW  # the file ends with a newline, as the cell did
    _, cap = run(shell, "%workflow list")
    assert "flows/sub.yaml" in cap.stdout + "".join(str(o.data) for o in cap.outputs)


def test_cell_file_diagnostics_point_at_the_file_and_line(shell, tmp_path):
    bad = "workflows:\n  - name: broken\n    steps:\n      - {id: a, type: transfrom, expression: x}\n"
    result, cap = run(shell, f"%%workflow --file bad.yaml\n{bad}")
    assert not result.success
    text = str(result.error_in_exec) + cap.stdout + cap.stderr
    assert "bad.yaml:4" in text
    assert (tmp_path / "bad.yaml").read_text(encoding="utf-8") == bad


def test_a_run_error_of_a_file_cell_quotes_the_file_s_line(shell, tmp_path):
    failing = (
        "workflows:\n  - name: failing\n    steps:\n      - id: t\n        type: transform\n"
        "        language: jq\n        input: {a: 1}\n        expression: '.a | error'\n"
    )
    result, cap = run(shell, f"%%workflow --file fail.yaml --run --quiet\n{failing}")
    assert not result.success
    shown = cap.stdout + cap.stderr + str(result.error_in_exec)
    assert "fail.yaml:4, step 't'" in shown
    assert "> 4 |       - id: t" in shown  # the file's line 4, not the cell's


def test_workflow_load_reads_a_file_and_a_directory(shell, tmp_path):
    (tmp_path / "many").mkdir()
    (tmp_path / "many" / "a.yaml").write_text(chain(3, "alpha"), encoding="utf-8")
    (tmp_path / "many" / "b.yml").write_text(chain(2, "beta"), encoding="utf-8")
    (tmp_path / "one.yaml").write_text(SUBFLOW, encoding="utf-8")
    result, cap = run(shell, "%workflow load one.yaml")
    assert result.success and "loaded 2 workflows from one.yaml" in cap.stdout
    result, cap = run(shell, "%workflow load many")
    assert result.success and "alpha" in cap.stdout and "beta" in cap.stdout
    result, cap = run(shell, "%workflow run beta")
    assert result.success, result.error_in_exec
    result, cap = run(shell, "%workflow load one.yaml")  # again: replaces, no duplicate error
    assert result.success


def test_workflow_load_of_a_missing_path_suggests_the_near_one(shell, tmp_path):
    (tmp_path / "flow.yaml").write_text(SUBFLOW, encoding="utf-8")
    result, _ = run(shell, "%workflow load flwo.yaml")
    assert isinstance(result.error_in_exec, UsageError)
    assert "Did you mean 'flow.yaml'?" in str(result.error_in_exec)


def test_workflow_load_of_a_bad_file_gives_its_line(shell, tmp_path):
    (tmp_path / "bad.yaml").write_text("workflows:\n  - name: b\n    steps:\n      - {id: a, type: nope}\n")
    result, cap = run(shell, "%workflow load bad.yaml")
    assert not result.success
    assert "bad.yaml:4" in str(result.error_in_exec) + cap.stdout + cap.stderr


@pytest.mark.parametrize(
    ("fmt", "check"),
    [
        ("mermaid", lambda cap: cap.stdout.startswith("flowchart TD")),
        ("dot", lambda cap: cap.stdout.startswith('digraph "parity-subflow')),
        ("text", lambda cap: "parity-subflow v1.0.0: 2 steps" in cap.stdout),
        pytest.param("svg", lambda cap: "image/svg+xml" in cap.outputs[0].data, marks=needs_dot),
        pytest.param("png", lambda cap: "image/png" in cap.outputs[0].data, marks=needs_dot),
    ],
)
def test_show_format(shell, fmt, check):
    run(shell, f"%%workflow --quiet\n{SUBFLOW}")
    result, cap = run(shell, f"%workflow show parity-subflow --format {fmt} -o g")
    assert result.success, result.error_in_exec
    assert check(cap)
    assert shell.user_ns["g"]


def test_show_format_png_binds_real_png_bytes(shell):
    if not HAS_DOT:
        pytest.skip("graphviz's dot is not installed")
    run(shell, f"%%workflow --quiet\n{SUBFLOW}")
    run(shell, "%workflow show parity-subflow --format png -o picture")
    width, height = _png_size(shell.user_ns["picture"])
    assert width > 50 and height > 50


def test_show_format_unknown_suggests(shell):
    run(shell, f"%%workflow --quiet\n{SUBFLOW}")
    result, _ = run(shell, "%workflow show parity-subflow --format mermiad")
    assert "Did you mean 'mermaid'?" in str(result.error_in_exec)


def test_show_xray_and_reasons_reach_the_cell_s_graph(shell):
    result, cap = run(shell, f"%%workflow parity-subflow --xray --reasons --show graph\n{SUBFLOW}")
    assert result.success, result.error_in_exec
    bundle = cap.outputs[0].data
    assert 'subgraph g0["call → parity-child v1.0.0"]' in bundle["text/vnd.mermaid"]
    reason = shell._owf_magics.ow.workflow("parity-subflow").plan()["call"].reason
    assert f"why: {reason}" in bundle["text/vnd.mermaid"]
    # without the flags, the next cell's graph is closed again: the options last one line
    result, cap = run(shell, "%workflow show parity-subflow --show graph")
    assert "subgraph" not in cap.outputs[0].data["text/vnd.mermaid"]
    assert "▸ parity-child: 2 steps" in cap.outputs[0].data["text/vnd.mermaid"]
    result, cap = run(shell, "%workflow show --xray parity-subflow")
    assert "--xray takes a depth" in str(result.error_in_exec)


def test_a_run_s_static_view_draws_the_sub_workflow(shell):
    result, cap = run(shell, f"%%workflow parity-subflow --run --xray\n{SUBFLOW}")
    assert result.success, result.error_in_exec
    html = "".join(o.data.get("text/html", "") for o in cap.outputs)
    assert "call → parity-child v1.0.0" in html


@pytest.fixture
def deterministic():
    saved = SETTINGS.deterministic
    SETTINGS.deterministic = True
    yield
    SETTINGS.deterministic = saved


# -- a real kernel (nbclient): what a headless run stores ----------------------------------------------


@pytest.mark.slow
def test_a_kernel_stores_the_graph_container_sub_workflow_details_and_exports(tmp_path):
    import nbclient
    import nbformat

    nb = nbformat.v4.new_notebook()
    sources = [
        "%load_ext owf_magics",
        f"%%workflow parity-subflow --run --file flows/sub.yaml\n{SUBFLOW}",
        "%workflow load flows",
        "%workflow show parity-subflow --format mermaid --xray",
        "%workflow show parity-subflow --format png -o picture\nlen(picture) > 1000" if HAS_DOT else "True",
    ]
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    _, run_cell, load, mermaid, png = nb.cells
    assert (tmp_path / "flows" / "sub.yaml").read_text(encoding="utf-8") == SUBFLOW
    page = "".join(o.get("data", {}).get("text/html", "") for o in run_cell.outputs)
    assert 'class="owf-graph-scroll"' in page and '<details class="owf-subworkflow">' in page
    assert page.index('class="owf-legend"') < page.index('class="owf-graph-scroll"')
    assert "loaded 2 workflows from flows: parity-child, parity-subflow" in load.outputs[0].text
    assert 'subgraph g0["call → parity-child v1.0.0"]' in mermaid.outputs[0].text
    if HAS_DOT:
        kinds = [set(o.get("data", {})) for o in png.outputs]
        assert any("image/png" in k for k in kinds)
        assert png.outputs[-1]["data"]["text/plain"] == "True"
