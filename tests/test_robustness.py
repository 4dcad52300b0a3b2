"""No crash on any input: loading raises only ManifestError, runs always end terminal (in the
store too), a failing output fails the run naming it, and ``--json`` commands always print JSON.

The command line runs in real subprocesses (a crash or a traceback must show there as it would for
a user); runs use real SQLite files, read back with sqlite3.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from owf_magics import OpenWorkflow
from owf_magics.errors import DIAGNOSTIC_CODES, ManifestError

ROOT = Path(__file__).resolve().parent.parent


def owf(*args: str, cwd: Path | None = None) -> tuple[int, Any, str]:
    """Run ``owf ARGS`` in a fresh interpreter: (exit code, stdout parsed as JSON, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "owf_magics.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd or ROOT,
        env=env,
    )
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    try:
        data = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"owf {' '.join(args)} did not print JSON: {done.stdout[:500]!r} {done.stderr[-1000:]!r}")
    return done.returncode, data, done.stderr


# ------------------------------------------------------------------------------------------------
# hostile manifests through `owf validate --json`

_AGENT = '{"type": "agent", "name": "a", "model": {"provider": "echo"}, "metadata": %s}'


def _hostile_files(tmp: Path) -> dict[str, Path]:
    files = {
        # 100,000 levels of JSON, objects and arrays
        "deep.json": _AGENT % ('{"k": ' * 100_000 + "1" + "}" * 100_000),
        "deep_array.json": _AGENT % ("[" * 100_000 + "]" * 100_000),
        # deep YAML: flow, block sequences and block mappings
        "deep_flow.yaml": "type: agent\nname: a\nmodel: {provider: echo}\nmetadata:\n  x: "
        + "[" * 100_000
        + "]" * 100_000
        + "\n",
        "deep_block.yaml": "type: agent\nname: a\nmodel: {provider: echo}\nmetadata:\n  x:\n  " + "- " * 5_000 + "x\n",
        "deep_mapping.yaml": "type: agent\nname: a\nmodel: {provider: echo}\nmetadata:\n"
        + "".join(" " * (i + 1) + "k:\n" for i in range(1_000)),
        # integers past Python's int-to-text digit limit, in YAML, in JSON and in a template
        "huge_int.yaml": "type: agent\nname: a\nmodel: {provider: echo}\nmetadata: {n: " + "9" * 5_000 + "}\n",
        "huge_int.json": _AGENT % ("9" * 5_000),
        "huge_template.yaml": "name: w\nsteps:\n  - {id: t, type: transform, expression: '{{ 10**5000 }}'}\n",
        "huge_output.yaml": "name: w\nsteps:\n  - {id: t, type: transform, expression: '{{ 1 }}'}\n"
        "outputs:\n  big: {value: '{{ 10**5000 }}'}\n",
        # broken text: a 1 MB malformed flow sequence, control characters, bad UTF-8
        "broken_big.yaml": "a: [" + "b, " * 350_000 + "\n  - x: {",
        "control.yaml": "name: w\x00\nsteps: []\n",
        "deep_then_broken.json": _AGENT % ("[" * 150 + "{,"),
    }
    out = {}
    for name, text in files.items():
        path = tmp / name
        path.write_text(text, encoding="utf-8")
        out[name] = path
    bad_utf8 = tmp / "bad_utf8.yaml"
    bad_utf8.write_bytes(b"name: \xff\xfe\nsteps: []\n")
    out["bad_utf8.yaml"] = bad_utf8
    return out


def test_owf_validate_json_prints_json_for_every_hostile_file(tmp_path: Path) -> None:
    files = _hostile_files(tmp_path)
    code, data, _ = owf("validate", "--json", *map(str, files.values()))  # one process loads them all
    assert code == 1
    assert data["ok"] is False
    assert all(d["code"] in DIAGNOSTIC_CODES for d in data["errors"]), data["errors"]
    named = {d["file"] for d in data["errors"]}
    # `{{ 10**5000 }}` is evaluated when the step runs (under the template budget), not at load:
    # valid text; what matters is that validating it prints JSON
    templates = {"huge_template.yaml", "huge_output.yaml"}
    assert {name for name, path in files.items() if str(path) not in named} <= templates
    code, data, _ = owf("validate", "--json", str(files["deep.json"]))  # alone, as a user would run it
    assert code == 1 and data["ok"] is False and data["errors"]
    for name in sorted(templates):
        code, data, _ = owf("validate", "--json", str(files[name]))
        assert code == (0 if data["ok"] else 1) and isinstance(data["errors"], list), name


