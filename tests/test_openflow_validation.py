"""The OpenFlow validator: a corpus of malformed flows (tests/openflow/malformed/, each line that
must be reported carries a ``# !CODE`` comment) gives exactly those codes on those lines, all at
once; generated flows never raise anything but ManifestError."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from owf_magics import ManifestError, OpenWorkflow

CORPUS = sorted((Path(__file__).parent / "openflow" / "malformed").glob("*.yaml"))
MARK = re.compile(r"#\s*!([A-Z_]+)")


def expected(path: Path) -> list[tuple[str, int]]:
    out = []
    for line, text in enumerate(path.read_text().splitlines(), 1):
        out.extend((code, line) for code in MARK.findall(text))
    return sorted(out)


def test_the_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 30
    assert all(expected(p) for p in CORPUS)


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_malformed_flow_gives_exactly_the_expected_codes_and_lines(path: Path) -> None:
    with pytest.raises(ManifestError) as err:
        OpenWorkflow(state=":memory:").load(str(path))
    got = sorted((d.code, d.line) for d in err.value.diagnostics)
    assert got == expected(path)
    assert all(d.file == str(path) for d in err.value.diagnostics)


def test_complexity_warning_past_ten_and_twenty_nodes() -> None:
    def flow(n: int) -> dict[str, Any]:
        nodes = [
            {"id": f"u{i}", "type": "UPDATE_VARIABLE", "config": {"type": "update", "variable_id": "x"}, "value": i}
            for i in range(n)
        ]
        return {
            "name": f"f{n}",
            "version": "1.0.0",
            "variables": [{"id": "x", "default": 0}],
            "output": ["x"],
            "nodes": nodes,
        }

    for n, words in ((10, None), (11, "medium"), (21, "high")):
        ow = OpenWorkflow(state=":memory:")
        ow.load(flow(n))
        warnings = [w for w in ow.warnings if w.code == "COMPLEXITY"]
        assert (words in warnings[0].message) if words else not warnings
        assert ow.workflow(f"f{n}").execute().outputs == {"x": n - 1}


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.text(max_size=8),
    st.sampled_from(["{{@x}}", "{{a.b}}", "{{n0.text}}", "{{it}}"]),
)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
TYPES = st.sampled_from(
    ["LLM", "FOR_EACH", "CONDITION", "UPDATE_VARIABLE", "FLOW_CALL", "VECTOR_INSERT", "x:y", "BAD", 3]
)
NODE = st.fixed_dictionaries(
    {"id": st.one_of(st.sampled_from(["n0", "n1", "n2"]), st.integers()), "type": TYPES},
    optional={
        "config": st.one_of(
            JSONISH,
            st.fixed_dictionaries(
                {},
                optional={
                    "provider": st.sampled_from(["echo", "openai", "zzz"]),
                    "model": st.text(max_size=4),
                    "type": st.sampled_from(["join", "update", "append", "nope"]),
                    "variable_id": st.sampled_from(["x", "y"]),
                    "each_key": st.text(max_size=3),
                },
            ),
        ),
        "value": JSONISH,
        "input": JSONISH,
        "messages": JSONISH,
        "output": JSONISH,
        "branches": JSONISH,
        "each_nodes": JSONISH,
        "flow_id": JSONISH,
    },
)
FLOW = st.fixed_dictionaries(
    {
        "nodes": st.one_of(st.lists(NODE, max_size=4), JSONISH),
        "variables": st.one_of(
            JSONISH,
            st.lists(
                st.fixed_dictionaries(
                    {"id": st.sampled_from(["x", "y", "bad-id"])},
                    optional={"type": JSONISH, "default": JSONISH, "validation": JSONISH},
                ),
                max_size=3,
            ),
        ),
    },
    optional={
        "name": st.one_of(st.text(max_size=6), st.integers()),
        "version": st.sampled_from(["1.0.0", "x", 1]),
        "input": JSONISH,
        "output": JSONISH,
        "timeout": JSONISH,
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FLOW)
def test_generated_flows_never_raise_anything_but_manifest_error(flow: dict[str, Any]) -> None:
    with contextlib.suppress(ManifestError):
        OpenWorkflow(state=":memory:").load(flow)
