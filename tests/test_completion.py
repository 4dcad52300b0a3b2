"""Completion through a real IPython shell's completer (``shell.Completer.completions``): cell bodies
in block and flow YAML, partial words, references, step ids, ``{{ steps.`` and ``{{ inputs.``, and
``%workflow`` lines (subcommands, flags, workflow names, run ids)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from IPython.core.completer import provisionalcompleter
from IPython.utils.capture import capture_output

from tests.ipython_shell import magic_shell

ROOT = Path(__file__).resolve().parent.parent
DIGEST = (ROOT / "examples" / "research-digest.yaml").read_text(encoding="utf-8")
PLANNER = "agents:\n  - {name: planner, model: {provider: echo}}\n  - {name: poet, model: {provider: echo}}\n"
HEAD = (
    "%%workflow\nworkflows:\n  - name: w\n    inputs:\n      topic: {type: string}\n      limit: {type: integer}\n"
    "    steps:\n      - id: first\n        type: transform\n        expression: x\n"
)


@pytest.fixture
def shell(tmp_path):
    with magic_shell(state=str(tmp_path / "runs.db")) as ip:
        with capture_output():
            assert ip.run_cell(f"%%workflow --quiet\n{DIGEST}").success
            assert ip.run_cell(f"%%workflow --quiet\n{PLANNER}").success
        yield ip


def applied(ip, text):
    """The cursor's line after each completion is applied, as a front end would apply it."""
    with provisionalcompleter():
        found = list(ip.Completer.completions(text, len(text)))
    return [(text[: c.start] + c.text + text[c.end :]).splitlines()[-1].strip() for c in found]


def test_values_in_block_style_on_partial_words(shell):
    assert applied(shell, HEAD + "      - id: b\n        type: tra") == ["type: transform"]
    assert "type: forEach" in applied(shell, HEAD + "      - id: b\n        type: ")
    assert applied(shell, HEAD + "        backend: langc") == ["backend: langchain"]
    assert applied(shell, "%%workflow\n    provider: scr") == ["provider: scripted"]


def test_values_in_flow_style(shell):
    assert applied(shell, HEAD + "      - {id: b, type: tra") == ["- {id: b, type: transform"]
    assert applied(shell, HEAD + "      - {id: b, agent: pl") == ["- {id: b, agent: planner"]
    assert applied(shell, HEAD + '      - {id: b, type: agent, agent: "po') == ['- {id: b, type: agent, agent: "poet']


def test_references_offer_only_their_kind(shell):
    # a partial name: the name (it resolves), not Python's `not` or `%notebook`
    assert applied(shell, HEAD + "      - id: b\n        connector: no") == ["connector: notes"]
    assert applied(shell, HEAD + "        agent: pl") == ["agent: planner"]
    # a partial reference: the full reference, whatever IPython takes as its token
    assert applied(shell, HEAD + "        agent: agent:demo/su") == ["agent: agent:demo/summarizer@1.0.0"]
    assert applied(shell, HEAD + "        connector: conn") == ["connector: connector:demo/notes@1.0.0"]
    # a part of the name that is not its start
    assert "agent: summarizer" in applied(shell, HEAD + "        agent: mmar")
    # the actions of the step's connector
    assert applied(shell, HEAD + "      - {id: b, connector: notes, action: st") == [
        "- {id: b, connector: notes, action: stats"
    ]


def test_step_ids_and_inputs_in_templates(shell):
    assert applied(shell, HEAD + '        input: "{{ steps.fi') == ['input: "{{ steps.first']
    assert applied(shell, HEAD + "      - {id: b, type: transform, expression: '{{ steps.fi") == [
        "- {id: b, type: transform, expression: '{{ steps.first"
    ]
    assert applied(shell, HEAD + '        input: "{{ steps.first.out') == [
        'input: "{{ steps.first.output',
        'input: "{{ steps.first.outputs',
    ]
    assert sorted(applied(shell, HEAD + '        input: "{{ inputs.')) == [
        'input: "{{ inputs.limit',
        'input: "{{ inputs.topic',
    ]
    assert applied(shell, HEAD + "      - {id: b, type: transform, expression: '{{ inputs.to") == [
        "- {id: b, type: transform, expression: '{{ inputs.topic"
    ]
    # after a closed template there is nothing of ours
    assert applied(shell, HEAD + '        input: "{{ x }} steps.fi') == []
    # needs: step ids, in block and flow lists
    assert applied(shell, HEAD + "      - {id: b, needs: [fi") == ["- {id: b, needs: [first"]
    assert applied(shell, HEAD + "      - id: b\n        needs: fi") == ["needs: first"]


