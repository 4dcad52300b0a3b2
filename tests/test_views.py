"""Views of the plan and of a run, checked as text snapshots (mermaid, DOT, HTML), never images.

Set ``OWF_UPDATE_SNAPSHOTS=1`` to rewrite the files under tests/snapshots/ after a deliberate change.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from owf_magics.notebook.views import (
    SETTINGS,
    GraphView,
    ResolutionView,
    RunView,
    overlay_from_result,
    resolution_html,
    to_dot,
    to_mermaid,
    to_svg,
    to_text,
)
from owf_magics.notebook.views.graph import dot_escape, mermaid_escape
from owf_magics.notebook.views.tables import footer_text, frame_bundle, shown_frame

SNAPSHOTS = Path(__file__).parent / "snapshots"

# Step ids with spaces, quotes, angle brackets and non-ASCII letters; an if with two branches, a
# loop, and a step whose backend ("custom") is known but not installed.
TRICKY = """
workflows:
  - name: Tiny "quoted" flow
    inputs:
      n: {type: integer, default: 3}
    steps:
      - id: fetch data
        type: transform
        expression: "{{ inputs.n }}"
      - id: décision
        type: if
        condition: "{{ steps['fetch data'].output > 1 }}"
        then:
          - id: big <one>
            type: transform
            expression: big
        else:
          - id: small
            type: transform
            expression: "a#b"
      - id: each
        type: forEach
        items: [1, 2]
        steps:
          - id: 二倍
            type: transform
            expression: "{{ item * 2 }}"
      - id: later
        type: transform
        execution: {backend: custom}
        expression: "{{ steps['décision'].output }}"