@pytest.mark.parametrize(
    "text",
    [
        _AGENT % ('{"k": ' * 100_000 + "1" + "}" * 100_000),
        "type: agent\nname: a\nmodel: {provider: echo}\nmetadata: {n: " + "9" * 5_000 + "}\n",
        "name: w\nsteps:\n  - {id: t, type: transform, expression: '{{ 10**5000 }}'}\n",
        "name: w\nsteps: []\noutputs: {x: {value: '{{ " + "(" * 500 + "1" + ")" * 500 + " }}'}}\n",
        "a: [" + "b, " * 100_000 + "\n  - x: {",
    ],
    ids=["deep_json", "huge_int", "huge_template", "deep_template", "broken_big"],
)
def test_load_and_validate_raise_only_manifest_error(text: str) -> None:
    ow = OpenWorkflow(state=False)
    for call in (ow.load, ow.validate):
        try:
            call(text)
        except ManifestError as exc:
            assert exc.diagnostics
            assert all(d.code in DIAGNOSTIC_CODES for d in exc.diagnostics)
        else:  # valid text (a template is evaluated when its step runs)
            assert "10**5000" in text


def test_huge_integers_are_invalid_values_at_their_line() -> None:
    text = "type: agent\nname: a\nmodel: {provider: echo}\nmetadata:\n  n: " + "9" * 5_000 + "\n"
    with pytest.raises(ManifestError) as info:
        OpenWorkflow(state=False).load(text)
    [d] = info.value.diagnostics
    assert (d.code, d.line) == ("INVALID_VALUE", 5)
    assert "5,000 digits" in d.message


# ------------------------------------------------------------------------------------------------
# runs that always end terminal

_FLOWS = """
connectors:
  - name: fn
    kind: sdk
    actions:
      - {name: bad, handler: {function: tests.robust_handlers.unstorable}}
      - {name: leave, handler: {function: tests.robust_handlers.leave}}
workflows:
  - name: unstorable
    inputs: {kind: {type: string}}
    steps:
      - {id: make, connector: fn, action: bad, input: {kind: "{{ inputs.kind }}"}}
      - {id: after, type: transform, expression: "{{ steps.make.output }}"}
  - name: exits
    steps:
      - {id: bye, connector: fn, action: leave, input: {code: 3}}
  - name: outputs
    steps:
      - {id: t, type: transform, expression: "{{ 1 }}"}
    outputs:
      good: {value: "{{ steps.t.output.result }}"}
      broken: {value: "{{ steps.t.output.nope.deeper }}"}
  - name: bigstep
    steps:
      - {id: t, type: transform, expression: "{{ 10**5000 }}"}
  - name: bignum
    inputs: {n: {type: integer}}
    steps:
      - {id: t, type: transform, expression: "{{ 1 }}"}
    outputs:
      big: {value: "{{ 10 ** inputs.n }}"}
  - name: failed_first
    steps:
      - {id: bye, connector: fn, action: bad, input: {kind: cycle}}
      - {id: later, type: transform, expression: "{{ steps.bye.output }}"}
    outputs:
      never: {value: "{{ steps.later.output.result }}"}
"""


#: Templates the sandbox used to answer with an Undefined object, which the store could not write.
#: The sandbox now fails them when the step runs (a SecurityError); if it ever refuses them at load
#: instead, these tests skip. Either way the step fails and the run ends failed, in the store too;
#: the store path itself is tested with the handlers that return unstorable values.
_UNDEFINED = """
connectors:
  - name: fn2
    kind: sdk
    actions:
      - {name: echo, handler: {function: tests.handlers.ok}}
workflows:
  - name: undefined
    steps:
      - {id: t, type: transform, expression: "{{ ''.__class__ }}"}
  - name: undefined_input
    steps:
      - {id: a, connector: fn2, action: echo, input: {x: "{{ inputs|attr('__class__') }}"}}
"""


