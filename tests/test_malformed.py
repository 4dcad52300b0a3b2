"""The malformed-manifest corpus: each file in tests/malformed/ must fail with exactly the listed errors.

`tests/malformed/expected.yaml` lists, for every file, the ``[CODE, line]`` of each error (optionally
with a text the message or hint must contain). A load must raise `ManifestError` with exactly those
errors, each naming its file and line, and must leave the registry empty.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from owf_magics import ManifestError, OpenWorkflow
from owf_magics.errors import DIAGNOSTIC_CODES

CORPUS = Path(__file__).resolve().parent / "malformed"
EXPECTED_FILE = CORPUS / "expected.yaml"
WARNING_CODES = {"ALIAS", "VERSION_MISMATCH", "SCOPE", "URL_HOST_FROM_INPUT", "COMPLEXITY", "LITERAL_CREDENTIAL"}
#: Reserved for unexpected errors: no manifest is meant to produce it (docs/errors.md#internal).
UNTRIGGERABLE = {"INTERNAL"}
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def _expected() -> dict[str, list[list[Any]]]:
    data = yaml.safe_load(EXPECTED_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


EXPECTED = _expected()


def _corpus_files() -> list[str]:
    return sorted(p.name for p in CORPUS.iterdir() if p.suffix in MANIFEST_SUFFIXES and p.name != EXPECTED_FILE.name)


def _load_errors(ow: OpenWorkflow, source: Any, **kwargs: Any) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        ow.load(source, **kwargs)
    return info.value


def _pairs(err: ManifestError) -> list[tuple[str, int | None]]:
    return sorted((d.code, d.line) for d in err.diagnostics)


def _wanted(name: str) -> list[tuple[str, int]]:
    return sorted((str(item[0]), int(item[1])) for item in EXPECTED[name])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_malformed_file(name: str) -> None:
    path = CORPUS / name
    ow = OpenWorkflow()
    err = _load_errors(ow, path)

    assert _pairs(err) == _wanted(name), "\n" + "\n".join(d.format() for d in err.diagnostics)
    for d in err.diagnostics:
        assert d.severity == "error"
        assert d.message and d.message.strip(), d
        assert d.file == str(path), d
        assert isinstance(d.line, int) and d.line >= 1, d
        assert d.code in DIAGNOSTIC_CODES, d
    lines = path.read_text(encoding="utf-8").splitlines()
    for d in err.diagnostics:
        assert d.line is not None and d.line <= len(lines), f"line {d.line} is past the end of the file: {d}"
    for item in EXPECTED[name]:
        if len(item) < 3:
            continue
        code, line, text = str(item[0]), int(item[1]), str(item[2])
        matching = [d for d in err.diagnostics if d.code == code and d.line == line]
        assert any(text in d.message or text in (d.hint or "") for d in matching), (
            f"no {code} on line {line} mentions {text!r}: " + "; ".join(d.format() for d in matching)
        )
    # a failed load registers nothing
    assert ow.workflows() == []
    assert ow.agents() == []
    assert ow.connectors() == []
    assert str(err).startswith(f"{len(err.diagnostics)} problem")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_malformed_text_matches_file(name: str) -> None:
    """Loading the same text (not the path) reports the same codes and lines, under the given name."""
    path = CORPUS / name
    err = _load_errors(OpenWorkflow(), path.read_text(encoding="utf-8"), name=name)
    assert _pairs(err) == _wanted(name)
    assert {d.file for d in err.diagnostics} == {name}


@pytest.mark.parametrize(
    "name", ["multi_cross_checks.yaml", "unknown_ref_agent.yaml", "yaml_syntax_unclosed_quote.yaml"]
)
def test_line_offset_shifts_every_line(name: str) -> None:
    path = CORPUS / name
    err = _load_errors(OpenWorkflow(), path.read_text(encoding="utf-8"), line_offset=10)
    assert _pairs(err) == sorted((code, line + 10) for code, line in _wanted(name))


def test_failed_load_keeps_earlier_manifests() -> None:
    ow = OpenWorkflow()
    ow.load("agents:\n  - name: keeper\n    model: {provider: echo}\n")
    _load_errors(ow, CORPUS / "multi_manifests.yaml")
    assert [a.name for a in ow.agents()] == ["keeper"]
    assert ow.workflows() == []
    assert ow.connectors() == []


def test_directory_load_reports_every_file() -> None:
    """Loading the whole folder reports each file's errors under its own name (and no others)."""
    err = _load_errors(OpenWorkflow(), CORPUS)
    got = Counter((Path(d.file or "").name, d.code, d.line) for d in err.diagnostics)
    # across files, manifests may collide (DUPLICATE_MANIFEST) or resolve each other's references
    cross = {"DUPLICATE_MANIFEST", "UNKNOWN_REFERENCE", "CIRCULAR_DEPENDENCY", "MISSING_RUNTIME", "INVALID_VALUE"}
    for name in EXPECTED:
        for code, line in _wanted(name):
            if code not in cross:
                assert got[(name, code, line)] >= 1, f"{name}: {code} on line {line} missing from the folder load"
    # expected.yaml is in the folder too: it is not a manifest
    assert {Path(d.file or "").name for d in err.diagnostics} <= {*EXPECTED, EXPECTED_FILE.name}
    assert {d.code for d in err.diagnostics if d.file == str(EXPECTED_FILE)} == {"UNKNOWN_MANIFEST"}