"""


def check_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("OWF_UPDATE_SNAPSHOTS") == "1" or not path.exists():
        if not path.exists() and os.environ.get("OWF_UPDATE_SNAPSHOTS") != "1":
            pytest.fail(f"snapshot {name} is missing; run with OWF_UPDATE_SNAPSHOTS=1 to create it")
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


@pytest.fixture
def deterministic():
    saved = SETTINGS.deterministic
    SETTINGS.deterministic = True
    yield
    SETTINGS.deterministic = saved


@pytest.fixture
def tricky_plan(ow):
    ow.load(TRICKY)
    return ow.workflow().plan()


@pytest.fixture
def digest(ow):
    ow.load(Path(__file__).parent.parent / "examples" / "research-digest.yaml")
    return ow.workflow()


def test_mermaid_snapshot(tricky_plan):
    check_snapshot("tricky.mmd", to_mermaid(tricky_plan))


def test_dot_snapshot(tricky_plan):
    check_snapshot("tricky.dot", to_dot(tricky_plan))


def test_text_snapshot(tricky_plan):
    check_snapshot("tricky.txt", to_text(tricky_plan))


def test_resolution_html_snapshot(tricky_plan):
    check_snapshot("tricky-resolution.html", resolution_html(tricky_plan))


def test_graph_html_without_dot_shows_the_mermaid_text(tricky_plan):
    check_snapshot("tricky-graph-nodot.html", GraphView(tricky_plan, svg=False).html())


def test_run_overlay_snapshots(digest, deterministic):
    plan = digest.plan()
    result = digest.execute()
    overlay = overlay_from_result(result)
    check_snapshot("digest-run.mmd", to_mermaid(plan, overlay))
    check_snapshot("digest-run.dot", to_dot(plan, overlay))
    assert overlay["summarize"].tokens == 56
    assert overlay["count_words"].status == "success"


def test_node_ids_are_positional_and_labels_escaped(tricky_plan):
    text = to_mermaid(tricky_plan)
    # raw ids never appear as mermaid ids; the tricky characters only inside escaped labels
    assert "fetch data[" not in text
    assert "big #lt;one#gt;" in text
    assert "二倍" in text and "décision" in text
    assert mermaid_escape('a"b#c') == "a#quot;b#35;c"
    assert dot_escape('say "hi"\\n') == 'say \\"hi\\"\\\\n'


def test_groups_nest_for_branches_and_loops(tricky_plan):
    text = to_mermaid(tricky_plan)
    assert 'subgraph g0["then"]' in text and 'subgraph g1["else"]' in text and 'subgraph g2["loop"]' in text
    assert text.count("\n    end") == 3
    dot = to_dot(tricky_plan)
    assert dot.count("subgraph cluster_") == 3


def test_unavailable_backend_is_dashed_and_explained(tricky_plan):
    assert "style n6 stroke-dasharray:5 5" in to_mermaid(tricky_plan)
    assert 'style="filled,dashed"' in to_dot(tricky_plan)
    row = next(r for r in tricky_plan.rows() if r["step_id"] == "later")
    assert not row["available"]
    assert "custom (missing:" in resolution_html(tricky_plan)


@pytest.mark.skipif(not __import__("shutil").which("dot"), reason="graphviz's dot is not installed")
def test_svg_from_dot_is_valid_xml_with_every_label(tricky_plan):
    svg = to_svg(tricky_plan)
    assert svg is not None and svg.startswith("<svg")
    root = ET.fromstring(svg)
    texts = {t.text for t in root.iter("{http://www.w3.org/2000/svg}text")}
    for label in ("fetch data", "décision", "big <one>", "small", "二倍", "later"):
        assert label in texts
    bundle = GraphView(tricky_plan)._repr_mimebundle_()
    assert bundle["image/svg+xml"] == svg
    assert svg.replace("<svg ", '<svg style="max-width:none" ', 1) in bundle["text/html"]  # drawn at its size


def test_svg_is_none_without_dot(tricky_plan, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    from owf_magics.notebook.views.graph import _svg_of

    _svg_of.cache_clear()
    try:
        assert to_svg(tricky_plan) is None
        bundle = GraphView(tricky_plan)._repr_mimebundle_()
        assert "image/svg+xml" not in bundle
        assert bundle["text/vnd.mermaid"].startswith("flowchart TD")
        assert "owf-mermaid" in bundle["text/html"]
    finally:
        _svg_of.cache_clear()


def test_resolution_view_bundle(tricky_plan):
    bundle = ResolutionView(tricky_plan)._repr_mimebundle_()
    assert bundle["text/plain"].splitlines()[0].split() == [
        "step",
        "type",
        "agent",
        "/",
        "connector",
        "requested",
        "resolved",
        "source",
        "runtime",
        "adapter",
    ]
    assert bundle["text/html"].count("<tr") == 1 + len(tricky_plan)


def test_run_view_is_deterministic(digest, deterministic):
    plan = digest.plan()
    one = RunView(digest.execute(), plan)._repr_mimebundle_()
    two = RunView(digest.execute(), plan)._repr_mimebundle_()
    assert one == two
    assert "run … of 'Research Digest': completed (4 success); 56 tokens" in one["text/plain"]
    assert " ms" not in one["text/plain"]


def test_run_view_shows_durations_when_not_deterministic(digest):
    saved = SETTINGS.deterministic
    SETTINGS.deterministic = False
    try:
        result = digest.execute()
        text = RunView(result, digest.plan())._repr_mimebundle_()["text/plain"]
    finally:
        SETTINGS.deterministic = saved
    assert result.run_id in text
    assert " ms" in text


def test_frame_bundle_shows_head_and_tail_the_run_once_and_a_footer(deterministic):
    import pandas as pd

    df = pd.DataFrame({"run_id": ["r"] * 50, "step_id": [f"s{i}" for i in range(50)], "status": ["success"] * 50})
    bundle = frame_bundle(df, "res.trace")
    plain = bundle["text/plain"]
    assert "50 rows, showing the first 10 and the last 10; every row: print(res.trace.to_string())" in plain
    assert "s9" in plain and "s10" not in plain and "s40" in plain and "s49" in plain and "s39" not in plain
    assert bundle["text/html"].count("<tr") == 22  # the header, 10 + 10 rows and the gap between them
    # one run: its id once above the table (masked when deterministic), not a column
    assert plain.startswith("run …\n") and "run_id" not in plain and "<th>run_id</th>" not in bundle["text/html"]
    assert "<caption>run …</caption>" in bundle["text/html"]
    assert df["run_id"].iloc[0] == "r" and len(df.columns) == 3  # the data is untouched
    assert "print(frame.to_string())" in frame_bundle(df, None)["text/plain"]  # no name known: neutral
    assert footer_text("x", 1, 1) == "1 row"
    shown = shown_frame(df, "t")
    assert "print(t.to_string())" in repr(shown)


def test_plan_and_run_result_display_through_the_views(digest, deterministic):
    plan = digest.plan()
    bundle = plan._repr_mimebundle_()
    assert bundle["text/plain"].startswith("Research Digest v1.0.0: 4 steps (native: 4)")
    assert "  default  " in bundle["text/plain"] and "owf-resolution" in bundle["text/html"]
    result = digest.execute()
    shown = result._repr_mimebundle_()
    assert shown["text/plain"].startswith("run … of 'Research Digest': completed")
    assert "count_words" in shown["text/plain"]
    import pandas as pd

    assert type(result.trace) is pd.DataFrame and result.trace is result.trace  # plain, and the same frame
