"""Batch runs past one kernel (issue 18), standalone: ``python bench/scale_bench.py [--runs N]``.

1. ``ow.map`` of N runs (default 10,000) of a 5-step chain whose steps are 50 ms async naps:
   in-process, then on a Dask LocalCluster with 1 and with 2 worker processes (target: 2 workers
   >= 1.8x one worker). No run store (``state=False``): this measures the engine and the cluster.
   Each worker runs its tasks with the same concurrency as in-process.
2. The per-step cost of the run store: a durable chain of no-op steps on the SQLite store and on a
   PostgreSQL server started for the bench (Debian's binaries, tests/pg_server.py), side by side.

The machine's core count bounds the cluster figures: on 2 shared cores two workers cannot be twice
one worker when the engine itself is the bottleneck; the table says how many cores there were.
Beside the wall clock, each cluster row gives the CPU its batch cost, per run: W, the workers'
(summed with ``client.run``), and C, this process's (the client, and LocalCluster's scheduler,
which lives in it). CPU time is what stays meaningful on a machine shared with other jobs; two
workers sharing two cores with this process can be at most about 2W/(W+C) times one worker where
the batch is CPU-bound.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from executor_bench import CONNECTOR  # noqa: E402

from owf_magics import OpenWorkflow  # noqa: E402

NAP_CHAIN = """
name: naps
inputs: {i: {type: integer}}
outputs: {i: {value: "{{ inputs.i }}"}}
steps:
  - {id: s0, connector: bench, action: nap}
  - {id: s1, connector: bench, action: nap, dependsOn: [s0]}
  - {id: s2, connector: bench, action: nap, dependsOn: [s1]}
  - {id: s3, connector: bench, action: nap, dependsOn: [s2]}
  - {id: s4, connector: bench, action: nap, dependsOn: [s3]}
"""

NOOP_CHAIN = "name: noops\nsteps:\n" + "".join(
    f"  - {{id: s{i}, connector: bench, action: noop{'' if i == 0 else f', dependsOn: [s{i - 1}]'}}}\n"
    for i in range(20)
)


def registry(state: object) -> OpenWorkflow:
    ow = OpenWorkflow(state=state)  # type: ignore[arg-type]
    ow.load(CONNECTOR)
    ow.load(NAP_CHAIN)
    ow.load(NOOP_CHAIN)
    return ow


def cpu_seconds() -> float:
    """This process's CPU time (user + system), all threads."""
    import resource

    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def batch_figures(runs: int, concurrency: int) -> list[tuple[str, float, tuple[float, float] | None]]:
    import distributed

    inputs = [{"i": i} for i in range(runs)]
    ow = registry(False)
    rows: list[tuple[str, float, tuple[float, float] | None]] = []
    t = time.perf_counter()
    batch = ow.map("naps", inputs, concurrency=concurrency, progress=False)
    rows.append(("in-process", time.perf_counter() - t, None))
    assert batch.statuses == {"completed": runs}, batch
    for workers in (1, 2):
        cluster = distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            silence_logs=40,
        )
        client = distributed.Client(cluster)
        ow.map("naps", inputs[: workers * 4], client=client, progress=False)  # workers load the manifests
        w0, c0 = sum(client.run(cpu_seconds).values()), cpu_seconds()
        t = time.perf_counter()
        batch = ow.map(
            "naps",
            inputs,
            client=client,
            concurrency=concurrency,
            chunk_size=min(concurrency, -(-runs // workers)),
            progress=False,
        )
        wall = time.perf_counter() - t
        cpu = ((sum(client.run(cpu_seconds).values()) - w0) / runs, (cpu_seconds() - c0) / runs)
        rows.append((f"LocalCluster, {workers} worker{'s' if workers > 1 else ''}", wall, cpu))
        assert batch.statuses == {"completed": runs}, batch
        assert [r.outputs["i"] for r in batch.results] == list(range(runs))
        client.close()
        cluster.close()
    ow.close()
    return rows


def per_step(state: str, reps: int = 30) -> float:
    ow = registry(state)
    wf = ow.workflow("noops")
    wf.execute()  # warm: the plan, the store's schema
    t = time.perf_counter()
    for _ in range(reps):
        assert wf.execute().status == "completed"
    elapsed = time.perf_counter() - t
    ow.close()
    return elapsed / (reps * 20) * 1e6


def store_figures() -> list[tuple[str, float | None, str]]:
    tmp = Path(tempfile.mkdtemp())
    out: list[tuple[str, float | None, str]] = [("SQLite file", per_step(str(tmp / "runs.db")), "")]
    try:
        from tests.pg_server import PostgresServer, unavailable_reason
    except ImportError:
        return [*out, ("PostgreSQL", None, "tests/pg_server.py not found")]
    reason = unavailable_reason()
    if reason:
        return [*out, ("PostgreSQL", None, reason)]
    server = PostgresServer().start()
    try:
        out.append(("PostgreSQL (127.0.0.1, fsync off)", per_step(server.create_database()), ""))
    finally:
        server.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=500)
    args = parser.parse_args()
    print(f"## Batch runs: {args.runs} runs of a 5-step chain of 50 ms async steps ({os.cpu_count()} cores)\n")
    print("| where | seconds | runs/s | vs 1 worker | W: workers' CPU/run | C: client+scheduler CPU/run |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    rows = batch_figures(args.runs, args.concurrency)
    walls = {name: seconds for name, seconds, _ in rows}
    one = walls["LocalCluster, 1 worker"]
    for name, seconds, cpu in rows:
        used = f"{cpu[0] * 1e6:.0f} µs | {cpu[1] * 1e6:.0f} µs" if cpu else " | "
        print(f"| {name} | {seconds:.2f} | {args.runs / seconds:.0f} | {one / seconds:.2f}x | {used} |")
    two = walls["LocalCluster, 2 workers"]
    print(f"\n2 workers vs 1: {one / two:.2f}x (target >= 1.8x; bounded by the cores above)\n")
    print("## Run store: per-step cost of a durable 20-step chain of no-op steps\n")
    print("| store | microseconds per step | note |")
    print("| --- | ---: | --- |")
    for name, us, note in store_figures():
        print(f"| {name} | {'' if us is None else f'{us:.0f}'} | {note} |")


if __name__ == "__main__":
    main()
