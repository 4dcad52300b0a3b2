"""Published workflows on `owf serve` (issue 24): what publishing costs, and what running a
published workflow by name or ``name@range`` costs beside one loaded at start-up.

Standalone: ``python bench/publish_bench.py [--requests N]``. One real ``owf serve`` subprocess
(a SQLite store in a temporary directory, ``OWF_SECRET_KEY`` set so snapshots are encrypted); one
httpx client sends the requests one after another, so the figures are latencies (median and p95
in milliseconds), not throughput (``bench/service_bench.py`` measures that).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from service_bench import SECRET, start_server


def chain(name: str, version: str) -> str:
    steps = "\n".join(f'  - {{id: s{i}, type: transform, expression: "{{{{ inputs.x }}}}{i}"}}' for i in range(1, 6))
    return f"name: {name}\nversion: {version}\ninputs: {{x: {{type: string, default: a}}}}\nsteps:\n{steps}\n"


def start(folder: Path, flows: Path) -> tuple[subprocess.Popen[str], str]:
    from cryptography.fernet import Fernet

    return start_server(folder, flows, {"OWF_SECRET_KEY": Fernet.generate_key().decode()})


def bearer() -> str:
    import jwt

    now = int(time.time())
    scope = "workflows:read workflows:run workflows:write"
    claims = {"sub": "bench", "tenant": "bench", "scope": scope, "iat": now, "exp": now + 3600}
    return str(jwt.encode(claims, SECRET, algorithm="HS256"))


def timed(fn: object, n: int) -> tuple[float, float]:
    times = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)  # type: ignore[operator]
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def main() -> None:
    import httpx

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        flows = folder / "flows.yaml"
        flows.write_text(chain("loaded", "1.0.0"))
        proc, url = start(folder, flows)
        try:
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {bearer()}"}, timeout=60) as c:

                def publish(i: int) -> None:
                    r = c.post("/workflows", json={"manifest": chain("pub", f"1.{i}.0")})
                    assert r.status_code == 201, r.text

                def run(ref: str):  # type: ignore[no-untyped-def]
                    def go(i: int) -> None:
                        r = c.post("/workflows/execute", json={"workflow": ref, "inputs": {"x": "b"}})
                        assert r.status_code == 200 and r.json()["status"] == "completed", r.text

                    return go

                rows = [("POST /workflows (publish a 5-step workflow)", timed(publish, max(20, args.requests // 4)))]
                run("loaded")(0)
                run("pub")(0)  # warm: the snapshot is loaded once per worker
                for label, ref in (
                    ("execute, loaded at start-up", "loaded"),
                    ("execute, published (newest)", "pub"),
                    ("execute, published name@^1.3", "pub@^1.3"),
                ):
                    rows.append((label, timed(run(ref), args.requests)))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"{'operation':48} {'median ms':>10} {'p95 ms':>10}")
    for label, (median, p95) in rows:
        print(f"{label:48} {median:10.2f} {p95:10.2f}")


if __name__ == "__main__":
    main()
