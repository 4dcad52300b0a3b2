"""Run leases with real processes: a run alive in another process is never resumed (not even with
force=True), a killed process's run resumes without force once its lease expires (in
test_durable), and of two concurrent resumes exactly one proceeds. Plus the store's side: leases
taken, renewed, released; the schema migration; the group commit's rows."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from owf_magics import OpenWorkflow
from owf_magics.errors import OWFError
from owf_magics.runs.schema import SCHEMA_VERSION
from owf_magics.runs.store import SQLiteRunStore, StepRecord
from tests.conftest import ROOT
from tests.stores import make_store, raw_rows

FLOW = """
connectors:
  - name: ops
    kind: sdk
    actions:
      - {name: log, handler: {function: tests.handlers.log_call}}
      - {name: block, handler: {function: tests.handlers.log_call_blocking}}
      - {name: pay, handler: {function: tests.handlers.log_call}}
  - name: bank
    kind: sdk
    approval: {required: always, timeout: 3600, onTimeout: reject}
    actions:
      - {name: pay, handler: {function: tests.handlers.log_call}}
---
name: leased
inputs: {log: {type: string}, hold: {type: string, default: ""}}
steps:
  - {id: a, connector: ops, action: log, input: {name: a, path: "{{ inputs.log }}"}}
  - {id: b, connector: ops, action: block, input: {name: b, path: "{{ inputs.log }}", hold: "{{ inputs.hold }}"}, needs: [a]}
  - {id: c, connector: ops, action: log, input: {name: c, path: "{{ inputs.log }}"}, needs: [b]}
outputs: {last: {value: "{{ steps.c.output.done }}"}}
---
name: approved
inputs: {log: {type: string}, hold: {type: string, default: ""}}
steps:
  - {id: ask, connector: bank, action: pay, input: {name: pay, path: "{{ inputs.log }}"}}
  - {id: slow, connector: ops, action: log, input: {name: slow, path: "{{ inputs.log }}", hold: "{{ inputs.hold }}"}, needs: [ask]}
"""

SCRIPT = """
import json, sys
sys.path.insert(0, {root!r})
from owf_magics import OpenWorkflow
from owf_magics.errors import OWFError
from tests.stores import make_store, raw_rows
from tests.test_leases import FLOW
ow = OpenWorkflow(state=make_store({db!r}, lease_seconds={lease}))
ow.load(FLOW)
mode = {mode!r}
if mode == "run":
    r = ow.workflow("leased").execute(inputs={inputs!r}, run_id="leased-run")
    print(json.dumps({{"status": r.status}}))
else:
    import os, time
    while not os.path.exists({go!r}):  # both resumers start together
        time.sleep(0.005)
    try:
        r = ow.resume("approved-run", approvals={{{request!r}: True}})
        print(json.dumps({{"status": r.status}}))
    except OWFError as exc:
        print(json.dumps({{"refused": exc.message, "code": exc.code}}))
