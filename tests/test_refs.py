"""References and version ranges resolve to the highest loaded match."""

from __future__ import annotations

import pytest

from owf_magics import ManifestError
from owf_magics.manifest.refs import RefError, highest_match, parse_ref


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("connector:community/slack@1.2.0", ("connector", "community", "slack", "1.2.0", None)),
        ("agent:acme/bot@^1.0", ("agent", "acme", "bot", "^1.0", None)),
        ("connector:x/y@>=0.1.0 <0.3.0", ("connector", "x", "y", ">=0.1.0 <0.3.0", None)),
        ("connector:github/mcp.create_issue", ("connector", "github", "mcp", None, "create_issue")),
        ("connector:github/mcp@0.4.1.create_issue", ("connector", "github", "mcp", "0.4.1", "create_issue")),
        ("weather", ("connector", None, "weather", None, None)),
        ("connector:community/slack@latest", ("connector", "community", "slack", None, None)),
    ],
)
def test_parse(text, expected):
    r = parse_ref(text, expected_kind="connector" if not text.startswith("agent") else None, allow_action=True)
    assert (r.kind, r.namespace, r.name, r.range, r.action) == expected


def test_bad_refs():
    with pytest.raises(RefError) as err:
        parse_ref("connector:x/y@>>1")
    assert err.value.code == "INVALID_VERSION_RANGE"
    with pytest.raises(RefError):
        parse_ref("agent:x/y@1.0.0", expected_kind="connector")
    with pytest.raises(RefError):
        parse_ref("widget:x/y")


@pytest.mark.parametrize(
    ("rng", "best"),
    [
        ("~1.2", "1.2.9"),
        ("^1.0", "1.9.0"),
        (">=0.1.0 <0.3.0", "0.2.5"),
        (None, "2.0.0"),
        ("1.2.0", "1.2.0"),
        ("^3", None),
    ],
)
def test_highest_match(rng, best):
    assert highest_match(["0.2.5", "1.2.0", "1.2.9", "1.9.0", "2.0.0"], rng) == best


def _connector(version: str) -> str:
    return f"""
connector: {{name: tools, namespace: acme, version: {version}, kind: sdk}}
actions:
  - name: run
    handler: {{function: owf_magics.demo_tools.text_stats}}
"""


def test_registry_holds_many_versions(ow):
    for v in ("1.0.0", "1.4.2", "2.0.0"):
        ow.load(_connector(v))
    ow.load("""
name: uses
steps:
  - {id: a, type: action, connector: "connector:acme/tools@^1.0", action: run, input: {text: hi}}
  - {id: b, type: action, connector: "connector:acme/tools", action: run, input: {text: hi}}
  - {id: c, type: action, connector: "tools@~1.0", action: run, input: {text: hi}}
""")
    plan = ow.workflow("uses").plan()
    assert plan["a"].connector == "connector:acme/tools@1.4.2"
    assert plan["b"].connector == "connector:acme/tools@2.0.0"
    assert plan["c"].connector == "connector:acme/tools@1.0.0"
    assert sorted(c.version for c in ow.connectors()) == ["1.0.0", "1.4.2", "2.0.0"]


def test_unmatched_range_lists_loaded_versions(ow):
    ow.load(_connector("1.0.0"))
    with pytest.raises(ManifestError) as err:
        ow.load("name: u\nsteps: [{id: a, connector: 'connector:acme/tools@^2', action: run}]")
    [d] = err.value.diagnostics
    assert d.code == "UNKNOWN_REFERENCE" and "1.0.0" in d.message
