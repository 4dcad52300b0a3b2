"""A group chat killed in the middle of round 3 resumes in a new process without redoing rounds 1
and 2 (each pattern turn is checkpointed as it ends; docs/patterns.md)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from owf_magics import OpenWorkflow
from tests.conftest import ROOT


def manifest(log: str, hold: str) -> str:
    def tool_then(name: str, answer: str, held: bool = False) -> list[dict]:
        args = {"name": name, "path": log, **({"hold": hold} if held else {})}
        return [
            {"tool_calls": [{"name": "ops_log", "args": args}], "usage": {"prompt_tokens": 5, "completion_tokens": 2}},
            {"content": answer, "usage": {"prompt_tokens": 9, "completion_tokens": 3}},
        ]

    def agent(name: str, responses: list[dict]) -> dict:
        return {
            "type": "agent",
            "name": name,
            "toolset": ["ops"],
            "model": {"provider": "scripted", "responses": responses},
        }

    docs = [
        {
            "type": "connector",
            "name": "ops",
            "kind": "sdk",
            "actions": [{"name": "log", "handler": {"function": "tests.handlers.log_call"}}],
        },
        agent("pro", tool_then("pro-1", "pro 1") + tool_then("pro-3", "pro 3", held=True)),
        agent("con", tool_then("con-2", "con 2") + tool_then("con-4", "con 4")),
        {
            "type": "workflow",
            "name": "debate",
            "steps": [
                {
                    "id": "chat",
                    "type": "groupChat",
                    "participants": ["pro", "con"],
                    "termination": {"maxRounds": 4},
                    "input": {"task": "tabs or spaces?"},
                }
            ],
            "outputs": {"conversation": {"value": "{{ steps.chat.output.conversation }}"}},
        },
    ]
    return "\n".join("---\n" + json.dumps(d) for d in docs)


SCRIPT = """
import json, sys
sys.path.insert(0, {root!r})
from owf_magics import OpenWorkflow
from owf_magics.runs.store import SQLiteRunStore
from tests.test_patterns_durable import manifest
ow = OpenWorkflow(state=SQLiteRunStore({db!r}, lease_seconds=2.0))
ow.load(manifest({log!r}, {hold!r}))
if {mode!r} == "run":
    ow.workflow("debate").execute(run_id="chat-run")
else:
    r = ow.resume("chat-run")
    rows = r.trace[r.trace.iteration != ""]
    print(json.dumps({{"status": r.status, "outputs": r.outputs, "tokens": int(rows.total_tokens.sum())}}))
"""


def test_a_chat_killed_in_round_3_resumes_without_redoing_rounds_1_and_2(tmp_path):
    log, hold, db = tmp_path / "calls.log", tmp_path / "hold", tmp_path / "runs.db"
    hold.touch()  # round 3's tool call blocks while this file exists

    def script(mode: str) -> list[str]:
        code = SCRIPT.format(root=str(ROOT), db=str(db), log=str(log), hold=str(hold), mode=mode)
        return [sys.executable, "-c", code]

    child = subprocess.Popen(script("run"), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while "pro-3" not in (log.read_text().split() if log.exists() else []):  # round 3 is in flight
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            assert time.monotonic() < deadline, "the chat never reached round 3"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
        for stream in (child.stdout, child.stderr):
            if stream:
                stream.close()
    observer = OpenWorkflow(state=str(db))
    while observer.store.get_run("chat-run").lease_alive:  # the dead process's lease runs out
        time.sleep(0.1)
    observer.close()
    hold.unlink()

    out = subprocess.run(script("resume"), capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert log.read_text().split() == ["pro-1", "con-2", "pro-3", "pro-3", "con-4"]  # only round 3 ran twice
    assert answer["status"] == "completed"
    assert [m["content"] for m in answer["outputs"]["conversation"]] == ["pro 1", "con 2", "pro 3", "con 4"]
    assert answer["tokens"] == 4 * (5 + 2 + 9 + 3)  # restored rounds keep their recorded usage
