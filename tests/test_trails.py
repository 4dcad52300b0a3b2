"""A step's own events kept in its step row (schema 6, `owf_magics.runs.trails`): a stored run
reads back the very events the run gave, numbered without gaps, whatever wrote them."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest

from owf_magics import OpenWorkflow, inline
from owf_magics.runs.schema import SCHEMA_VERSION
from owf_magics.runs.store import SQLiteRunStore
from owf_magics.runtime.records import StepRecord

CONNECTOR = """
connector: {name: tr, kind: sdk}
actions:
  - {name: add, handler: {function: tests.test_trails.add}}
  - {name: slow, handler: {function: tests.test_trails.slow}}
  - {name: plain, handler: {function: tests.test_trails.plain}}
  - {name: fail, handler: {function: tests.test_trails.fail}}
  - {name: echo, handler: {function: tests.test_trails.echo}}
  - {name: leave, handler: {function: tests.test_trails.leave}}
"""

FLOWS = {
    "chain": """
name: chain
steps:
  - {id: a, connector: tr, action: add, input: {x: 1}}
  - {id: b, connector: tr, action: add, input: {x: "{{ steps.a.output.y }}"}, dependsOn: [a]}
  - {id: c, type: transform, expression: "{{ steps.b.output.y * 10 }}", dependsOn: [b]}
outputs: {c: {value: "{{ steps.c.output }}"}}
""",
    "fan": """
name: fan
steps:
  - {id: s1, connector: tr, action: slow, input: {x: 1}}
  - {id: s2, connector: tr, action: slow, input: {x: 2}}
  - {id: s3, connector: tr, action: plain, input: {x: 3}}
  - {id: join, type: transform, expression: "{{ steps.s1.output.y + steps.s2.output.y }}", dependsOn: [s1, s2, s3]}
""",
    "loop": """
name: loop
steps:
  - id: each
    type: forEach
    items: [1, 2, 3]
    steps:
      - {id: twice, type: transform, expression: "{{ item * 2 }}"}
      - {id: more, connector: tr, action: add, input: {x: "{{ item }}"}, dependsOn: [twice]}
""",
    "failing": """
name: failing
steps:
  - {id: ok, connector: tr, action: add, input: {x: 1}}
  - {id: bad, connector: tr, action: fail, dependsOn: [ok], continueOnError: true}
  - {id: after, connector: tr, action: add, input: {x: 2}, dependsOn: [bad]}
""",
    "leaky": """
name: leaky
inputs: {text: {type: string}}
steps:
  - {id: a, connector: tr, action: echo, input: {text: "{{ inputs.text }}"}}
  - {id: b, type: transform, expression: "{{ steps.a.output.text | upper }}", dependsOn: [a]}
outputs: {said: {value: "{{ steps.b.output }}"}}
""",
    "exits": """
name: exits
steps:
  - {id: a, connector: tr, action: add, input: {x: 1}}
  - {id: bye, connector: tr, action: leave, dependsOn: [a]}
""",
    "retried": """
name: retried
steps:
  - id: r
    connector: tr
    action: fail
    retry: {maxAttempts: 2, initialDelay: 0, backoff: fixed}
    continueOnError: true
  - {id: fine, connector: tr, action: add, input: {x: 5}}
