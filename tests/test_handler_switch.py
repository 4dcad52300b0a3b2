"""The handler switch: `allow_handlers` on the registry and on one load refuses handler kinds."""

from __future__ import annotations

import pytest

from owf_magics import ManifestError, OpenWorkflow

MIXED = """\
connectors:
  - name: shell
    actions:
      - name: ok
        handler:
          http: {url: "http://127.0.0.1:9/x"}
      - name: run
        handler:
          command: /bin/sh
          args: ["-c", "id"]
      - name: py
        handler: {function: os.system}
  - name: time
    kind: mcp-server
    mcp: {transport: stdio, command: python}
workflows:
  - name: w
    steps: [{id: a, type: transform, expression: "1"}]
"""

TRUSTED = """\
connector: {name: calc, kind: function}
actions:
  - name: add
    handler: {function: tests.handlers.echo}
"""

USES_CALC = "name: sums\nsteps: [{id: s, connector: calc, action: add, input: {a: 1}}]"


def _refused(err: ManifestError) -> list[tuple[int | None, str, str]]:
    return [(d.line, d.path, d.message) for d in err.diagnostics if d.code == "HANDLER_NOT_ALLOWED"]


def test_default_registry_allows_every_kind():
    ow = OpenWorkflow(state=":memory:")
    assert ow.allow_handlers is None
    names = {i.name for i in ow.load(MIXED)}
    assert names == {"shell", "time", "w"}


def test_restricted_registry_refuses_at_the_handlers_line_and_registers_nothing(tmp_path):
    path = tmp_path / "flow.yaml"
    path.write_text(MIXED)
    ow = OpenWorkflow(state=":memory:", allow_handlers={"http"})
    with pytest.raises(ManifestError) as info:
        ow.load(path)
    refused = _refused(info.value)
    assert [(line, where) for line, where, _ in refused] == [
        (9, "connectors[0].actions[1].handler.command"),
        (12, "connectors[0].actions[2].handler.function"),
        (15, "connectors[1].mcp"),
    ]
    assert all(d.file == str(path) and d.hint for d in info.value.diagnostics)
    assert "'command'" in refused[0][2] and "'run'" in refused[0][2] and "'shell'" in refused[0][2]
    assert "'function'" in refused[1][2]
    # all or nothing: the http action and the workflow of the same load are not registered either
    assert ow.connectors() == [] and ow.workflows() == []


def test_validate_refuses_the_same_way():
    ow = OpenWorkflow(state=":memory:", allow_handlers=["http", "mcp"])
    with pytest.raises(ManifestError) as info:
        ow.validate(MIXED)
    assert [where for _, where, _ in _refused(info.value)] == [
        "connectors[0].actions[1].handler.command",
        "connectors[0].actions[2].handler.function",
    ]


def test_a_load_can_set_its_own_kinds():
    open_ow = OpenWorkflow(state=":memory:")
    with pytest.raises(ManifestError) as info:
        open_ow.load(TRUSTED, allow_handlers={"http"})
    assert [where for _, where, _ in _refused(info.value)] == ["actions[0].handler.function"]
    assert open_ow.connectors() == []

    server = OpenWorkflow(state=":memory:", allow_handlers={"http"})
    server.load(TRUSTED, allow_handlers={"function"})  # the server's own manifests, trusted
    assert [c.name for c in server.connectors()] == ["calc"]


def test_trusted_connectors_stay_usable_by_restricted_loads():
    server = OpenWorkflow(state=":memory:", allow_handlers=())
    server.load(TRUSTED, allow_handlers={"function"})
    server.load(USES_CALC)  # a received workflow declares no handler: it only calls the server's own
    result = server.workflow("sums").execute()
    assert result.status == "completed" and result.steps["s"].output == {"echo": {"a": 1}}


def test_an_empty_collection_refuses_every_handler_but_loads_plain_workflows():
    ow = OpenWorkflow(state=":memory:", allow_handlers=[])
    ow.load("name: plain\nsteps: [{id: a, type: transform, expression: '1 + 1'}]")
    assert ow.workflow("plain").execute().outputs is not None
    with pytest.raises(ManifestError) as info:
        ow.load(TRUSTED)
    assert "allowed: none" in _refused(info.value)[0][2]


def test_names_are_checked():
    assert OpenWorkflow(state=":memory:", allow_handlers="http").allow_handlers == frozenset({"http"})
    with pytest.raises(ValueError, match=r"'functions' is not a handler kind.*'function'"):
        OpenWorkflow(state=":memory:", allow_handlers={"functions"})
    with pytest.raises(TypeError):
        OpenWorkflow(state=":memory:", allow_handlers=[1])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="'shell' is not a handler kind"):
        OpenWorkflow(state=":memory:").load(TRUSTED, allow_handlers={"shell"})
