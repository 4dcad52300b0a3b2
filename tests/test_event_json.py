"""The run store writes a step's own events through orjson when it is installed: the text must be
exactly what the json module writes, and anything else must take the json module's path."""

from __future__ import annotations

import json
from typing import Any

import pytest

from owf_magics.runs import checkpoint_batch
from owf_magics.runs.checkpoint_batch import encode

pytest.importorskip("orjson")


def _started(**extra: Any) -> dict[str, Any]:
    return {
        "type": "step.started",
        "timestamp": "2026-12-06T17:47:10.123Z",
        "run_id": "20261206_174710_000001",
        "step_id": "wf/s12 ü ✓",
        "step_type": "action",
        "iteration": "1.2",
        "attempt": 1,
        "backend": "native",
        "fragment": "wf",
        **extra,
        "event_id": "evt_20261206_174710_000001_00025",
    }


def _completed(output: Any, **result: Any) -> dict[str, Any]:
    event = _started()
    del event["backend"]
    event["type"] = "step.execution.completed"
    event["execution"] = {"backend": "native", "runtime": "python", "adapter_version": "0.1", "duration_ms": 12.345}
    event["result"] = {"status": "success", "output": output, **result}
    return event


OUTPUTS = [
    None,
    "plain",
    'tab\there "quoted" \\ \x00 \x1f \x7f é 中 😀 \u2028',
    0,
    -(2**63),
    2**64,  # past orjson's range: the json module writes it
    True,
    {"a": [1, 2.5, None, {"b": "ü"}], "big": 2**70, "nan": float("nan"), "inf": float("inf")},
    [1.0, 1e16, 1e-7, 123456789.123],
    "lone \ud800 surrogate",
    1.5,
    float("nan"),
]


@pytest.mark.parametrize("output", OUTPUTS, ids=range(len(OUTPUTS)))
def test_completed_event_text_is_the_json_modules(output: Any) -> None:
    event = _completed(output)
    written: dict[int, tuple[Any, str]] = {}
    if output is not None and not isinstance(output, str | int | float | bool):
        written[id(output)] = (output, encode(output))  # what the step row wrote
    body = checkpoint_batch._body(event, written)
    assert body == encode(event)
    assert repr(json.loads(body)["result"]["output"]) == repr(json.loads(encode(output)))


@pytest.mark.parametrize(
    "event",
    [
        _started(),
        _started(reason="a user's text ü", details={"nan": float("nan")}),  # fields of its own: json module
        _completed({"x": 1}, error={"code": "X", "message": "m", "details": {"v": float("inf")}}),
        {**_completed(None), "execution": {"duration_ms": float("nan")}},
        {"type": "step.started", "timestamp": "t", "step_id": "s\ud800"},
        {"type": "run.completed", "payload": {"v": float("nan")}},
    ],
    ids=range(6),
)
def test_other_events_read_as_the_json_module_writes_them(event: dict[str, Any]) -> None:
    assert checkpoint_batch._body(event, {}) == encode(event)


def test_without_orjson_the_json_module_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    event = _completed("out")
    monkeypatch.setattr(checkpoint_batch, "_FAST", None)
    assert checkpoint_batch._body(event, {}) == encode(event)