""",
}


@inline
def add(x: int) -> dict[str, int]:
    return {"y": int(x) + 1}


async def slow(x: int) -> dict[str, int]:
    await asyncio.sleep(0.01 * x)
    return {"y": x}


def plain(x: int) -> dict[str, int]:
    return {"y": x}


@inline
def echo(text: str) -> dict[str, str]:
    return {"text": text}


@inline
def leave() -> None:
    raise SystemExit(3)


@inline
def fail() -> None:
    raise RuntimeError("no")


def registry(path, **kwargs) -> OpenWorkflow:
    ow = OpenWorkflow(state=str(path), **kwargs)
    ow.load(CONNECTOR)
    for text in FLOWS.values():
        ow.load(text)
    return ow


def by_id(events) -> dict[str, dict]:
    return {e["event_id"]: e for e in events}


def stored(ow: OpenWorkflow, run_id: str) -> list:
    return ow.store.get_events(run_id)


def event_rows(path, run_id: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT COUNT(*) FROM events WHERE run_id = ?", (run_id,)).fetchone()[0]


def trails(path, run_id: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT COUNT(*) FROM steps WHERE run_id = ? AND trail IS NOT NULL", (run_id,)).fetchone()[
            0
        ]


@pytest.mark.parametrize("name", sorted(set(FLOWS) - {"leaky"}))
@pytest.mark.parametrize("watched", [False, True], ids=["no-callback", "callback"])
def test_a_stored_run_reads_back_the_events_it_gave(tmp_path, name, watched):
    seen: list[dict] = []
    ow = registry(tmp_path / "runs.db")
    result = ow.workflow(name).execute(callback=seen.append if watched else None)
    back = stored(ow, result.run_id)
    assert [e.seq for e in back] == list(range(1, len(back) + 1))  # numbered without gaps
    assert by_id(e.event for e in back) == by_id(json.loads(json.dumps(result.events)))
    assert len(back) == len(result.events) == len(by_id(result.events))
    if watched:
        assert by_id(seen) == by_id(result.events)
    assert ow.run(result.run_id).events == [e.event for e in back]
    # the trace rebuilt from the store has a row per step execution, as the run's own trace
    assert len(ow.run(result.run_id).trace_rows) == len(
        [r for r in result.trace_rows if r["status"] not in ("skipped", "waiting")]
    )
    ow.close()


def test_a_chain_keeps_its_step_events_in_the_step_rows(tmp_path):
    path = tmp_path / "runs.db"
    ow = registry(path)
    result = ow.workflow("chain").execute()
    steps = len(ow.store.get_steps(result.run_id))
    assert trails(path, result.run_id) == steps == 3
    assert event_rows(path, result.run_id) == len(result.events) - 2 * steps == 2  # run.started, run.completed
    ow.close()


@pytest.mark.parametrize("secret", ["sk-very-secret-value", "completed"], ids=["secret", "a-word-events-hold"])
def test_secrets_are_redacted_in_the_rows_and_never_reach_the_file(tmp_path, secret):
    path = tmp_path / "runs.db"
    ow = registry(path)
    result = ow.workflow("leaky").execute(inputs={"text": f"the key is {secret}!"}, secrets={"K": secret})
    assert result.status == "completed" and secret not in json.dumps(result.outputs)
    back = stored(ow, result.run_id)
    assert by_id(e.event for e in back) == by_id(result.events)
    assert [e.seq for e in back] == list(range(1, len(back) + 1))
    assert not [e for e in back if secret in json.dumps(e.event)]
    ow.close()
    if secret.startswith("sk-"):
        assert secret.encode() not in path.read_bytes()
        assert trails(path, result.run_id) == 2
    else:  # one of the words every step event holds: those events are rows, redacted as the run's
        assert trails(path, result.run_id) == 0


def _pair_events(run_id: str, step_id: str, first: int, output):
    started = {
        "type": "step.started",
        "timestamp": "2026-12-06T10:00:00.000Z",
        "run_id": run_id,
        "step_id": step_id,
        "step_type": "action",
        "iteration": "",
        "attempt": 1,
        "backend": "native",
        "fragment": "",
        "event_id": f"evt_{run_id}_{first:05d}",
    }
    completed = {
        "type": "step.execution.completed",
        "timestamp": "2026-12-06T10:00:00.000Z",
        "run_id": run_id,
        "step_id": step_id,
        "step_type": "action",
        "iteration": "",
        "attempt": 1,
        "fragment": "",
        "execution": {
            "backend": "native",
            "backend_source": "default",
            "runtime": "python",
            "adapter_version": "0.1.0",
            "duration_ms": 0.5,
            "token_usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        },
        "result": {"status": "success", "output": output},
        "event_id": f"evt_{run_id}_{first + 1:05d}",
    }
    return [started, completed]


def test_a_step_written_again_keeps_the_events_of_the_first_write(tmp_path):
    path = tmp_path / "runs.db"
    with SQLiteRunStore(path) as s:
        s.create_run("r", "w")
        out = {"v": 1}
        first = _pair_events("r", "a", 0, out)
        assert s.checkpoint_many("r", [StepRecord("a", "a", "success", out)], first) == [1, 2]
        assert trails(path, "r") == 1 and event_rows(path, "r") == 0
        again = {"v": 2}
        second = _pair_events("r", "a", 2, again)
        assert s.checkpoint_many("r", [StepRecord("a", "a", "success", again)], second) == [3, 4]
        events = [e.event for e in s.get_events("r")]
        assert events == [*first, *second]  # the first write's events became rows of their own
        assert s.get_steps("r")["a"].output == again
        # finishing the run writes it a third time, with its events in the same transaction
        third = _pair_events("r", "a", 4, {"v": 3})
        s.finish_run(
            "r", "completed", steps=[StepRecord("a", "a", "success", third[1]["result"]["output"])], events=third
        )
        assert [e.event for e in s.get_events("r")] == [*first, *second, *third]
        assert [e.seq for e in s.get_events("r", after=3)] == [4, 5, 6]


def test_another_store_object_writing_the_run_never_duplicates_a_number(tmp_path):
    path = tmp_path / "runs.db"
    a, b = SQLiteRunStore(path), SQLiteRunStore(path)
    a.create_run("r", "w")
    assert a.checkpoint_many("r", [StepRecord("x", "x", "success", None)], _pair_events("r", "x", 0, None)) == [1, 2]
    assert b.append_events("r", [{"type": "note"}]) == [3]  # b counts the trail's numbers too
    # a's count is stale now: it sees that another connection wrote and counts again
    assert a.checkpoint_many("r", [StepRecord("y", "y", "success", None)], _pair_events("r", "y", 3, None)) == [4, 5]
    assert [e.seq for e in a.get_events("r")] == [1, 2, 3, 4, 5]
    assert [e.type for e in b.get_events("r")] == [
        "step.started",
        "step.execution.completed",
        "note",
        "step.started",
        "step.execution.completed",
    ]
    a.close()
    b.close()


def test_events_that_say_more_than_a_trail_are_rows(tmp_path):
    path = tmp_path / "runs.db"
    with SQLiteRunStore(path) as s:
        s.create_run("r", "w")
        events = _pair_events("r", "a", 0, [1, 2])
        events[1]["extra"] = "something the engine never writes"
        events[0]["event_id"] = "custom-id"
        s.checkpoint_many("r", [StepRecord("a", "a", "success", [1, 2])], events)
        assert trails(path, "r") == 0 and event_rows(path, "r") == 2
        assert [e.event for e in s.get_events("r")] == events


def test_a_version_5_file_keeps_its_events_and_takes_trails(tmp_path):
    path = tmp_path / "old.db"
    ow = registry(path)
    old = ow.workflow("chain").execute(callback=lambda e: None)
    ow.close()
    conn = sqlite3.connect(path)
    # the file as version 5 wrote it: every event a row, no trail columns
    rows = [(old.run_id, i + 1, e["type"], json.dumps(e)) for i, e in enumerate(stored_events(path, old.run_id))]
    conn.execute("DELETE FROM events")
    conn.execute("UPDATE steps SET trail = NULL, seq = NULL")
    conn.execute("ALTER TABLE steps DROP COLUMN trail")
    conn.execute("ALTER TABLE steps DROP COLUMN seq")
    conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", rows)
    conn.execute("PRAGMA user_version = 5")
    conn.commit()
    conn.close()
    ow = registry(path)
    assert ow.store.schema_version == SCHEMA_VERSION == 6
    assert [e.event for e in ow.store.get_events(old.run_id)] == [json.loads(r[3]) for r in rows]
    new = ow.workflow("chain").execute()
    assert trails(path, new.run_id) == 3
    assert by_id(e.event for e in stored(ow, new.run_id)) == by_id(new.events)
    ow.close()


def stored_events(path, run_id: str) -> list[dict]:
    with SQLiteRunStore(path) as s:
        return [e.event for e in s.get_events(run_id)]


def test_two_store_objects_writing_their_own_runs_in_turns_keep_counting(tmp_path):
    """Each write sees that the other connection wrote (PRAGMA data_version): a run this store
    holds is checked against the events table alone, and its numbers go on without a gap."""
    path = tmp_path / "runs.db"
    a, b = SQLiteRunStore(path), SQLiteRunStore(path)
    a.create_run("ra", "w")
    b.create_run("rb", "w")
    for i in range(4):
        for store, run in ((a, "ra"), (b, "rb")):
            step = f"s{i}"
            got = store.checkpoint_many(run, [StepRecord(step, step, "success", i)], _pair_events(run, step, 2 * i, i))
            assert got == [2 * i + 1, 2 * i + 2]
    b.append_events("ra", [{"type": "note"}])  # b does not hold ra: it counts both tables
    assert a.append_events("ra", [{"type": "mine"}]) == [10]
    assert [e.seq for e in a.get_events("ra")] == list(range(1, 11))
    assert trails(path, "ra") == trails(path, "rb") == 4
    a.close()
    b.close()