"""


def script(db: Path, mode: str, *, lease: float = 1.0, inputs=None, go: str = "", request: str = "") -> list[str]:
    code = SCRIPT.format(
        root=str(ROOT), db=str(db), lease=lease, mode=mode, inputs=inputs or {}, go=go, request=request
    )
    return [sys.executable, "-c", code]


def wait_for(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def logged(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_a_run_alive_in_another_process_is_not_resumed_even_with_force(tmp_path, store_db):
    db, log, hold = store_db, tmp_path / "calls.log", tmp_path / "hold"
    hold.touch()  # step b blocks the child's event loop while this file exists
    child = subprocess.Popen(
        script(db, "run", lease=1.0, inputs={"log": str(log), "hold": str(hold)}),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: "b" in logged(log) or child.poll() is not None, "the run never reached step b")
        assert child.poll() is None, child.stderr.read() if child.stderr else ""
        ow = OpenWorkflow(state=str(db))
        ow.load(FLOW)
        first = ow.store.get_run("leased-run").lease_until
        time.sleep(2.5)  # more than two lease lengths: only renewals keep it alive
        record = ow.store.get_run("leased-run")
        assert record.status == "running" and record.lease_alive
        assert record.lease_until > first  # renewed by a thread while the child's event loop is blocked
        for force in (True, False):
            with pytest.raises(OWFError) as refused:
                ow.resume("leased-run", force=force)
            assert refused.value.details["pid"] == child.pid
            assert refused.value.details["lease_until"] >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            assert str(child.pid) in refused.value.message and "until" in refused.value.message
        hold.unlink()
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert json.loads(out.strip().splitlines()[-1]) == {"status": "completed"}
    assert logged(log) == ["a", "b", "c"]  # every step ran once: nothing was run twice
    final = ow.store.get_run("leased-run")
    assert final.status == "completed" and final.lease_owner is None and final.lease_until is None
    ow.close()


def test_of_two_concurrent_resumes_exactly_one_proceeds(tmp_path, store_db):
    db, log, hold, go = store_db, tmp_path / "calls.log", tmp_path / "hold", tmp_path / "go"
    ow = OpenWorkflow(state=str(db))
    ow.load(FLOW)
    r = ow.workflow("approved").execute(inputs={"log": str(log), "hold": str(hold)}, run_id="approved-run")
    assert r.status == "waiting_approval" and ow.store.get_run(r.run_id).lease_owner is None
    hold.touch()  # the winner holds its run (and its lease) in step `slow` until the loser is done
    procs = [
        subprocess.Popen(
            script(db, "resume", go=str(go), request=r.pending[0].id),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        time.sleep(1.0)  # both have imported and wait for the start
        go.touch()
        wait_for(lambda: any(p.poll() is not None for p in procs), "neither resume finished")
        loser = next(p for p in procs if p.poll() is not None)
        out, err = loser.communicate(timeout=30)
        assert loser.returncode == 0, err
        refusal = json.loads(out.strip().splitlines()[-1])
        assert "running in process" in refusal["refused"] and refusal["code"] == "VALIDATION"
        hold.unlink()
        winner = next(p for p in procs if p is not loser)
        out, err = winner.communicate(timeout=60)
        assert winner.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1]) == {"status": "completed"}
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert logged(log) == ["pay", "slow"]  # the approved step and the one after it ran once
    assert ow.run("approved-run").status == "completed"
    ow.close()


# -- the store's side ------------------------------------------------------------------------


def test_a_running_run_holds_a_lease_until_it_ends_or_waits(tmp_path, store_db):
    with make_store(store_db, lease_seconds=60) as s:
        rec = s.create_run("r1", "w")
        assert rec.lease_owner == s.owner and s.get_run("r1").lease_alive
        _host, pid, token = s.owner.rsplit(":", 2)
        assert int(pid) > 0 and len(token) == 8
        s.set_status("r1", "waiting_approval")
        assert s.get_run("r1").lease_owner is None
        assert s.claim_run("r1").lease_owner == s.owner
        for status in ("completed", "failed", "canceled"):
            s.create_run(f"r-{status}", "w")
            s.finish_run(f"r-{status}", status)
            assert s.get_run(f"r-{status}").lease_until is None
        assert s.create_run("w1", "w", status="waiting_approval").lease_owner is None


def test_the_renewal_thread_runs_only_while_a_lease_is_held(tmp_path, store_db):
    with make_store(store_db, lease_seconds=0.3) as s:
        s.create_run("r1", "w")
        thread = s._keeper._thread
        assert thread is not None and thread.is_alive()
        time.sleep(0.5)
        assert s.get_run("r1").lease_until.timestamp() > time.time()  # renewed past its first expiry
        s.finish_run("r1", "completed")
        thread.join(timeout=5)  # nothing left to renew: it ends within a period
        assert not thread.is_alive()
        s.create_run("r2", "w")  # a new lease starts a new one
        assert s._keeper._thread is not None and s._keeper._thread.is_alive()


def test_claims_follow_the_lease(tmp_path, store_db):
    path = store_db
    holder = make_store(path, lease_seconds=0.3)
    other = make_store(path)
    holder.create_run("r1", "w")
    holder.close()  # no more renewals, as if the process had died
    with pytest.raises(OWFError, match="lease held until") as refused:
        other.claim_run("r1", force=True)
    assert refused.value.details["lease_owner"] == holder.owner
    time.sleep(0.4)
    assert other.claim_run("r1").lease_owner == other.owner  # expired: no force needed
    with pytest.raises(OWFError, match="lease held until"):  # now it is the other's
        make_store(path).claim_run("r1")
    other.set_status("r1", "running")  # keeps its lease; after waiting, running has no lease:
    other.set_status("r1", "waiting_approval")
    other.set_status("r1", "running")
    with pytest.raises(OWFError, match="force=True"):
        other.claim_run("r1")
    assert other.claim_run("r1", force=True).status == "running"
    other.finish_run("r1", "completed")
    with pytest.raises(OWFError, match="is completed"):
        other.claim_run("r1", force=True)
    other.close()


def test_a_lost_lease_stops_the_writes_of_its_old_holder(tmp_path, store_db):
    path = store_db
    slow = make_store(path, lease_seconds=0.3)
    slow.create_run("r1", "w")
    slow._keeper.stop()  # its renewals stall (a frozen process)
    time.sleep(0.4)
    taker = make_store(path)
    taker.claim_run("r1")
    conn, _ = slow._keeper_connection()
    slow._keeper.renew(conn, None, {"r1"})  # the next renewal finds the lease gone
    conn.close()
    with pytest.raises(OWFError, match="lost its lease"):
        slow.checkpoint("r1", StepRecord("a", "a", "success", 1))
    with pytest.raises(OWFError, match="lost its lease"):
        slow.finish_run("r1", "failed")
    assert taker.get_run("r1").status == "running" and taker.get_steps("r1") == {}
    slow.close()
    taker.close()


def test_a_frozen_holder_checks_its_lease_before_it_writes(tmp_path, store_db):
    path = store_db
    frozen = make_store(path, lease_seconds=0.3)
    frozen.create_run("r1", "w")
    frozen._keeper.stop()  # frozen: no renewal ran, and none noticed the loss
    time.sleep(0.4)
    taker = make_store(path)
    taker.claim_run("r1")
    with pytest.raises(OWFError, match="lost its lease"):  # its own renewal is late: it checks first
        frozen.checkpoint("r1", StepRecord("a", "a", "success", 1))
    assert taker.get_steps("r1") == {}
    frozen.close()
    taker.close()


def test_a_version_1_store_is_migrated_in_place(tmp_path):
    from owf_magics.runs.schema import _V1

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(_V1)
    for rid in ("old1", "old2"):
        conn.execute(
            "INSERT INTO runs (run_id, workflow, status, inputs, started_at, manifest_source, metadata)"
            " VALUES (?, 'w', 'running', '{}', 1.0, 'name: w', '{}')",
            (rid,),
        )
    conn.execute("INSERT INTO events VALUES ('old1', 1, 'run.started', '{\"type\": \"run.started\"}')")
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    with SQLiteRunStore(path) as s:
        assert (
            s.schema_version == SCHEMA_VERSION == 6
        )  # 1 -> 2 -> 3 (labels) -> 4 (sessions) -> 5 (definitions) -> 6 (trails)
        old = s.get_run("old1")
        assert old.manifest_source == "name: w" and old.lease_owner is None
        with pytest.raises(OWFError, match="force=True"):  # running, no lease: as before leases
            s.claim_run("old1")
        s.claim_run("old1", force=True)
        assert s.append_events("old1", [{"type": "x"}]) == [2]
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT COUNT(*) FROM manifests").fetchone()[0] == 1  # two runs, one source
    assert raw.execute("SELECT COUNT(*) FROM runs WHERE manifest_source IS NOT NULL").fetchone()[0] == 0
    raw.close()


def test_one_manifest_source_per_content_hash(tmp_path, store_db):
    with make_store(store_db) as s:
        for i in range(3):
            s.create_run(f"r{i}", "w", manifest_source="name: w\nsteps: []\n")
        s.create_run("other", "w", manifest_source="name: v\n")
        assert s.get_run("r2").manifest_source == "name: w\nsteps: []\n"
        assert raw_rows(s, "SELECT COUNT(*) FROM manifests")[0][0] == 2
        for rid in ("r0", "r1", "r2", "other"):
            s.finish_run(rid, "completed", finished_at=None)
        assert s.prune(-1) == 4
        assert raw_rows(s, "SELECT COUNT(*) FROM manifests")[0][0] == 0


def test_a_group_commit_writes_its_steps_and_events_together_and_numbers_without_gaps(tmp_path, store_db):
    path = store_db
    a, b = make_store(path), make_store(path)
    a.create_run("r", "w")
    output = {"rows": [1, 2, 3], "text": "ok"}
    completed = {"type": "step.execution.completed", "result": {"status": "success", "output": output}}
    steps = [StepRecord("s1", "s1", "success", output), StepRecord("s2", "s2", "success", [1])]
    assert a.checkpoint_many("r", steps, [{"type": "step.started"}, completed]) == [1, 2]
    assert b.append_events("r", [{"type": "b"}]) == [3]  # another store object: a's count is stale
    assert a.append_events("r", [{"type": "c"}, {"type": "d"}]) == [4, 5]  # read again, no gap
    assert [e.seq for e in a.get_events("r")] == [1, 2, 3, 4, 5]
    assert a.get_events("r")[1].event == completed  # the output's text was spliced in once
    assert a.get_steps("r")["s1"].output == output
    with pytest.raises(OWFError, match="no run"):
        a.checkpoint_many("nope", steps, [completed])
    assert a.get_events("nope") == []
    a.close()
    b.close()


_CLAIMER = """
import sys, time
from owf_magics.errors import OWFError
from tests.stores import make_store, raw_rows
s = make_store(sys.argv[1], lease_seconds=60)
while time.time() < float(sys.argv[2]):  # every process claims at the same moment
    time.sleep(0.001)
try:
    s.claim_run("r")
    print("won")
except OWFError as exc:
    print("lost " + exc.details.get("lease_owner", ""))
"""


def test_exactly_one_of_several_processes_claims_a_run(tmp_path, store_db):
    path = store_db
    with make_store(path) as s:
        s.create_run("r", "w", status="waiting_approval")
    start = str(time.time() + 2.0)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIMER, str(path), start], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(4)
    ]
    outcomes = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
        outcomes.append(out.decode().strip())
    assert sorted(o.split()[0] for o in outcomes) == ["lost", "lost", "lost", "won"]
    with make_store(path) as s:
        owner = s.get_run("r").lease_owner
    assert all(o == f"lost {owner}" for o in outcomes if o != "won")  # each loser was told who won
