"""Session retention: ``session.retention: {max_items, max_age}`` on runner requests,
``ow.sessions()``, ``ow.prune_sessions(...)`` and ``owf sessions prune`` (issue 25, item 6)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from owf_magics import OpenWorkflow
from owf_magics.cli import main
from owf_magics.errors import ManifestError, OWFError


def request(session_id: str = "s1", **retention: Any) -> dict[str, Any]:
    session: dict[str, Any] = {
        "session_id": session_id,
        "history_size": 10,
        "credentials": {"user_id": "u", "account_id": "a"},
    }
    if retention:
        session["retention"] = retention
    return {
        "query": "hello",
        "session": session,
        "callback": {"mode": "stdout"},
        "workflow": {
            "name": f"chat_{session_id}",
            "starting_agent": "assistant",
            "agents": [{"name": "assistant", "instructions": "Echo.", "model": {"provider": "echo", "model": "e"}}],
        },
    }


def ask(ow: OpenWorkflow, req: dict[str, Any], *queries: str) -> None:
    ow.load(req)
    for q in queries:
        assert ow.workflow(req["workflow"]["name"]).execute(inputs={"query": q}).status == "completed"


def test_max_items_keeps_the_newest_messages_of_the_session(tmp_path: Path) -> None:
    ow = OpenWorkflow(state=str(tmp_path / "runs.db"))
    ask(ow, request(max_items=3), "one", "two", "three")
    kept = ow.store.get_messages("s1")
    assert len(kept) == 3  # of six (a question and an answer per request)
    assert kept[-2]["content"] == "three" and kept[0]["role"] == "assistant"


def test_max_age_drops_older_messages_when_the_next_request_comes(tmp_path: Path) -> None:
    ow = OpenWorkflow(state=str(tmp_path / "runs.db"))
    ow.store.append_messages("s1", [{"role": "user", "content": "ancient"}], agent="assistant")
    with ow.store._tx() as conn:
        conn.execute("UPDATE session_messages SET created_at = ?", (time.time() - 2 * 86400,))
    ask(ow, request(max_age="1d"), "fresh")
    assert [m["content"] for m in ow.store.get_messages("s1")] == ["fresh", "fresh"]  # question, echo


def test_a_bad_retention_is_refused_at_load_with_its_line() -> None:
    ow = OpenWorkflow(state=":memory:")
    text = json.dumps(request(max_items=-1, max_age="soon", keep="all"), indent=1)
    with pytest.raises(ManifestError) as info:
        ow.load(text)
    got = sorted((d.code, d.line) for d in info.value.diagnostics)
    lines = text.splitlines()
    line = {k: next(i for i, t in enumerate(lines, 1) if f'"{k}"' in t) for k in ("max_items", "max_age", "keep")}
    assert got == sorted(
        [("INVALID_VALUE", line["max_items"]), ("INVALID_VALUE", line["max_age"]), ("UNKNOWN_FIELD", line["keep"])]
    )


@pytest.mark.parametrize("state", ["db", False])
def test_sessions_frame_and_prune(tmp_path: Path, state: Any) -> None:
    ow = OpenWorkflow(state=str(tmp_path / "runs.db") if state else False)
    from owf_magics.api.agent import sessions_of

    keeper = sessions_of(ow)
    keeper.append_messages("a", [{"role": "user", "content": str(i)} for i in range(5)], agent="x", run_id="r1")
    keeper.append_messages("b", [{"role": "user", "content": "b"}], agent="y", run_id="r2")
    frame = ow.sessions()
    assert list(frame.columns) == ["session_id", "messages", "agents", "first_at", "last_at", "last_run_id"]
    assert frame.set_index("session_id")["messages"].to_dict() == {"a": 5, "b": 1}
    assert frame.set_index("session_id").loc["a", "agents"] == ["x"]
    assert frame.set_index("session_id").loc["b", "last_run_id"] == "r2"
    assert str(frame["last_at"].dt.tz) == "UTC"
    assert ow.prune_sessions(max_items=2, session_id="a") == 3
    assert [m["content"] for m in keeper.get_messages("a")] == ["3", "4"]
    assert ow.prune_sessions(max_items=0) == 3  # every session emptied, and gone
    assert ow.sessions().empty
    with pytest.raises(OWFError):
        ow.prune_sessions()
    with pytest.raises(OWFError):
        ow.prune_sessions(max_age="yesterday")


def test_owf_sessions_prune_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = str(tmp_path / "runs.db")
    ow = OpenWorkflow(state=state)
    ask(ow, request("s1"), "one", "two")
    ask(ow, request("s2"), "three")
    ow.store.append_messages("old", [{"role": "user", "content": "x"}])
    with ow.store._tx() as conn:
        conn.execute("UPDATE session_messages SET created_at = 0 WHERE session_id = 'old'")
    ow.close()
    capsys.readouterr()  # the requests' stdout callbacks
    assert main(["sessions", "prune", "--state", state, "--max-age", "30d", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"removed": 1, "sessions": 2, "messages": 6}
    assert main(["sessions", "prune", "--state", state, "--max-items", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"removed": 4, "sessions": 2, "messages": 2}
    assert main(["sessions", "list", "--state", state, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted((r["session_id"], r["messages"]) for r in rows) == [("s1", 1), ("s2", 1)]
