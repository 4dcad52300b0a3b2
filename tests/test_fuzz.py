"""Fuzzing the loader: whatever the input, a load succeeds or raises `ManifestError`, never anything else.

(a) arbitrary text, (b) YAML/JSON dumped from random manifests built around the real shapes: field
names of the canonical models (plus aliases and typos), every step type, nested blocks, templates,
references, durations and versions. Every diagnostic must be well formed, and a failed load must
leave the registry empty.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from owf_magics import ManifestError, OpenWorkflow
from owf_magics.errors import DIAGNOSTIC_CODES
from owf_magics.manifest.loader import looks_like_path
from owf_magics.manifest.models import STEP_TYPES, Agent, Connector, ModelSpec, Workflow

# Hypothesis warns (an error under filterwarnings=error) about its own internals, e.g. the size of
# an example's repr or a float32 example replayed; neither says anything about the code under test.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")

FUZZ = settings(
    max_examples=150, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
FUZZ_SHAPES = settings(
    max_examples=250, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


def _check(source: Any, **kwargs: Any) -> None:
    """Load `source`; only success or a well-formed ManifestError is acceptable."""
    ow = OpenWorkflow()
    try:
        ow.load(source, **kwargs)
    except ManifestError as err:
        assert err.diagnostics, "a ManifestError without diagnostics"
        for d in err.diagnostics:
            assert d.code in DIAGNOSTIC_CODES, d
            assert d.severity == "error", d
            assert isinstance(d.message, str) and d.message, d
            assert d.line is None or d.line >= 1, d
            d.format()  # every diagnostic renders
        err.to_dict()
        assert ow.workflows() == []
        assert ow.agents() == []
        assert ow.connectors() == []
        return
    for w in ow.workflows():  # a successful load gives workflows that plan
        w.plan()


# ------------------------------------------------------------------------------------------------
# (a) arbitrary text

YAMLISH = st.sampled_from(
    [
        "\n",
        " ",
        "  ",
        "\t",
        ":",
        ": ",
        "- ",
        "? ",
        "---\n",
        "...\n",
        "#",
        "&a ",
        "*a",
        "!!",
        "!tag ",
        "<<: ",
        "[",
        "]",
        "{",
        "}",
        ",",
        "'",
        '"',
        "|\n",
        ">\n",
        "{{",
        "}}",
        "{%",
        "%}",
        "workflows:",
        "steps:",
        "agents:",
        "connectors:",
        "type: ",
        "id: ",
        "name: ",
        "agent",
        "workflow",
        "connector",
        "forEach",
        "parallel",
        "branches:",
        "then:",
        "else:",
        "needs: ",
        "duration: ",
        "until: ",
        "1.0.0",
        "@^1",
        "!!python/object/apply:os.getcwd []",
        "\x00",
        "\ufeff",
        "\u2028",
        "é",
    ]
)


def _text_mode(text: str) -> str:
    # a one-line string naming an existing path is loaded as that path (by design): keep text as text
    assume(not looks_like_path(text))
    return text


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text(text: str) -> None:
    _check(_text_mode(text))


@FUZZ
@given(st.lists(YAMLISH | st.text(max_size=8), max_size=60).map("".join))
def test_yaml_like_text(text: str) -> None:
    _check(_text_mode(text))


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes_as_text(data: bytes) -> None:
    _check(_text_mode(data.decode("utf-8", errors="surrogateescape")))


# ------------------------------------------------------------------------------------------------
# (b) random manifests around the real shapes


def _fields(model: Any) -> list[str]:
    return sorted({f.alias or n for n, f in model.model_fields.items()})


STEP_FIELDS = sorted({name for cls in STEP_TYPES.values() for name in _fields(cls)})
ALIAS_STEP_FIELDS = [
    "name",
    "with",
    "plugin",
    "depends_on",
    "dependsOn",
    "continue_on_error",
    "for_each",
    "max_concurrency",
    "select_agent",
    "resume_after",
    "backend",
    "template",
    "jq",
    "jsonpath",
    "runtimeHint",
    "retry_on",
    "tiemout",
    "inptu",
]
STEP_TYPE_NAMES = [
    *STEP_TYPES,
    "for_each",
    "foreach",
    "loop",
    "condition",
    "route",
    "map",
    "delay",
    "until",
    "subworkflow",
    "sub-workflow",
    "forEch",
    "",
    "Agent",
]
STEP_IDS = ["a", "b", "c", "fetch", "loop", "a b", ""]
WORKFLOW_FIELDS = [*_fields(Workflow), "trigger", "id", "backend", "descripton"]
AGENT_FIELDS = [*_fields(Agent), "id", "tools", "instructions", "runtime", "agent", "persona"]
CONNECTOR_FIELDS = [*_fields(Connector), "connector", "handler"]
MODEL_FIELDS = [*_fields(ModelSpec), "name", "max_tokens", "top_p"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(
        [
            "",
            "x",
            "5s",
            "10m",
            "1.5h",
            "five minutes",
            "-1",
            "1.0.0",
            "v2",
            "one",
            "^1.0",
            ">>1",
            "~>1",
            "latest",
            "native",
            "langchain",
            "langgraph",
            "nativ",
            "python",
            "node",
            "echo",
            "scripted",
            "openai",
            "agent:writer",
            "agent:acme/writer@^1.0",
            "connector:tools@1.0.0",
            "connector:tools.run",
            "tool:x/y",
            "workflow:child",
            "writer",
            "tools",
            "run",
            "child",
            "Child",
            "{{ inputs.x }}",
            "{{ steps.a.output }}",
            "{{ steps.b.output.value | upper }}",
            "{{ item }}",
            "{{ error.message }}",
            "{{ steps.loop.output | length > 0 && !inputs.flag }}",
            "{{ unknown }}",
            "{{ x | nofilter }}",
            "{{ (",
            "{% for i in inputs.x %}{{ i }}",
            "{{ steps['a'].output }}",
            "{{ index }}",
            "{{ env.HOME }}",
            "{{ secrets.KEY }}",
            "count(2)",
            "all",
            "any",
            "0 9 * * *",
            "2025-10-08T09:00:00Z",
            "tomorrow",
            "template",
            "jq",
            "python",
            ".x",
        ]
    ),
    st.text(max_size=6),
)


def _json(leaf: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaf,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "b", "type", "x"]), inner, max_size=3)
        ),
        max_leaves=6,
    )


values = _json(scalars)


def _mapping(
    keys: list[str],
    value: st.SearchStrategy[Any],
    *,
    required: dict[str, st.SearchStrategy[Any]] | None = None,
    max_size: int = 5,
) -> st.SearchStrategy[dict[str, Any]]:
    base = st.fixed_dictionaries(required or {}, optional={}) if required else st.just({})
    extra = st.dictionaries(st.sampled_from(keys), value, max_size=max_size)
    return st.tuples(base, extra).map(lambda t: {**t[1], **t[0]})


def _step(children: st.SearchStrategy[list[dict[str, Any]]]) -> st.SearchStrategy[dict[str, Any]]:
    field_value = st.one_of(
        values,
        children,
        st.dictionaries(st.sampled_from(["high", "low", "left", "right", "a b"]), children, max_size=2),
        st.fixed_dictionaries(
            {},
            optional={
                "items": values,
                "parallel": st.booleans(),
                "event": scalars,
                "time": scalars,
                "timeout": scalars,
                "backend": scalars,
                "runtime": scalars,
                "maxAttempts": st.integers(-1, 3),
                "count": scalars,
            },
        ),
    )
    keyed = _mapping(
        STEP_FIELDS + ALIAS_STEP_FIELDS,
        field_value,
        required={"id": st.sampled_from(STEP_IDS), "type": st.sampled_from(STEP_TYPE_NAMES)},
        max_size=5,
    )
    # sometimes drop the id or the type, to reach inference and missing-field paths
    return keyed.flatmap(
        lambda s: st.sampled_from(
            [s, {k: v for k, v in s.items() if k != "type"}, {k: v for k, v in s.items() if k != "id"}]
        )
    )


steps = st.deferred(lambda: st.lists(_step(steps), max_size=3))

workflow = _mapping(
    WORKFLOW_FIELDS,
    st.one_of(values, steps, st.dictionaries(st.sampled_from(["x", "flag", "y"]), values, max_size=2)),
    required={"name": st.sampled_from(["child", "Child", "main", "main", ""]), "steps": steps},
)
model = _mapping(MODEL_FIELDS, values, required={"provider": st.sampled_from(["echo", "scripted", "openai", "nope"])})
agent = _mapping(
    AGENT_FIELDS,
    st.one_of(values, model),
    required={"name": st.sampled_from(["writer", "Writer", ""]), "model": model | values},
)
action = _mapping(
    ["name", "description", "input", "output", "handler", "approval", "inputSchema", "id"],
    st.one_of(
        values,
        st.fixed_dictionaries(
            {},
            optional={
                "function": scalars,
                "command": scalars,
                "http": values,
                "type": scalars,
                "properties": values,
                "required": values,
            },
        ),
    ),
    required={"name": st.sampled_from(["run", "send", "run"])},
)
connector = _mapping(
    CONNECTOR_FIELDS,
    st.one_of(values, st.lists(action, max_size=3)),
    required={"name": st.sampled_from(["tools", "tools", "weather"]), "actions": st.lists(action, max_size=3)},
)

combined = st.fixed_dictionaries(
    {},
    optional={
        "workflows": st.lists(workflow, max_size=2) | values,
        "agents": st.lists(agent, max_size=2),
        "connectors": st.lists(connector, max_size=2),
        "namespace": st.sampled_from(["acme", "local", "a/b"]),
        "schemaVersion": scalars,
        "step": values,
    },
)
single = st.one_of(
    workflow.map(lambda w: {"type": "workflow", **w}),
    agent.map(lambda a: {"type": "agent", **a}),
    connector.map(lambda c: {"type": "connector", **c}),
    connector.map(
        lambda c: {"connector": {k: v for k, v in c.items() if k != "actions"}, "actions": c.get("actions", [])}
    ),
    workflow,  # kind inferred from 'steps'
    st.dictionaries(st.sampled_from(["type", "name", "kind", "steps", "agent", "includes"]), values, max_size=3),
)
documents = st.lists(st.one_of(combined, single), min_size=1, max_size=3)


def _dump(docs: list[Any], as_json: bool) -> str:
    if as_json:
        return json.dumps(docs[0], indent=2, default=str)
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True)


@FUZZ_SHAPES
@given(documents, st.booleans())
def test_random_manifests_as_text(docs: list[Any], as_json: bool) -> None:
    _check(_dump(docs, as_json), name="fuzz.json" if as_json else "fuzz.yaml")


@FUZZ
@given(documents)
def test_random_manifests_as_python_data(docs: list[Any]) -> None:
    _check(docs)


def test_input_list_item_with_a_non_text_name_and_a_text_id():
    """Found by the fuzzer: `inputs: [{name: [], id: a}]` crashed the normaliser (unhashable name)."""
    _check([{"type": "workflow", "inputs": [{"name": [], "id": "a"}], "name": "child", "steps": []}])


@FUZZ
@given(documents, st.integers(0, 10_000), st.sampled_from(["delete", "duplicate", "indent", "dedent", "tab"]))
def test_random_manifests_with_a_mutation(docs: list[Any], where: int, how: str) -> None:
    """Dumped manifests with one line deleted, duplicated or re-indented (near-miss YAML)."""
    lines = _dump(docs, as_json=False).splitlines()
    assume(lines)
    i = where % len(lines)
    if how == "delete":
        del lines[i]
    elif how == "duplicate":
        lines.insert(i, lines[i])
    elif how == "indent":
        lines[i] = "  " + lines[i]
    elif how == "dedent":
        lines[i] = lines[i][1:]
    else:
        lines[i] = "\t" + lines[i]
    _check("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------------
# inputs the fuzzers above are unlikely to build, each of which once crashed or misreported


def _wf(steps: str, extra: str = "") -> str:
    return "workflows:\n  - name: x\n" + extra + "    steps:\n" + steps


def _errors(text: Any) -> list[tuple[str, int | None]]:
    ow = OpenWorkflow()
    try:
        ow.load(text)
    except ManifestError as err:
        return [(d.code, d.line) for d in err.diagnostics]
    return []


def test_deeply_nested_templates_are_syntax_errors() -> None:
    for expression in (
        "(" * 2000 + "1" + ")" * 2000,
        "not " * 3000 + "1",
        "1" + " | upper" * 3000,
        "1" + " + 1" * 5000,
        "!" * 3000 + "x",
    ):
        text = _wf(f'      - id: a\n        type: transform\n        expression: "{{{{ {expression} }}}}"\n')
        assert _errors(text) == [("TEMPLATE_SYNTAX", 6)], expression[:20]
    nested_ifs = "{% if 1 %}" * 500 + "x" + "{% endif %}" * 500
    assert _errors(_wf(f'      - id: a\n        type: transform\n        expression: "{nested_ifs}"\n')) == [
        ("TEMPLATE_SYNTAX", 6)
    ]


def test_a_long_dependency_cycle_is_reported() -> None:
    n = 3000  # the cycle search once recursed once per step
    steps = "".join(
        f'      - id: s{i}\n        type: transform\n        expression: "1"\n        needs: [s{(i + 1) % n}]\n'
        for i in range(n)
    )
    ow = OpenWorkflow()
    try:
        ow.load(_wf(steps))
    except ManifestError as err:
        (diag,) = err.diagnostics
        assert diag.code == "CIRCULAR_DEPENDENCY"
        assert f"s0 → s{n - 1} → s{n - 2}" in diag.message
        assert diag.message.endswith("s1 → s0")
    else:
        raise AssertionError("the cycle was not found")


def test_an_empty_framework_name_in_compatibility() -> None:
    ow = OpenWorkflow()
    ow.load("type: agent\nname: a\nmodel: {provider: echo}\nexecution: {backend: native, compatibility: {'': '*'}}\n")
    assert len(ow.agents()) == 1


def test_union_members_are_reported_once() -> None:
    text = _wf("      - id: b\n        type: parallel\n        join: {count: 0}\n        branches: {x: []}\n")
    assert _errors(text) == [("INVALID_VALUE", 6)]
    ow = OpenWorkflow()
    try:
        ow.load("type: agent\nname: a\nmodel: {provider: echo}\ntoolset: [{connecter: x}]\n")
    except ManifestError as err:
        assert sorted(d.path for d in err.diagnostics) == ["toolset[0].connecter", "toolset[0].connector"]
    else:
        raise AssertionError("expected errors")


def test_python_data_has_no_line_zero() -> None:
    """Data given as Python objects has no positions: lines are None, never 0."""
    ow = OpenWorkflow()
    try:
        ow.load([{}, {"name": "w", "steps": [], "triggers": [{}]}, {"type": "agent", "name": "a"}])
    except ManifestError as err:
        assert err.diagnostics
        assert all(d.line is None and d.column is None for d in err.diagnostics), err
        assert all(":0" not in d.format() for d in err.diagnostics)
    else:
        raise AssertionError("expected errors")
