"""The loader only ever builds plain data, refuses tricks, and fails with a line rather than a crash."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from owf_magics import ManifestError, OpenWorkflow
from owf_magics.manifest.loader import MAX_DEPTH, MAX_NODES


def _errors(source: Any, **kwargs: Any) -> tuple[OpenWorkflow, ManifestError]:
    ow = OpenWorkflow()
    with pytest.raises(ManifestError) as info:
        ow.load(source, **kwargs)
    return ow, info.value


def _assert_empty(ow: OpenWorkflow) -> None:
    assert ow.workflows() == []
    assert ow.agents() == []
    assert ow.connectors() == []


def _within(seconds: float, fn: Callable[[], Any]) -> Any:
    """Run `fn` in a daemon thread; fail (instead of hanging the suite) when it takes too long."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed back to the test below
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds}s"
    if "error" in box:
        raise box["error"]
    return box.get("value")


# ------------------------------------------------------------------------------------------------
# tags that would construct Python objects


def _payloads(marker: Path) -> list[tuple[str, str]]:
    """(name, YAML value) pairs that would run code (or import it) under yaml.unsafe_load."""
    m = str(marker)
    return [
        ("object/apply os.system", f'!!python/object/apply:os.system ["touch {m}"]'),
        ("object/apply subprocess", f'!!python/object/apply:subprocess.check_call [["touch", "{m}"]]'),
        ("object/new subprocess.Popen", f'!!python/object/new:subprocess.Popen [["touch", "{m}"]]'),
        ("name os.system", "!!python/name:os.system"),
        ("module os", "!!python/module:os"),
        ("object", "!!python/object:subprocess.Popen {args: [touch, " + m + "]}"),
    ]


PAYLOAD_NAMES = [name for name, _ in _payloads(Path("x"))]


def test_the_payloads_are_live(tmp_path: Path) -> None:
    """Control: PyYAML's unsafe loader really runs the payload, so the refusals below mean something."""
    marker = tmp_path / "control"
    yaml.unsafe_load(dict(_payloads(marker))["object/apply subprocess"])
    assert marker.exists()