def _load_undefined(ow: OpenWorkflow) -> None:
    try:
        ow.load(_UNDEFINED)
    except ManifestError as exc:
        pytest.skip(f"the sandbox refuses the template at load now: {exc.codes}")


def _stored_runs(db: Path) -> list[tuple[str, str, dict[str, Any] | None]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT workflow, status, error FROM runs ORDER BY started_at").fetchall()
    return [(w, s, json.loads(e) if e else None) for w, s, e in rows]


@pytest.mark.parametrize("kind", ["cycle", "huge_int", "tuple_key", "unprintable"])
def test_an_output_the_store_cannot_write_fails_that_step(tmp_path: Path, kind: str) -> None:
    db = tmp_path / "runs.db"
    ow = OpenWorkflow(state=str(db))
    ow.load(_FLOWS)
    r = ow.workflow("unstorable").execute(inputs={"kind": kind})
    assert r.status == "failed"
    err = r.steps["make"].error
    assert r.steps["make"].status == "failed" and err is not None
    assert err.code == "VALIDATION" and "step 'make'" in err.message and "cannot be stored as JSON" in err.message
    assert r.steps["after"].status == "skipped"
    ow.close()
    [(workflow, status, error)] = _stored_runs(db)
    assert (workflow, status) == ("unstorable", "failed")
    assert error is not None and error["details"]["step_id"] == "make"


def test_an_undefined_template_value_fails_its_step_not_the_bookkeeping(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    ow = OpenWorkflow(state=str(db))
    _load_undefined(ow)
    r = ow.workflow("undefined").execute()
    assert r.status == "failed"
    assert r.steps["t"].status == "failed"
    ow.close()
    assert [s for _, s, _ in _stored_runs(db)] == ["failed"]


def test_a_handler_that_exits_ends_the_run_failed_in_the_result_and_the_store(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    ow = OpenWorkflow(state=str(db))
    ow.load(_FLOWS)
    r = ow.workflow("exits").execute()
    assert r.status == "failed"
    assert r.error is not None and r.error.code == "INTERNAL_ERROR" and "SystemExit" in r.error.message
    assert r.events[-1]["type"] == "run.failed"
    ow.close()
    [(_, status, error)] = _stored_runs(db)
    assert status == "failed" and error is not None and error["code"] == "INTERNAL_ERROR"


def test_a_failing_output_fails_the_run_and_names_it(tmp_path: Path) -> None:
    ow = OpenWorkflow(state=str(tmp_path / "runs.db"))
    ow.load(_FLOWS)
    r = ow.workflow("outputs").execute()
    assert r.status == "failed"
    assert r.error is not None and r.error.details["output"] == "broken"
    assert "output 'broken'" in r.error.message
    assert r.outputs == {"good": 1, "broken": None}  # the other outputs keep their values
    assert ow.run(r.run_id).status == "failed"


def test_a_run_that_failed_keeps_its_own_error_when_an_output_cannot_be_given(tmp_path: Path) -> None:
    ow = OpenWorkflow(state=str(tmp_path / "runs.db"))
    ow.load(_FLOWS)
    r = ow.workflow("failed_first").execute()
    assert r.status == "failed"
    assert r.error is not None and r.error.details.get("step_id") == "bye"
    assert r.outputs == {"never": None}


@pytest.mark.parametrize(
    ("workflow", "inputs"),
    [
        ("unstorable", ["-i", "kind=cycle"]),
        ("undefined", []),
        ("exits", []),
        ("outputs", []),
        ("bignum", ["-i", "n=5000"]),
        ("bigstep", []),
    ],
)
def test_owf_run_json_prints_json_and_leaves_no_run_running(tmp_path: Path, workflow: str, inputs: list[str]) -> None:
    flows = tmp_path / "flows.yaml"
    flows.write_text(_UNDEFINED if workflow == "undefined" else _FLOWS, encoding="utf-8")
    db = tmp_path / "runs.db"
    code, data, _ = owf("run", str(flows), "-w", workflow, *inputs, "--json", "--state", str(db))
    assert code == 1
    if data.get("ok") is False:  # refused at load (the sandbox): JSON too, and no run
        assert workflow == "undefined" and data["error"]["code"] == "VALIDATION"
        assert not db.exists() or _stored_runs(db) == []
        return
    assert data["status"] == "failed" and data["error"]["code"] in ("VALIDATION", "INTERNAL_ERROR")
    assert [s for _, s, _ in _stored_runs(db)] == ["failed"]


def test_owf_json_commands_print_json_on_usage_and_store_errors(tmp_path: Path) -> None:
    code, data, _ = owf("run", "--json")  # no files: argparse's usage error
    assert code == 2 and data["ok"] is False and data["code"] == "USAGE"
    not_a_db = tmp_path / "runs.db"
    not_a_db.write_bytes(b"this is not a database" * 100)
    code, data, _ = owf("runs", "--json", "--state", str(not_a_db))
    assert code == 1 and data["ok"] is False and data["status"] == "error"
    assert data["code"] == data["error"]["code"]


def test_an_input_the_store_cannot_write_fails_its_step_with_the_first_reason(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    ow = OpenWorkflow(state=str(db))
    _load_undefined(ow)
    r = ow.workflow("undefined_input").execute()
    assert r.status == "failed" and r.steps["a"].status == "failed"
    assert r.steps["a"].error is not None and r.steps["a"].error.code == "VALIDATION"
    ow.close()
    with sqlite3.connect(db) as conn:
        [(status,)] = conn.execute("SELECT status FROM runs").fetchall()
        [(step_status, stored_input)] = conn.execute("SELECT status, input FROM steps").fetchall()
    assert (status, step_status, stored_input) == ("failed", "failed", None)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_path_to_an_endless_file_is_refused_without_reading_it_all() -> None:
    with pytest.raises(ManifestError) as info:
        OpenWorkflow(state=False).load(Path("/dev/zero"))
    [d] = info.value.diagnostics
    assert d.code == "YAML_SYNTAX" and "larger than" in d.message


def test_the_store_serialiser_raises_one_clear_error_for_anything_it_cannot_write() -> None:
    from jinja2 import Undefined

    from owf_magics.runtime.records import UnstorableValue, check_storable, dumps

    loop: list[Any] = []
    loop.append(loop)
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    for value, reason in [  # our own words where we give the reason; the json module's otherwise
        ({"x": Undefined()}, "undefined template value"),
        (loop, ""),
        (deep, "nests too deep"),
        (10**5000, ""),
        ({("a",): 1}, ""),
    ]:
        with pytest.raises(UnstorableValue) as info:
            dumps(value)
        assert info.value.message.startswith("the value cannot be stored as JSON: ")
        assert reason in info.value.message and info.value.details["reason"]
        with pytest.raises(UnstorableValue) as info:
            check_storable(value, "s")
        assert info.value.message.startswith("step 's' returned a value that cannot be stored as JSON")
    assert dumps({"when": {1, 2}, "b": b"x"}) == '{"when":[1,2],"b":"x"}'  # what converts still does


def test_records_the_store_cannot_write_become_failed_records_and_events_their_type(tmp_path: Path) -> None:
    from owf_magics.runs.store import SQLiteRunStore
    from owf_magics.runtime.records import StepRecord, UnstorableValue, storable_events, storable_records

    loop: dict[str, Any] = {}
    loop["self"] = loop
    store = SQLiteRunStore(tmp_path / "runs.db")
    store.create_run("r1", "w")
    records = [StepRecord("a", "a", "success", {"ok": 1}), StepRecord("b", "b", "success", {"ok": 2}, input=loop)]
    events = [{"type": "step.completed", "payload": {"ok": 1}}, {"type": "step.completed", "payload": loop}]
    with pytest.raises(UnstorableValue):
        store.checkpoint_many("r1", records, events)
    store.checkpoint_many("r1", storable_records(records), storable_events(events))
    steps = store.get_steps("r1")
    assert steps["a"].status == "success" and steps["a"].output == {"ok": 1}
    assert steps["b"].status == "failed" and steps["b"].input is None
    assert steps["b"].error is not None and "step 'b'" in steps["b"].error["message"]
    stored = [e.event for e in store.get_events("r1")]
    assert stored[0]["payload"] == {"ok": 1} and stored[1]["type"] == "step.completed"
    store.close()
