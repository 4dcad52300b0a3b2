"""The AgentFlow malformed corpus: each broken spec gives exactly these diagnostic codes at these
lines (the source lines of the JSON/YAML, not of the converted workflow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from owf_magics import ManifestError, OpenWorkflow

BASE = """\
id: flow
start_node: input
nodes:
  - {id: input, type: input}
  - {id: router, type: router}
  - {id: llm, type: llm, metadata: {source: chat}}
  - {id: pic, type: image, metadata: {source: pics}}
  - {id: db, type: db, metadata: {source: store, config: {query: "SELECT ? AS intent", params: ["{intent}"]}}}
  - {id: final, type: aggregator}
edges:
  - {from: input, to: router}
  - {from: router, to: [llm, pic]}
  - {from: llm, to: db}
  - {from: pic, to: db}
  - {from: db, to: final}
queues:
  - {id: q1, from: router, to: llm, bandwidth: {max_messages_per_second: 1}}
sources:
  - {id: chat, kind: llm, config: {provider: echo}}
  - {id: pics, kind: image, config: {}}
  - {id: store, kind: db, config: {database: ":memory:"}}
"""

Q = "  - {id: q1, from: router, to: llm, bandwidth: {max_messages_per_second: 1}"
# (case id, line to replace, its new text, the expected (code, line) diagnostics)
CASES: list[tuple[str, int, str, list[tuple[str, int]]]] = [
    ("no-id-or-name", 1, "description: x", [("MISSING_REQUIRED_FIELD", 1)]),
    ("unknown-start-node", 2, "start_node: inptu", [("UNKNOWN_REFERENCE", 2)]),
    ("start-node-not-a-string", 2, "start_node: [input]", [("INVALID_TYPE", 2)]),
    ("node-type-typo", 9, "  - {id: final, type: agregator}", [("INVALID_VALUE", 9)]),
    ("duplicate-node-id", 9, "  - {id: db, type: aggregator}", [("DUPLICATE_STEP_ID", 9), ("UNKNOWN_REFERENCE", 15)]),
    (
        "node-id-with-space",
        9,
        '  - {id: "fi nal", type: aggregator}',
        [("INVALID_VALUE", 9), ("UNKNOWN_REFERENCE", 15)],
    ),
    ("node-without-type", 9, "  - {id: final}", [("MISSING_REQUIRED_FIELD", 9)]),
    ("unknown-source", 7, "  - {id: pic, type: image, metadata: {source: pix}}", [("UNKNOWN_REFERENCE", 7)]),
    ("db-without-source", 8, "  - {id: db, type: db}", [("MISSING_REQUIRED_FIELD", 8)]),
    ("source-of-the-wrong-kind", 7, "  - {id: pic, type: image, metadata: {source: chat}}", [("INVALID_VALUE", 7)]),
    ("unknown-source-kind", 20, "  - {id: pics, kind: video, config: {}}", [("INVALID_VALUE", 20)]),
    ("db-source-without-database", 21, "  - {id: store, kind: db, config: {}}", [("MISSING_REQUIRED_FIELD", 21)]),
    ("edge-to-unknown-node", 15, "  - {from: db, to: fnal}", [("INVALID_VALUE", 9), ("UNKNOWN_REFERENCE", 15)]),
    ("edge-without-to", 15, "  - {from: db}", [("INVALID_VALUE", 9), ("MISSING_REQUIRED_FIELD", 15)]),
    ("edge-back-to-start", 15, "  - {from: db, to: [final, input]}", [("INVALID_VALUE", 15)]),
    ("cycle", 15, "  - {from: db, to: [final, router]}", [("CIRCULAR_DEPENDENCY", 15)]),
    ("condition-not-a-string", 13, "  - {from: llm, to: db, condition: 3}", [("INVALID_TYPE", 13)]),
    ("negative-bandwidth", 17, Q.replace(": 1}", ": -1}") + "}", [("INVALID_VALUE", 17)]),
    ("unknown-bandwidth-key", 17, Q.replace("max_messages", "max_mesages") + "}", [("UNKNOWN_FIELD", 17)]),
    ("queue-without-edge", 17, Q.replace("from: router", "from: input") + "}", [("INVALID_VALUE", 17)]),
    ("queue-on-limit", 17, Q + ", on_limit: drop}", [("INVALID_VALUE", 17)]),
    ("subqueue-weight-zero", 17, Q + ", subqueues: [{id: a, weight: 0}]}", [("INVALID_VALUE", 17)]),
    ("queue-without-id", 17, "  - {from: router, to: llm}", [("MISSING_REQUIRED_FIELD", 17)]),
    ("db-without-query", 8, "  - {id: db, type: db, metadata: {source: store}}", [("MISSING_REQUIRED_FIELD", 8)]),
    (
        "router-strategy-typo",
        5,
        "  - {id: router, type: router, metadata: {strategy: keywords}}",
        [("INVALID_VALUE", 5)],
    ),
    (
        "router-bad-pattern",
        5,
        '  - {id: router, type: router, metadata: {strategy: pattern, routes: [{intent: a, pattern: "(x"}]}}',
        [("INVALID_VALUE", 5)],
    ),
    (
        "router-bad-rule",
        5,
        "  - {id: router, type: router, metadata: {strategy: rules, routes: [{intent: a, condition: has(x)}]}}",
        [("INVALID_VALUE", 5)],
    ),
    (
        "router-llm-without-source",
        5,
        "  - {id: router, type: router, metadata: {strategy: llm}}",
        [("MISSING_REQUIRED_FIELD", 5)],
    ),
    (
        "route-without-intent",
        5,
        "  - {id: router, type: router, metadata: {strategy: keyword, routes: [{keywords: [a]}]}}",
        [("MISSING_REQUIRED_FIELD", 5)],
    ),
    ("edge-not-a-mapping", 13, "  - llm", [("INVALID_TYPE", 13)]),
    ("duplicate-source", 22, "  - {id: pics, kind: image, config: {}}", [("INVALID_VALUE", 22)]),
    ("metadata-not-a-mapping", 6, "  - {id: llm, type: llm, metadata: chat}", [("INVALID_TYPE", 6)]),
]


@pytest.mark.parametrize(("case", "line", "text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_malformed_spec(tmp_path: Path, case: str, line: int, text: str, expected: list[tuple[str, int]]) -> None:
    lines = BASE.splitlines()
    if line > len(lines):
        lines.append(text)
    else:
        lines[line - 1] = text
    path = tmp_path / f"{case}.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ManifestError) as err:
        OpenWorkflow(state=":memory:").load(path)
    got = [(d.code, d.line) for d in err.value.diagnostics]
    assert all(d.file == str(path) for d in err.value.diagnostics)
    print(case, got)
    assert got == expected


def test_the_base_spec_loads() -> None:
    ow = OpenWorkflow(state=":memory:")
    ow.load(BASE)
    out = ow.workflow("flow").execute(inputs={"user_input": "hi"}).outputs
    assert (out["text_result"], out["db_result"]) == ("hi", [{"intent": "text"}])


def test_corpus_size() -> None:
    assert len(CASES) >= 20
