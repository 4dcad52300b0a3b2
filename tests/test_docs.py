"""The examples in docs/ are true: every marked block is loaded or run, and every code is documented.

Markers (an HTML comment on the line before a fenced block):

- ``<!-- loads -->`` before a ```yaml or ```json block: it loads without error.
- ``<!-- expect: CODE -->`` before a ```yaml or ```json block: loading it raises `ManifestError`
  whose diagnostics include CODE.
- ``<!-- warns: CODE -->`` before a ```yaml or ```json block: it loads, with a CODE warning.
- ``<!-- owf-validate -->`` before a ```text block that follows an ``expect`` or ``warns`` block:
  each of its lines is printed by ``owf validate flow.yaml`` (or ``flow.json``) for that example.
- ``<!-- run -->`` before a ```python block: it runs without error (its asserts are the test).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from owf_magics import ManifestError, OpenWorkflow
from owf_magics.cli import main
from owf_magics.errors import DIAGNOSTIC_CODES

DOCS = Path(__file__).resolve().parent.parent / "docs"
DOC_FILES = (
    "manifests.md",
    "decisions.md",
    "errors.md",
    "durable.md",
    "notebook.md",
    "mcp.md",
    "security.md",
    "composition.md",
    "scale.md",
    "patterns.md",
)
WARNING_CODES = {"ALIAS", "VERSION_MISMATCH", "SCOPE", "URL_HOST_FROM_INPUT", "COMPLEXITY", "LITERAL_CREDENTIAL"}
#: Reserved for unexpected errors: no manifest is meant to produce it (docs/errors.md#internal).
UNTRIGGERABLE = {"INTERNAL"}
#: Codes whose examples only fail in a restricted registry: the registry their examples load in.
REGISTRY_FOR = {"HANDLER_NOT_ALLOWED": {"allow_handlers": {"http"}}}

_BLOCK_RE = re.compile(
    r"<!--\s*(?P<marker>[\w-]+)(?::\s*(?P<arg>[A-Z_]+))?\s*-->\s*\n"
    r"```(?P<lang>\w+)\n(?P<body>.*?)^```",
    re.S | re.M,
)


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    marker: str
    arg: str | None
    lang: str
    body: str

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def _blocks(doc: str) -> list[Block]:
    text = (DOCS / doc).read_text(encoding="utf-8")
    out = []
    for m in _BLOCK_RE.finditer(text):
        line = text.count("\n", 0, m.start("body")) + 1
        out.append(Block(doc, line, m["marker"], m["arg"], m["lang"], m["body"]))
    return out


ALL_BLOCKS = [b for doc in DOC_FILES for b in _blocks(doc)]


def _of(marker: str) -> list[Block]:
    return [b for b in ALL_BLOCKS if b.marker == marker]


def _ids(blocks: list[Block]) -> list[str]:
    return [b.id for b in blocks]


def test_docs_have_examples():
    assert _of("loads"), "no <!-- loads --> blocks found"
    assert _of("expect"), "no <!-- expect: CODE --> blocks found"
    for b in ALL_BLOCKS:
        assert b.marker in {"loads", "expect", "warns", "owf-validate", "run"}, f"{b.id}: unknown marker {b.marker}"
        if b.marker in {"loads", "expect", "warns"}:
            assert b.lang in {"yaml", "json"}, f"{b.id}: {b.marker} needs a yaml or json block"


def test_readme_links_every_doc():
    readme = (DOCS / "README.md").read_text(encoding="utf-8")
    for doc in DOC_FILES:
        assert f"({doc})" in readme, f"docs/README.md does not link {doc}"


@pytest.mark.parametrize("code", sorted(DIAGNOSTIC_CODES))
def test_every_diagnostic_code_has_a_section(code):
    text = (DOCS / "errors.md").read_text(encoding="utf-8")
    assert re.search(rf"^#{{2,4}} `?{code}`?\s*$", text, re.M), f"docs/errors.md has no section for {code}"


@pytest.mark.parametrize("code", sorted(set(DIAGNOSTIC_CODES) - WARNING_CODES - UNTRIGGERABLE))
def test_every_error_code_has_an_example(code):
    assert any(b.arg == code for b in _of("expect") if b.doc == "errors.md"), (
        f"docs/errors.md has no <!-- expect: {code} --> example"
    )


@pytest.mark.parametrize("block", _of("loads"), ids=_ids(_of("loads")))
def test_loads(block):
    items = OpenWorkflow(state=":memory:").load(block.body)
    assert items, f"{block.id}: the example loaded nothing"


@pytest.mark.parametrize("block", _of("expect"), ids=_ids(_of("expect")))
def test_expect(block):
    assert block.arg in DIAGNOSTIC_CODES, f"{block.id}: {block.arg} is not a diagnostic code"
    with pytest.raises(ManifestError) as info:
        OpenWorkflow(state=":memory:", **REGISTRY_FOR.get(block.arg, {})).load(block.body)
    assert block.arg in info.value.codes, f"{block.id}: expected {block.arg}, got {info.value.codes}"


@pytest.mark.parametrize("block", _of("warns"), ids=_ids(_of("warns")))
def test_warns(block):
    ow = OpenWorkflow(state=":memory:")
    ow.load(block.body)
    assert block.arg in [w.code for w in ow.warnings], f"{block.id}: expected a {block.arg} warning"


def _validate_output_pairs() -> list[tuple[Block, Block]]:
    pairs = []
    for doc in DOC_FILES:
        blocks = _blocks(doc)
        for prev, cur in itertools.pairwise(blocks):
            if cur.marker == "owf-validate":
                assert prev.marker in {"expect", "warns", "loads"}, f"{cur.id}: owf-validate must follow an example"
                pairs.append((prev, cur))
    return pairs


PAIRS = _validate_output_pairs()


@pytest.mark.parametrize(("example", "output"), PAIRS, ids=[o.id for _, o in PAIRS])
def test_owf_validate_prints_the_documented_lines(example, output, tmp_path, monkeypatch, capsys):
    name = "flow.json" if example.lang == "json" else "flow.yaml"
    (tmp_path / name).write_text(example.body, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    main(["validate", name])
    printed = capsys.readouterr().out.splitlines()
    shown = "\n  ".join(printed)
    for line in output.body.splitlines():
        assert line in printed, f"{output.id}: `owf validate` did not print\n  {line}\nit printed:\n  {shown}"


@pytest.mark.parametrize("block", _of("run"), ids=_ids(_of("run")))
def test_run(block):
    assert block.lang == "python", f"{block.id}: run needs a python block"
    exec(compile(block.body, block.id, "exec"), {"__name__": "docs_example"})


def _slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(doc: str) -> set[str]:
    text = re.sub(r"^```.*?^```", "", (DOCS / doc).read_text(encoding="utf-8"), flags=re.S | re.M)
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        slug = _slug(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


@pytest.mark.parametrize("doc", [*DOC_FILES, "README.md"])
def test_links_between_docs_resolve(doc):
    text = (DOCS / doc).read_text(encoding="utf-8")
    for linked, anchor in re.findall(r"\]\(((?:[\w-]+\.md)?)(?:#([\w-]+))?\)", text):
        target = linked or doc
        assert (DOCS / target).exists(), f"{doc}: link to missing {target}"
        if anchor:
            assert anchor in _anchors(target), f"{doc}: no heading for #{anchor} in {target}"