def test_inputs_of_a_loaded_workflow_named_in_the_cell(shell):
    text = "%%workflow\nworkflows:\n  - name: Research Digest\n    steps:\n      - {id: x, expression: '{{ inputs.to"
    assert applied(shell, text) == ["- {id: x, expression: '{{ inputs.topic"]


def test_workflow_lines_complete_subcommands_names_flags_and_runs(shell):
    assert applied(shell, "%workflow ru") == ["%workflow run", "%workflow runs"]
    assert "%workflow diff" in applied(shell, "%workflow ")
    assert applied(shell, "%workflow run Res") == ['%workflow run "Research Digest"']
    assert applied(shell, "%workflow run --prefer") == ["%workflow run --prefer-backend"]
    with capture_output():
        assert shell.run_cell('%workflow run "Research Digest" --quiet -o first').success
    run_id = shell.user_ns["first"].run_id
    assert applied(shell, "%workflow replay ") == ["%workflow replay first", f"%workflow replay {run_id}"]
    assert applied(shell, f"%workflow diff first {run_id[:9]}") == [f"%workflow diff first {run_id}"]
    assert "%workflow inspect summarize" in applied(shell, "%workflow inspect su")
    assert applied(shell, "%workflow fork first --from sea") == ["%workflow fork first --from search"]
    assert applied(shell, "%workflow trace fi") == ["%workflow trace first"]
    # the %%workflow line: a loaded workflow's NAME, flags
    assert applied(shell, "%%workflow Res") == ['%%workflow "Research Digest"']
    assert applied(shell, "%%workflow --ru") == ["%%workflow --run"]
    # workflow names, not Python keywords or file names
    assert applied(shell, "%workflow run ") == ['%workflow run "Research Digest"']


def test_python_cells_are_left_to_python(shell):
    shell.user_ns["transform_me"] = 1
    assert "transform_me" in applied(shell, "transform_")
    assert "type = transform" not in applied(shell, "type = tra")


def test_a_workflow_body_shows_only_ours_even_when_nothing_matches(shell, monkeypatch):
    monkeypatch.chdir(ROOT)  # file paths: ./docs/ is there
    shell.user_ns["transform_me"] = 1
    # nothing of ours matches: no Python names, keywords, magics or file paths in the YAML
    for tail in ("    foo: transform_", "    foo: os.pa", "    foo: ./", "    foo: %ti", "    no", ""):
        assert applied(shell, HEAD + tail) == [], tail
    assert applied(shell, HEAD + "      - id: b\n        type: tra") == ["type: transform"]
    # a Python cell and a %workflow line keep IPython's own completions
    assert "transform_me" in applied(shell, "transform_")
    assert "%workflow load ./docs/" in applied(shell, "%workflow load ./")


def test_the_body_only_filter_keeps_the_users_settings_and_unloads(shell, monkeypatch):
    monkeypatch.chdir(ROOT)
    completer = shell.Completer
    completer.disable_matchers = ["IPCompleter.file_matcher"]
    try:
        assert applied(shell, HEAD + "    foo: ./") == []
        assert completer.disable_matchers == ["IPCompleter.file_matcher"]
        assert "%workflow load ./docs/" not in applied(shell, "%workflow load ./")  # still the user's choice
    finally:
        completer.disable_matchers = []
    shell.run_line_magic("unload_ext", "owf_magics")
    assert "completions" not in vars(completer)  # the class's own method again
    shell.user_ns["transform_me"] = 1
    assert "foo: transform_me" in applied(shell, HEAD + "    foo: transform_")
    shell.run_line_magic("load_ext", "owf_magics")


def test_publish_lines_complete_names_and_loaded_versions(shell, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert "%workflow publish" in applied(shell, "%workflow pub")
    assert applied(shell, "%workflow publish Res") == ['%workflow publish "Research Digest"']
    version = shell._owf_magics.ow.workflow("Research Digest").version
    assert applied(shell, '%workflow publish "Research Digest" --version ') == [
        f'%workflow publish "Research Digest" --version {version}'
    ]
    assert "%workflow publish x --url" in applied(shell, "%workflow publish x --ur")
    with warnings.catch_warnings():  # the older entry point, which sees one line
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        assert shell.complete("", "%workflow pub", 13) == ("pub", ["publish"])
        assert shell.complete("", "%workflow load ./do", 19) == ("./do", ["./docs/"])  # IPython's own
