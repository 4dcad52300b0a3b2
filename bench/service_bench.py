"""`owf serve` under load: requests per second for ``POST /workflows/validate`` and for a 5-step
``POST /workflows/execute`` with 50 concurrent clients on 127.0.0.1, beside calling the engine
directly in the same run (the same manifests, the same kind of run store).

Standalone: ``python bench/service_bench.py [--requests N] [--clients C]``. The server is a real
``owf serve`` subprocess (HS256 tokens, a SQLite store in a temporary directory); the clients are
httpx on one event loop in this process, so on a 2-core machine they share the CPU with the
server: the figures are what one worker serves with its load generator beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-0123456789abcdef-0123456789abcdef"

CHAIN = """
name: chain
inputs: {x: {type: string, default: a}}
steps:
  - {id: s1, type: transform, expression: "{{ inputs.x }}1"}
  - {id: s2, type: transform, expression: "{{ steps.s1.output.result }}2"}
  - {id: s3, type: transform, expression: "{{ steps.s2.output.result }}3"}
  - {id: s4, type: transform, expression: "{{ steps.s3.output.result }}4"}
  - {id: s5, type: transform, expression: "{{ steps.s4.output.result }}5"}
outputs: {out: {value: "{{ steps.s5.output.result }}"}}
"""


def start_server(
    folder: Path, flows: Path, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """A real `owf serve` on a free port of 127.0.0.1 (also used by publish_bench.py)."""
    env = {**os.environ, "OWF_JWT_SECRET": SECRET, **(extra_env or {})}
    command = [sys.executable, "-m", "owf_magics.cli", "serve", str(flows), "--port", "0"]
    command += ["--state", str(folder / "runs.db"), "--log-level", "warning"]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if select.select([proc.stdout], [], [], 0.2)[0]:
            line = proc.stdout.readline()
            if "listening on" in line:
                return proc, line.split("listening on ", 1)[1].strip()
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("owf serve did not start")


def bearer() -> str:
    import jwt

    now = int(time.time())
    claims = {"sub": "bench", "tenant": "bench", "scope": "workflows:read workflows:run", "iat": now, "exp": now + 3600}
    return str(jwt.encode(claims, SECRET, algorithm="HS256"))


async def load(url: str, path: str, body: dict[str, Any], requests: int, clients: int) -> tuple[float, int]:
    """Send `requests` POSTs from `clients` concurrent clients; returns (requests/s, failures)."""
    import httpx

    headers = {"Authorization": f"Bearer {bearer()}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    left = iter(range(requests))
    failures = 0
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120) as client:
        await client.post(path, json=body)  # warm: imports and caches on the server

        async def worker() -> None:
            nonlocal failures
            for _ in left:
                response = await client.post(path, json=body)
                if response.status_code != 200:
                    failures += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return requests / elapsed, failures


def per_second(fn: Callable[[], Any], n: int) -> float:
    fn()
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - started)


def run(requests: int = 1000, clients: int = 50) -> list[tuple[str, float, str]]:
    """Rows of (measurement, per second, comparison)."""
    from owf_magics import OpenWorkflow

    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        flows = folder / "chain.yaml"
        flows.write_text(CHAIN)
        proc, url = start_server(folder, flows)
        try:
            validate_rps, bad_v = asyncio.run(load(url, "/workflows/validate", {"manifest": CHAIN}, requests, clients))
            execute_rps, bad_e = asyncio.run(
                load(url, "/workflows/execute", {"workflow": "chain", "inputs": {"x": "z"}}, requests, clients)
            )
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        if bad_v or bad_e:
            raise RuntimeError(f"{bad_v} validate and {bad_e} execute requests failed")

        direct_validate = per_second(lambda: OpenWorkflow(state=False).validate(CHAIN + "\n"), 300)
        ow = OpenWorkflow(state=str(folder / "direct.db"))
        ow.load(CHAIN)
        wf = ow.workflow("chain")
        direct_execute = per_second(lambda: wf.execute({"x": "z"}), 300)
        ow.close()
    rows.append(
        (f"POST /workflows/validate, {clients} clients", validate_rps, f"{validate_rps / direct_validate:.2f}x direct")
    )
    rows.append(("  ow.validate() directly, one caller", direct_validate, ""))
    rows.append(
        (
            f"POST /workflows/execute (5 steps), {clients} clients",
            execute_rps,
            f"{execute_rps / direct_execute:.2f}x direct",
        )
    )
    rows.append(("  wf.execute() directly (SQLite store), one caller", direct_execute, ""))
    return rows


def report(requests: int = 1000, clients: int = 50) -> None:
    """Print the table (what `bench/run.py` calls: ``import service_bench; service_bench.report()``)."""
    print(f"{'owf serve (one worker, 127.0.0.1)':<56}{'per second':>12}  comparison")
    for name, value, note in run(requests, clients):
        print(f"{name:<56}{value:>12.0f}  {note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    report(args.requests, args.clients)
    return 0


if __name__ == "__main__":
    sys.exit(main())