def test_warnings_ride_along_and_never_raise() -> None:
    """Alias spellings give ALIAS warnings beside the errors; once the error is fixed, the load succeeds."""
    path = CORPUS / "alias_depends_on_unknown.yaml"
    err = _load_errors(OpenWorkflow(), path)
    assert [(w.code, w.line, w.severity) for w in err.warnings] == [("ALIAS", 11, "warning")]
    ow = OpenWorkflow()
    ow.load(path.read_text(encoding="utf-8").replace("[firts]", "[first]"))
    assert [(w.code, w.line) for w in ow.warnings] == [("ALIAS", 11)]
    assert [w.name for w in ow.workflows()] == ["Alias Needs"]


# ------------------------------------------------------------------------------------------------
# the corpus itself


def test_expected_lists_every_file_and_nothing_else() -> None:
    files = set(_corpus_files())
    listed = set(EXPECTED)
    assert files - listed == set(), "files without an entry in expected.yaml"
    assert listed - files == set(), "entries in expected.yaml without a file"


def test_expected_entries_are_well_formed() -> None:
    for name, items in EXPECTED.items():
        assert isinstance(items, list) and items, name
        for item in items:
            assert isinstance(item, list) and len(item) in (2, 3), (name, item)
            assert item[0] in DIAGNOSTIC_CODES and item[0] not in WARNING_CODES, (name, item)
            assert isinstance(item[1], int) and item[1] >= 1, (name, item)
            if len(item) == 3:
                assert isinstance(item[2], str) and item[2], (name, item)


#: Codes that only a restricted registry reports (the corpus loads in the default one); each has its own tests.
RESTRICTED_ONLY = {"HANDLER_NOT_ALLOWED"}  # tests/test_handler_switch.py


def test_corpus_covers_every_error_code() -> None:
    used = {item[0] for items in EXPECTED.values() for item in items}
    errors = set(DIAGNOSTIC_CODES) - WARNING_CODES - RESTRICTED_ONLY - UNTRIGGERABLE
    assert errors - used == set(), "error codes no malformed file triggers"


def test_corpus_shape() -> None:
    names = list(EXPECTED)
    assert sum(n.endswith((".yaml", ".yml")) for n in names) >= 45
    assert sum(n.endswith(".json") for n in names) >= 2
    multi = [n for n in names if len(EXPECTED[n]) > 1 and len({i[0] for i in EXPECTED[n]}) > 1]
    assert len(multi) >= 5, multi
    singles = [n for n in names if not n.startswith("multi_") and n != "cycle_subworkflow.yaml"]
    for n in singles:
        assert len(EXPECTED[n]) == 1, f"{n} should hold exactly one problem"


def test_markers_agree_with_expected() -> None:
    """Each ``# <- CODE`` comment in a YAML file names an expected error on that line."""
    for name in EXPECTED:
        if not name.endswith(".yaml"):
            continue
        marked: list[tuple[str, int]] = []
        for number, line in enumerate((CORPUS / name).read_text(encoding="utf-8").splitlines(), 1):
            if "# <- " in line:
                marked += [(code, number) for code in line.split("# <- ", 1)[1].split()]
        if marked:
            assert sorted(marked) == _wanted(name), name
