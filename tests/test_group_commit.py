"""Group-committed checkpoints on a real SQLite file (and PostgreSQL database): a step's record is committed before any step
that depends on it starts (seen from another connection, as a resumed process would see it), and
steps that finish in the same event-loop tick share one transaction."""

from __future__ import annotations

from owf_magics import OpenWorkflow

CONNECTOR = """
connector: {name: probe, kind: sdk}
actions:
  - {name: seen, handler: {function: tests.handlers.committed_steps}}
  - {name: noop, handler: {function: tests.handlers.noop_inline}}
"""


def test_a_dependent_starts_only_after_its_predecessors_are_committed(store_db):
    db = store_db  # a SQLite file, then a PostgreSQL database
    ow = OpenWorkflow(state=str(db))
    ow.load(CONNECTOR)
    fan = "\n".join(f"  - {{id: p{i}, connector: probe, action: noop, needs: [a]}}" for i in range(5))
    ow.load(f"""
name: chain
inputs: {{db: {{type: string}}}}
steps:
  - {{id: a, connector: probe, action: noop}}
  - {{id: b, connector: probe, action: seen, input: {{path: "{{{{ inputs.db }}}}"}}, needs: [a]}}
  - {{id: c, connector: probe, action: seen, input: {{path: "{{{{ inputs.db }}}}"}}, needs: [b]}}
{fan}
  - {{id: join, connector: probe, action: seen, input: {{path: "{{{{ inputs.db }}}}"}}, needs: [p0, p1, p2, p3, p4]}}
""")
    r = ow.workflow("chain").execute(inputs={"db": str(db)})
    assert r.status == "completed"
    assert "a" in r.steps["b"].output and "b" not in r.steps["b"].output
    assert {"a", "b"} <= set(r.steps["c"].output) and "c" not in r.steps["c"].output
    assert {"a", "p0", "p1", "p2", "p3", "p4"} <= set(r.steps["join"].output)
    assert len(ow.store.get_events(r.run_id)) == len(r.events)  # every event stored, once
    ow.close()


def test_steps_finishing_in_one_tick_share_a_transaction(tmp_path):
    ow = OpenWorkflow(state=str(tmp_path / "runs.db"))
    ow.load(CONNECTOR)
    n = 40
    ow.load(
        "name: fan\nsteps:\n  - {id: root, connector: probe, action: noop}\n"
        + "\n".join(f"  - {{id: s{i}, connector: probe, action: noop, needs: [root]}}" for i in range(n))
    )
    ow.workflow("fan").execute()  # warm: plans, handlers
    commits: list[str] = []
    ow.store._conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    r = ow.workflow("fan").execute()
    ow.store._conn.set_trace_callback(None)
    assert r.status == "completed" and len(ow.store.get_steps(r.run_id)) == n + 1
    # the run's record, the root, the 40 parallel steps, the run's end: far fewer than 42 commits
    assert len(commits) <= 6, len(commits)
    seqs = [e.seq for e in ow.store.get_events(r.run_id)]
    assert seqs == list(range(1, len(r.events) + 1))
    ow.close()
