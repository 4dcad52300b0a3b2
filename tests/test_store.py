"""The SQLite run store on real files: runs, checkpoints, events, pending requests, pruning,
several threads and several processes on one file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta

import pytest

from owf_magics.errors import OWFError
from owf_magics.runs.store import (
    RUNS_COLUMNS,
    SCHEMA_VERSION,
    RunStore,
    SQLiteRunStore,
    StepRecord,
    fingerprint,
    open_store,
    runs_frame,
    scrub,
    step_key,
)
from tests.stores import make_store


@pytest.fixture
def store(tmp_path, store_db):
    s = make_store(store_db)
    yield s
    s.close()


def test_a_run_round_trips_through_a_file(tmp_path, store_db):
    path = store_db
    with make_store(path) as s:
        rec = s.create_run(
            "r1",
            "digest",
            workflow_version="1.2.0",
            inputs={"topic": "x"},
            manifest_source="workflows: []",
            manifest_ids=["flow.yaml"],
            metadata={"user": "me"},
        )
        assert rec.status == "running" and rec.finished_at is None and rec.duration_ms is None
    with make_store(path) as s:  # a new connection, as a new process would open it
        rec = s.get_run("r1")
        assert rec is not None
        assert (rec.workflow, rec.workflow_version, rec.inputs) == ("digest", "1.2.0", {"topic": "x"})
        assert rec.manifest_source == "workflows: []" and rec.manifest_ids == ["flow.yaml"]
        assert rec.metadata == {"user": "me"}
        assert rec.started_at.tzinfo is not None
        assert s.get_run("nope") is None


def test_schema_version_is_written_and_a_newer_one_is_refused(tmp_path):
    path = tmp_path / "runs.db"
    with SQLiteRunStore(path) as s:
        assert s.schema_version == SCHEMA_VERSION
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(OWFError) as err:
        SQLiteRunStore(path)
    assert err.value.code == "UNAVAILABLE"
    assert "newer" in err.value.message


def test_duplicate_run_id_and_bad_status_are_validation_errors(store):
    store.create_run("r1", "w")
    with pytest.raises(OWFError) as err:
        store.create_run("r1", "w")
    assert err.value.code == "VALIDATION"
    with pytest.raises(OWFError):
        store.set_status("r1", "sleeping")
    with pytest.raises(OWFError):
        store.set_status("missing", "running")
    with pytest.raises(OWFError):
        store.finish_run("missing", "completed")


def test_finish_and_compare_and_set_status(store):
    store.create_run("r1", "w")
    assert store.set_status("r1", "waiting_approval")
    # only one resumer wins the compare-and-set
    assert store.set_status("r1", "running", expected="waiting_approval") is True
    assert store.set_status("r1", "running", expected="waiting_approval") is False
    store.finish_run("r1", "failed", outputs={"a": 1}, error={"code": "TIMEOUT", "message": "slow", "details": {}})
    rec = store.get_run("r1")
    assert rec is not None
    assert rec.status == "failed" and rec.outputs == {"a": 1} and rec.error["code"] == "TIMEOUT"
    assert rec.finished_at is not None and rec.duration_ms is not None and rec.duration_ms >= 0
    # waiting is not finished: no finished_at
    store.create_run("r2", "w")
    store.finish_run("r2", "waiting_approval")
    rec2 = store.get_run("r2")
    assert rec2 is not None and rec2.status == "waiting_approval" and rec2.finished_at is None


def test_checkpoint_keeps_step_records_and_events_together(store):
    store.create_run("r1", "w")
    started = datetime(2026, 1, 1, tzinfo=UTC)
    seqs = store.checkpoint(
        "r1",
        StepRecord(
            step_key("a"),
            "a",
            "success",
            output={"n": 1},
            attempts=2,
            backend="native",
            usage={"total_tokens": 30, "cost_usd": 0.5, "model": "m"},
            input={"q": "hi", "k": [1, 2]},
            started_at=started,
        ),
        [{"type": "step.execution.completed", "step_id": "a"}],
    )
    assert seqs == [1]
    seqs = store.checkpoint(
        "r1",
        StepRecord(step_key("inner", loops=[("each", 3)]), "inner", "failed", error={"code": "BACKEND_ERROR"}),
        [{"type": "step.execution.completed", "step_id": "inner"}, {"type": "x"}],
    )
    assert seqs == [2, 3]
    steps = store.get_steps("r1")
    assert list(steps) == ["a", "each[3].inner"]
    a = steps["a"]
    assert (a.output, a.attempts, a.backend, a.total_tokens, a.cost_usd) == ({"n": 1}, 2, "native", 30, 0.5)
    assert a.input == {"q": "hi", "k": [1, 2]}
    assert a.input_hash == fingerprint({"k": [1, 2], "q": "hi"})  # key order does not matter
    assert a.started_at == started
    assert steps["each[3].inner"].error == {"code": "BACKEND_ERROR"}
    # a re-checkpoint under the same key replaces the record (a redone step)
    store.checkpoint("r1", StepRecord("a", "a", "success", output={"n": 2}))
    assert store.get_steps("r1")["a"].output == {"n": 2}
    events = store.get_events("r1")
    assert [e.seq for e in events] == [1, 2, 3]
    assert [e.type for e in events] == ["step.execution.completed", "step.execution.completed", "x"]
    assert [e.seq for e in store.get_events("r1", after=2)] == [3]


def test_a_failed_transaction_writes_nothing(store):
    store.create_run("r1", "w")

    class Boom:
        pass

    # an event whose type cannot be read makes the insert of events fail after the step row
    bad = {"type": "ok"}
    with pytest.raises(AttributeError):
        store.checkpoint("r1", StepRecord("a", "a", "success"), [bad, None])  # type: ignore[list-item]
    assert store.get_steps("r1") == {}
    assert store.get_events("r1") == []
    # values that are not JSON are stored in a readable form instead of failing
    store.checkpoint("r1", StepRecord("b", "b", "success", output={"when": datetime(2026, 1, 1), "o": Boom()}))
    out = store.get_steps("r1")["b"].output
    assert out["when"] == "2026-01-01T00:00:00" and "Boom" in out["o"]


def test_step_keys():
    assert step_key("a") == "a"
    assert step_key("inner", loops=[("each", 3)]) == "each[3].inner"
    assert step_key("leaf", loops=[("outer", 0), ("mid", 12)]) == "outer[0].mid[12].leaf"
    assert step_key("fetch", index=2) == "fetch[2]"


def test_pending_requests_resolve_once(store):
    store.create_run("r1", "w")
    p = store.add_pending("r1", "charge", "approval", {"connector": "pay", "action": "charge"}, request_id="req1")
    assert (p.id, p.step_id, p.kind, p.payload, p.resolved) == (
        "req1",
        "charge",
        "approval",
        {"connector": "pay", "action": "charge"},
        False,
    )
    # asking again after a restart does not create a second request
    again = store.add_pending("r1", "charge", "approval", {"other": 1}, request_id="req1")
    assert again.payload == {"connector": "pay", "action": "charge"}
    auto = store.add_pending("r1", "wait", "event", {"event": "shipped"})
    assert auto.id.startswith("req_")
    assert [x.id for x in store.get_pending("r1")] == ["req1", auto.id]
    done = store.resolve_pending("req1", True)
    assert done.resolved and done.value is True and done.resolved_at is not None
    assert store.resolve_pending("req1", True).resolved_at == done.resolved_at  # idempotent
    with pytest.raises(OWFError) as err:
        store.resolve_pending("req1", False)  # a different answer does not win silently
    assert err.value.code == "VALIDATION"
    with pytest.raises(OWFError):
        store.resolve_pending("nope", True)
    assert [x.id for x in store.get_pending("r1")] == [auto.id]
    assert len(store.get_pending("r1", include_resolved=True)) == 2
    store.resolve_pending(auto.id, {"tracking": "Z1"})
    assert store.get_pending("r1", include_resolved=True)[1].value == {"tracking": "Z1"}


def test_prune_deletes_old_finished_runs_and_their_rows(store):
    now = datetime.now(UTC)
    for rid, status in [("old_done", "completed"), ("old_waiting", "waiting_approval"), ("new_done", "failed")]:
        store.create_run(rid, "w", started_at=now - timedelta(days=10))
        store.checkpoint(rid, StepRecord("a", "a", "success"), [{"type": "e"}])
        store.add_pending(rid, "a", "approval")
        if status == "waiting_approval":
            store.finish_run(rid, status)
    store.finish_run("old_done", "completed", finished_at=now - timedelta(days=9))
    store.finish_run("new_done", "failed")
    assert store.prune(older_than=timedelta(days=7)) == 1
    assert [r.run_id for r in store.list_runs()] == ["new_done", "old_waiting"]  # same start: by id
    assert store.get_run("old_done") is None
    assert store.get_steps("old_done") == {} and store.get_events("old_done") == []
    assert store.get_pending("old_done", include_resolved=True) == []
    assert store.get_steps("new_done") != {}
    assert store.prune(older_than=0) == 1  # seconds work too; the waiting run stays
    assert [r.run_id for r in store.list_runs()] == ["old_waiting"]


def test_list_runs_filters_and_orders(store):
    base = datetime(2026, 1, 1, tzinfo=UTC)
    store.create_run("b", "w1", started_at=base + timedelta(seconds=2))
    store.create_run("a", "w2", started_at=base + timedelta(seconds=1))
    store.create_run("c", "w1", started_at=base + timedelta(seconds=3))
    store.finish_run("c", "completed")
    assert [r.run_id for r in store.list_runs()] == ["a", "b", "c"]
    assert [r.run_id for r in store.list_runs(workflow="w1")] == ["b", "c"]
    assert [r.run_id for r in store.list_runs(status="completed")] == ["c"]
    assert [r.run_id for r in store.list_runs(limit=2)] == ["a", "b"]


def test_runs_frame(store):
    store.create_run("r1", "w", workflow_version="1.0.0")
    store.checkpoint("r1", StepRecord("a", "a", "success", usage={"total_tokens": 10, "cost_usd": 0.25}))
    store.checkpoint("r1", StepRecord("b", "b", "success", usage={"total_tokens": 5, "cost_usd": 0.5}))
    store.finish_run("r1", "failed", error={"code": "TIMEOUT", "message": "m", "details": {}})
    store.create_run("r2", "w")
    store.add_pending("r2", "x", "approval")
    df = runs_frame(store)
    assert list(df.columns) == list(RUNS_COLUMNS)
    assert list(df["run_id"]) == ["r1", "r2"]
    r1 = df.iloc[0]
    assert (r1["status"], r1["steps"], r1["tokens"], r1["cost_usd"], r1["error_code"]) == (
        "failed",
        2,
        15,
        0.75,
        "TIMEOUT",
    )
    assert r1["duration_ms"] >= 0
    r2 = df.iloc[1]
    assert r2["pending"] == 1 and r2["steps"] == 0


def test_open_store_choices(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    default = open_store()
    assert isinstance(default, SQLiteRunStore)
    assert (tmp_path / ".owf" / "runs.db").exists()
    default.close()
    mem = open_store(":memory:")
    mem.create_run("r", "w")
    assert mem.get_run("r") is not None
    assert not (tmp_path / ":memory:").exists()
    other = open_store(tmp_path / "sub" / "x.db")
    assert (tmp_path / "sub" / "x.db").exists()
    assert isinstance(other, RunStore)
    assert open_store(other) is other
    other.close()
    with pytest.raises(TypeError):
        open_store(42)  # type: ignore[arg-type]


def test_scrub_replaces_secret_values():
    data = {"q": "token sk-12345 here", "n": [1, "sk-12345"], "k": 3}
    assert scrub(data, {"API": "sk-12345"}) == {"q": "token *** here", "n": [1, "***"], "k": 3}
    assert scrub(data, ["sk-12345"])["q"] == "token *** here"


def test_many_threads_share_one_store(store):
    store.create_run("r1", "w")

    def work(t: int) -> None:
        for i in range(50):
            store.checkpoint("r1", StepRecord(f"t{t}[{i}]", f"t{t}", "success"), [{"type": "e", "t": t, "i": i}])

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    events = store.get_events("r1")
    assert [e.seq for e in events] == list(range(1, 401))
    for t in range(8):
        assert [e.event["i"] for e in events if e.event["t"] == t] == list(range(50))
    assert len(store.get_steps("r1")) == 400


_WRITER = textwrap.dedent(
    """
    import sys
    from owf_magics.runs.store import StepRecord
    from tests.stores import make_store
    path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    s = make_store(path)
    try:
        s.create_run("shared", "w")
    except Exception:
        pass  # the other process created it first
    for i in range(n):
        s.checkpoint("shared", StepRecord(f"{tag}[{i}]", tag, "success", output=i), [{"type": "e", "tag": tag, "i": i}])
    s.create_run("own-" + tag, "w")
    s.close()
    """
)


def test_two_processes_write_one_file(tmp_path, store_db):
    path = store_db
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), tag, "150"], stderr=subprocess.PIPE)
        for tag in ("p1", "p2")
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    with make_store(path) as s:
        events = s.get_events("shared")
        assert [e.seq for e in events] == list(range(1, 301))  # no event lost, no gap, no duplicate
        for tag in ("p1", "p2"):
            assert [e.event["i"] for e in events if e.event["tag"] == tag] == list(range(150))
        steps = s.get_steps("shared")
        assert len(steps) == 300 and steps["p2[149]"].output == 149
        assert {r.run_id for r in s.list_runs()} == {"shared", "own-p1", "own-p2"}


_KILLED = textwrap.dedent(
    """
    import os, sys
    from owf_magics.runs.store import StepRecord
    from tests.stores import make_store
    s = make_store(sys.argv[1])
    s.create_run("r", "w")
    s.checkpoint("r", StepRecord("a", "a", "success", output="done"), [{"type": "step.execution.completed"}])
    s.checkpoint("r", StepRecord("b", "b", "running"))
    os._exit(9)  # killed mid-step: no close, no cleanup
    """
)


def test_checkpoints_survive_a_killed_process(tmp_path, store_db):
    path = store_db
    proc = subprocess.run([sys.executable, "-c", _KILLED, str(path)], check=False, capture_output=True, timeout=120)
    assert proc.returncode == 9, proc.stderr.decode()
    with make_store(path) as s:
        rec = s.get_run("r")
        assert rec is not None and rec.status == "running"
        steps = s.get_steps("r")
        assert steps["a"].status == "success" and steps["a"].output == "done"
        assert steps["b"].status == "running"  # the step in flight: the one to redo
        assert len(s.get_events("r")) == 1


def test_memory_store_is_usable_from_threads():
    s = SQLiteRunStore(":memory:")
    s.create_run("r", "w")
    errors: list[BaseException] = []

    def work() -> None:
        try:
            s.append_events("r", [{"type": "e"}] * 10)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert [e.seq for e in s.get_events("r")] == list(range(1, 41))
    assert s.append_events("r", []) == []
    s.close()


def test_many_checkpoints_are_all_kept(tmp_path, store_db):
    """(Their cost is measured by `make bench`, bench/durable_bench.py, not here.)"""
    with make_store(store_db) as s:
        s.create_run("r", "w")
        n = 300
        for i in range(n):
            s.checkpoint("r", StepRecord(f"s{i}", f"s{i}", "success", output={"i": i}), [{"type": "e"}])
        assert len(s.get_steps("r")) == n
        assert [e.seq for e in s.get_events("r")] == list(range(1, n + 1))


def test_input_differences_for_replay():
    from owf_magics.runs.store import input_differences

    recorded = {"q": "hi", "opts": {"n": 3, "tags": ["a", "b"]}, "gone": 1}
    assert input_differences(recorded, {"q": "hi", "opts": {"n": 3, "tags": ("a", "b")}, "gone": 1}) == []
    lines = input_differences(recorded, {"q": "hello", "opts": {"n": 3, "tags": ["a"]}, "new": True})
    assert lines == [
        "input.gone: recorded 1, now missing",
        "input.new: not recorded, now true",
        'input.opts.tags: recorded ["a","b"], now ["a"]',
        'input.q: recorded "hi", now "hello"',
    ]
    assert input_differences(1, 1.0) == ["input: recorded 1, now 1.0"]  # an int is not a float
    many = input_differences({f"k{i}": i for i in range(30)}, {}, limit=5)
    assert len(many) == 6 and many[-1] == "... and 25 more"


_CLAIMER = textwrap.dedent(
    """
    import sys
    from tests.stores import make_store
    s = make_store(sys.argv[1])
    won = s.set_status("r", "running", expected="waiting_approval")
    print("won" if won else "lost")
    """
)


def test_only_one_process_wins_the_claim_of_a_waiting_run(tmp_path, store_db):
    path = store_db
    with make_store(path) as s:
        s.create_run("r", "w", status="waiting_approval")
    procs = [
        subprocess.Popen([sys.executable, "-c", _CLAIMER, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    outcomes = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
        outcomes.append(out.decode().strip())
    assert sorted(outcomes) == ["lost", "lost", "lost", "won"]


def test_a_stored_run_reads_back_as_a_run_result(store):
    from owf_magics.runs.store import run_result

    assert run_result(store, "nope") is None
    store.create_run("r1", "digest")
    store.checkpoint("r1", StepRecord("a", "a", "success", output=1, backend="native"), [{"type": "e1"}])
    store.checkpoint("r1", StepRecord("each[0].b", "b", "success", output="first"))
    store.checkpoint("r1", StepRecord("each[1].b", "b", "failed", error={"code": "TIMEOUT", "message": "slow"}))
    req = store.add_pending("r1", "c", "approval", {"action": "post"})
    store.finish_run("r1", "waiting_approval", outputs={"o": 1})
    result = run_result(store, "r1")
    assert result is not None
    assert (result.run_id, result.workflow, result.status, result.outputs) == (
        "r1",
        "digest",
        "waiting_approval",
        {"o": 1},
    )
    assert result.steps["a"].output == 1 and result.steps["a"].status == "success"
    assert result.steps["b"].status == "failed" and result.steps["b"].error.code == "TIMEOUT"  # the last iteration
    assert [p.id for p in result.pending] == [req.id] and result.pending[0].payload == {"action": "post"}
    assert result.events == [{"type": "e1"}]
    assert result.error is None and result.trace.empty
    store.finish_run("r1", "failed", error={"code": "CANCELED", "message": "budget", "details": {"reason": "budget"}})
    failed = run_result(store, "r1")
    assert failed is not None and failed.error is not None and failed.error.details == {"reason": "budget"}


def test_writes_for_an_unknown_run_are_validation_errors(store):
    for write in (
        lambda: store.checkpoint("ghost", StepRecord("a", "a", "success")),
        lambda: store.append_events("ghost", [{"type": "e"}]),
        lambda: store.add_pending("ghost", "a", "approval"),
    ):
        with pytest.raises(OWFError) as err:
            write()
        assert err.value.code == "VALIDATION" and err.value.details == {"run_id": "ghost"}
    assert store.get_events("ghost") == [] and store.get_steps("ghost") == {}