@pytest.mark.parametrize("name", PAYLOAD_NAMES)
def test_python_tags_are_refused_and_nothing_runs(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "pwned"
    payload = dict(_payloads(marker))[name]
    text = textwrap.dedent(
        """\
        workflows:
          - name: Innocent
            steps:
              - id: pause
                type: wait
                duration: 1s
                metadata:
                  note: {payload}
        """
    ).replace("{payload}", payload)
    ow, err = _errors(text)
    assert err.codes == ["UNSAFE_YAML"], err
    (diag,) = err.diagnostics
    assert diag.line == 8
    assert "python/" in diag.message
    assert diag.hint
    assert not marker.exists()
    _assert_empty(ow)


@pytest.mark.parametrize(
    "template",
    [
        # the whole document is tagged
        '--- !!python/object/apply:os.system ["touch {m}"]\n',
        # a tagged key
        '? !!python/object/apply:os.system ["touch {m}"]\n: value\n',
        # behind an anchor and used through an alias
        'type: agent\nname: a\nmodel: {provider: echo}\nmetadata:\n  x: &p !!python/object/apply:os.system ["touch {m}"]\n'
        "  y: *p\n",
        # in a merge key
        'type: agent\nname: a\n<<: !!python/object/apply:os.system ["touch {m}"]\nmodel: {provider: echo}\n',
    ],
    ids=["document", "key", "alias", "merge"],
)
def test_python_tags_anywhere_are_refused(tmp_path: Path, template: str) -> None:
    marker = tmp_path / "pwned"
    ow, err = _errors(template.replace("{m}", str(marker)))
    assert "UNSAFE_YAML" in err.codes
    assert set(err.codes) <= {"UNSAFE_YAML", "YAML_SYNTAX"}
    assert not marker.exists()
    _assert_empty(ow)


def test_a_refused_document_blocks_the_whole_load(tmp_path: Path) -> None:
    """A valid document beside an unsafe one is not registered either (a load is all or nothing)."""
    marker = tmp_path / "pwned"
    text = (
        "type: agent\nname: fine\nmodel: {provider: echo}\n"
        "---\n"
        f'type: agent\nname: evil\nmodel: {{provider: echo}}\ndescription: !!python/object/apply:os.system ["touch {marker}"]\n'
    )
    ow, err = _errors(text)
    assert [(d.code, d.line) for d in err.diagnostics] == [("UNSAFE_YAML", 8)]
    assert not marker.exists()
    _assert_empty(ow)


def test_unsafe_tag_file_and_validate(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(
        f'type: agent\nname: evil\nmodel: {{provider: echo}}\nicon: !!python/object/apply:os.system ["touch {marker}"]\n'
    )
    ow = OpenWorkflow()
    with pytest.raises(ManifestError) as info:
        ow.validate(path)
    assert [(d.code, d.line, d.file) for d in info.value.diagnostics] == [("UNSAFE_YAML", 4, str(path))]
    assert not marker.exists()
    _assert_empty(ow)


@pytest.mark.parametrize(
    "tag", ["!!binary aGVsbG8=", "!!set {a, b}", "!!omap [{a: 1}]", "!custom value", "!<tag:example.com,2000:x> 1"]
)
def test_other_non_data_tags_are_refused(tag: str) -> None:
    ow, err = _errors(f"type: agent\nname: a\nmodel: {{provider: echo}}\nmetadata:\n  x: {tag}\n")
    assert [(d.code, d.line) for d in err.diagnostics] == [("UNSAFE_YAML", 5)]
    _assert_empty(ow)


def test_standard_data_tags_are_fine() -> None:
    ow = OpenWorkflow()
    ow.load(
        "type: agent\nname: a\nmodel: {provider: echo}\nmetadata: !!map\n  s: !!str 123\n  i: !!int '7'\n  l: !!seq [1]\n"
    )
    (agent,) = ow.agents()
    assert agent.model.metadata == {"s": "123", "i": 7, "l": [1]}


# ------------------------------------------------------------------------------------------------
# duplicate keys


@pytest.mark.parametrize(
    ("text", "line", "first"),
    [
        ("type: agent\nname: a\nmodel: {provider: echo}\nname: b\n", 4, 2),
        ("type: agent\nname: a\nmodel: {provider: echo, provider: scripted}\n", 3, 3),
        (
            "workflows:\n  - name: w\n    steps:\n      - id: s\n        type: wait\n        duration: 1s\n        duration: 2s\n",
            7,
            6,
        ),
        ('{"type": "agent",\n "name": "a",\n "model": {"provider": "echo"},\n "name": "b"}\n', 4, 2),
        # keys are text: `1` and "1" (or on and 'on') are the same key
        ("type: agent\nname: a\nmodel: {provider: echo}\nmetadata:\n  1: x\n  '1': y\n", 6, 5),
    ],
    ids=["top-level", "flow", "nested-step", "json", "same-text"],
)
def test_duplicate_keys_name_both_lines(text: str, line: int, first: int) -> None:
    ow, err = _errors(text)
    assert [(d.code, d.line) for d in err.diagnostics] == [("DUPLICATE_KEY", line)]
    (diag,) = err.diagnostics
    assert f"line {first}" in diag.message
    assert diag.hint
    _assert_empty(ow)


def test_a_key_three_times_is_reported_twice() -> None:
    _, err = _errors("type: agent\nname: a\nname: b\nname: c\nmodel: {provider: echo}\n")
    assert [(d.code, d.line) for d in err.diagnostics] == [("DUPLICATE_KEY", 3), ("DUPLICATE_KEY", 4)]
    assert all("line 2" in d.message for d in err.diagnostics)


def test_merge_keys_are_not_duplicates() -> None:
    ow = OpenWorkflow()
    ow.load("type: agent\nname: a\nmodel:\n  <<: {provider: echo, temperature: 0.5}\n  temperature: 0.1\n")
    assert ow.agents()[0].model.model.temperature == 0.1


# ------------------------------------------------------------------------------------------------
# alias bombs, recursion and depth


def _billion_laughs(levels: int = 9, width: int = 9) -> str:
    names = "abcdefghijklmnop"
    lines = [f"  {names[0]}: &{names[0]} [" + ", ".join(['"lol"'] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"  {names[i]}: &{names[i]} [" + ", ".join([f"*{names[i - 1]}"] * width) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("where", ["metadata", "step input", "after a duplicate key"])
def test_alias_bomb_is_refused_quickly(where: str) -> None:
    bomb = _billion_laughs()  # 9**9 ≈ 387 million nodes when expanded
    if where == "metadata":
        text = "type: agent\nname: a\nmodel: {provider: echo}\nmetadata:\n" + bomb
    else:
        prefix = "    x: 1\n    x: 2\n" if where == "after a duplicate key" else ""
        text = (
            "type: workflow\nname: w\nsteps:\n  - id: s\n    type: transform\n    expression: hi\n    input:\n"
            + prefix
            + bomb.replace("\n  ", "\n    ").replace("  a:", "    a:", 1)
        )
    tracemalloc.start()
    started = time.perf_counter()
    try:
        ow, err = _within(10, lambda: _errors(text))
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "YAML_SYNTAX" in err.codes
    bomb_diag = next(d for d in err.diagnostics if d.code == "YAML_SYNTAX")
    assert f"{MAX_NODES:,}" in bomb_diag.message
    assert bomb_diag.hint and "alias" in bomb_diag.hint
    assert bomb_diag.line is not None
    assert elapsed < 5, elapsed
    assert peak < 100 * 2**20, f"peak memory {peak / 2**20:.0f} MiB"
    _assert_empty(ow)


def test_many_small_aliases_are_fine() -> None:
    ow = OpenWorkflow()
    ow.load(
        "type: agent\nname: a\nmodel: &m {provider: echo}\nmetadata:\n  copies: [" + ", ".join(["*m"] * 200) + "]\n"
    )
    assert len(ow.agents()[0].model.metadata["copies"]) == 200


@pytest.mark.parametrize(
    "text",
    ["a: &a [*a]\n", "&a {x: *a}\n", "workflows:\n  - &w {name: x, steps: [*w]}\n"],
    ids=["list", "mapping", "workflow"],
)
def test_recursive_aliases_are_refused(text: str) -> None:
    ow, err = _within(10, lambda: _errors(text))
    assert err.codes == ["YAML_SYNTAX"]
    assert "recursive" in err.diagnostics[0].message
    assert err.diagnostics[0].line is not None
    _assert_empty(ow)


_DEEP_TEXT = """
def deep_text(form, n):
    if form == "flow":
        return "type: agent\\nname: a\\nmodel: {provider: echo}\\nmetadata:\\n  x: " + "[" * n + "]" * n + "\\n"
    if form == "json":
        return '{"type": "agent", "name": "a", "model": {"provider": "echo"}, "metadata": ' + '{"k": ' * n + "1" + "}" * n + "}"
    if form == "block-sequence":
        return "type: agent\\nname: a\\nmodel: {provider: echo}\\nmetadata:\\n  x:\\n" + "  " + "- " * n + "x\\n"
    return "type: agent\\nname: a\\nmodel: {provider: echo}\\nmetadata:\\n" + "".join(" " * (i + 1) + "k:\\n" for i in range(n)) + " " * (n + 1) + "k: 1\\n"
"""

#: where the collection MAX_DEPTH + 1 levels deep starts (line, column), for each form of `_DEEP_TEXT`
_TOO_DEEP_AT = {
    # the document's mapping (1) > metadata's (2) > the lists from column 6 of line 5 on
    "flow": (5, 6 + MAX_DEPTH - 2),
    # the document (1) > metadata's mapping from column 75 (2) > '{"k": ', 6 characters each
    "json": (1, 75 + 6 * (MAX_DEPTH - 1)),
    # the document (1) > metadata's mapping (2) > the lists from column 3 of line 6 on, 2 characters each
    "block-sequence": (6, 3 + 2 * (MAX_DEPTH - 2)),
    # one level a line and a column: metadata's mapping (level 2) starts at line 5, column 2
    "block-mapping": (5 + MAX_DEPTH - 1, MAX_DEPTH + 1),
}


def _load_in_subprocess(form: str, depth: int, before: str = "") -> dict[str, Any]:
    """Load `_DEEP_TEXT` in a fresh interpreter (a crash must not take the suite down); the first diagnostic."""
    code = (
        "import json\n"
        + before
        + _DEEP_TEXT
        + textwrap.dedent(
            f"""
            from owf_magics import OpenWorkflow, ManifestError
            try:
                OpenWorkflow().load(deep_text({form!r}, {depth}))
            except ManifestError as err:
                d = err.diagnostics[0]
                print(json.dumps({{"codes": err.codes, "line": d.line, "column": d.column, "message": d.message, "hint": d.hint}}))
            else:
                print(json.dumps(None))
            """
        )
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _assert_ours(form: str, got: dict[str, Any]) -> None:
    """Our diagnostic, in our words and at the collection that is one level too deep: never the YAML library's."""
    assert got is not None, "loaded without an error"
    assert got["codes"] == ["YAML_SYNTAX"], got
    assert got["message"] == f"the document is nested more than {MAX_DEPTH} levels deep", got
    assert got["hint"] == "flatten the data", got
    assert (got["line"], got["column"]) == _TOO_DEEP_AT[form], got


@pytest.mark.parametrize(
    ("form", "depth"),
    [
        *((form, depth) for form in ("flow", "json", "block-sequence") for depth in (MAX_DEPTH + 1, 1_000, 100_000)),
        # indentation grows quadratically: 1,000 levels is already 500 kB
        ("block-mapping", MAX_DEPTH + 1),
        ("block-mapping", 1_000),
    ],
)
def test_deep_nesting_is_refused_without_crashing(form: str, depth: int) -> None:
    """Very deep nesting is an error with a line, not a RecursionError or a crash of libyaml's C composer.

    Runs in a subprocess: before the fix, 100,000 levels crashed the interpreter (a segfault). Our
    limit answers, whatever the YAML library's own: libyaml 0.2.6 (PyYAML 6.0.4) refuses more than
    1,000 levels itself and, on ``[[[[...``, before its events reach our limit.
    """
    _assert_ours(form, _load_in_subprocess(form, depth))


@pytest.mark.parametrize(
    ("form", "depth"), [("flow", MAX_DEPTH + 1), ("json", 1_000), ("block-mapping", MAX_DEPTH + 1)]
)
def test_a_lower_nesting_limit_in_libyaml_does_not_change_our_diagnostic(form: str, depth: int) -> None:
    """libyaml >= 0.2.6 lets its nesting limit be set for the whole process (PyYAML >= 6.0.4 exposes it);
    below ours, it stops the composer first, and the loader still reports its own limit."""
    set_limit = textwrap.dedent(
        """
        import sys
        from yaml import _yaml
        setter = getattr(_yaml, "_set_max_nest_level", None)
        if setter is None or _yaml._get_max_nest_level() < 0:
            print(json.dumps("unavailable"))
            sys.exit(0)
        setter(20)
        """
    )
    got = _load_in_subprocess(form, depth, before=set_limit)
    if got == "unavailable":
        pytest.skip("this PyYAML/libyaml cannot set a nesting limit")
    _assert_ours(form, got)


def test_nesting_up_to_the_limit_is_fine() -> None:
    ow = OpenWorkflow()
    # mapping (1) > metadata (2) > x: lists from level 3 on
    n = MAX_DEPTH - 2
    ow.load("type: agent\nname: a\nmodel: {provider: echo}\nmetadata:\n  x: " + "[" * n + "]" * n + "\n")
    assert len(ow.agents()) == 1


# ------------------------------------------------------------------------------------------------
# syntax errors name a line


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("workflows:\n  - name: w\n    steps:\n\t- id: a\n", 4),
        ("type: agent\nname: a\nmodel:\n\tprovider: echo\n", 4),
        ("type: agent\nname: a\nmodel: {provider: echo}\nmetadata:\n  a: 1\n \tb: 2\n", 6),
    ],
    ids=["tab-before-dash", "tab-indent", "space-then-tab"],
)
def test_tabs_give_yaml_syntax_with_a_line(text: str, line: int) -> None:
    ow, err = _errors(text)
    assert [(d.code, d.line) for d in err.diagnostics] == [("YAML_SYNTAX", line)]
    assert "tab" in (err.diagnostics[0].hint or "").lower()
    _assert_empty(ow)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("type: agent\nname: a\nmodel:\n    provider: echo\n  id: x\n", 5),
        ("workflows:\n  - name: w\n    steps:\n      - id: a\n        type: wait\n       duration: 1s\n", 6),
        ("workflows:\n  - name: w\n   steps: []\n", 3),
        ("type: agent\nname: a\n  model: {provider: echo}\n", 3),
        ("type: agent\nname: [a, b\nmodel: {provider: echo}\n", 3),
        ('type: agent\nname: "unclosed\nmodel: {provider: echo}\n', 2),
        ("type: agent\nname: a\nmodel: {provider: echo\n", 3),
        ("type: agent\nname: 'it''s\n", 2),
    ],
    ids=[
        "dedent-in-mapping",
        "dedent-in-step",
        "misaligned-key",
        "over-indented",
        "unclosed-flow",
        "unclosed-double-quote",
        "unclosed-brace-at-end",
        "unclosed-single-quote",
    ],
)
def test_bad_indentation_and_quoting_give_a_line(text: str, line: int) -> None:
    ow, err = _errors(text)
    assert [(d.code, d.line) for d in err.diagnostics] == [("YAML_SYNTAX", line)], err
    diag = err.diagnostics[0]
    assert diag.message and diag.hint
    assert diag.line is not None and diag.line <= len(text.splitlines())
    _assert_empty(ow)


@pytest.mark.parametrize(
    ("text", "line"),
    [("type: agent\nname: a\x00\n", 2), ("type: agent\nname: é\nx: \x07\n", 3), ("a: 1\n\nb: \ud800\n", 3)],
    ids=["nul", "bell-after-non-ascii", "lone-surrogate"],
)
def test_control_characters_give_a_line(text: str, line: int) -> None:
    ow, err = _errors(text)
    assert [(d.code, d.line) for d in err.diagnostics] == [("YAML_SYNTAX", line)]
    _assert_empty(ow)


def test_json_errors_use_the_json_position() -> None:
    _, err = _errors('{\n  "type": "agent",\n  "name": "a"\n  "model": {"provider": "echo"}\n}\n', name="a.json")
    assert [(d.code, d.line) for d in err.diagnostics] == [("YAML_SYNTAX", 4)]
    assert "delimiter" in err.diagnostics[0].message


def test_json_comments_get_a_hint() -> None:
    _, err = _errors('{\n  // a comment\n  "type": "agent"\n}\n', name="a.json")
    assert err.codes == ["YAML_SYNTAX"]
    assert "comments" in (err.diagnostics[0].hint or "")


def test_syntax_error_in_one_file_of_a_folder(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text("type: agent\nname: a\nmodel: {provider: echo}\n")
    (tmp_path / "bad.yaml").write_text("type: agent\nname: [b\n")
    ow, err = _errors(tmp_path)
    assert [(Path(d.file or "").name, d.code) for d in err.diagnostics] == [("bad.yaml", "YAML_SYNTAX")]
    _assert_empty(ow)


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("type: agent\nname: caf\xe9\n".encode("latin-1"))
    ow, err = _errors(path)
    assert err.codes == ["YAML_SYNTAX"]
    assert err.diagnostics[0].file == str(path)
    _assert_empty(ow)


def test_python_data_that_contains_itself_or_nests_too_deep() -> None:
    agent: dict[str, Any] = {"type": "agent", "name": "a", "model": {"provider": "echo"}}
    agent["metadata"] = agent
    deep: list[Any] = []
    for _ in range(5_000):
        deep = [deep]
    for source in (agent, {"type": "agent", "name": "a", "model": {"provider": "echo"}, "metadata": {"x": deep}}):
        ow, err = _within(10, lambda source=source: _errors(source))
        assert [(d.code, d.line) for d in err.diagnostics] == [("INVALID_VALUE", None)]
        assert f"more than {MAX_DEPTH} levels" in err.diagnostics[0].message
        _assert_empty(ow)
