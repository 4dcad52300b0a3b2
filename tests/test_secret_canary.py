"""The secret canary, with ``/`` and ``+`` in it, in every encoding, through every channel.

A handler returns the credential it was given raw and encoded (upper and lower case, reversed,
base64 standard and URL-safe, hex, percent-encoded, inside ``Basic base64(user:secret)``), a local
HTTP server echoes ``Bearer <token>``, a handler fails with the secret in its message, and a
two-character secret goes through the same. Nothing that leaves the engine may show any of those
forms: outputs, step outputs, trace, usage, events, callbacks (a callable and a URL on 127.0.0.1),
reprs, error messages, every row of every table of the SQLite store and the database file's raw
bytes, also after a WAL checkpoint.
"""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
import threading
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, quote_plus

import pytest

from owf_magics import OpenWorkflow
from owf_magics.errors import OWFError
from owf_magics.manifest.redaction import redact
from tests.local_http import JSONHandler, serve

CANARY = "Zq9/x+Y2sEcr3t/w+Kp7"
SHORT = "q7"


def forms(secret: str) -> dict[str, str]:
    """Every form of `secret` that must never appear."""
    raw = secret.encode()
    return {
        "raw": secret,
        "upper": secret.upper(),
        "lower": secret.lower(),
        "reversed": secret[::-1],
        "base64": base64.b64encode(raw).decode(),
        "base64_unpadded": base64.b64encode(raw).decode().rstrip("="),
        "base64_url": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "hex": raw.hex(),
        "hex_upper": raw.hex().upper(),
        "percent": quote(secret, safe=""),
        "percent_plus": quote_plus(secret, safe=""),
        "json_escaped": json.dumps(secret)[1:-1].replace("/", "\\/"),
    }


def leaks(text: str, secret: str = CANARY) -> list[str]:
    return [name for name, form in forms(secret).items() if form in text]


def byte_leaks(data: bytes, secret: str = CANARY) -> list[str]:
    return [name for name, form in forms(secret).items() if form.encode() in data]


_FLOW = """
connectors:
  - name: svc
    kind: http
    actions:
      - name: echo
        handler:
          http: {{url: "{base}/echo", method: POST, headers: {{Authorization: "Bearer ${{secrets.TOKEN}}"}}}}
      - name: deny
        handler:
          http: {{url: "{base}/deny", method: POST, headers: {{Authorization: "Bearer ${{secrets.TOKEN}}"}}}}
  - name: fn
    kind: sdk
    actions:
      - {{name: encodings, handler: {{function: tests.robust_handlers.encodings}}}}
      - {{name: fail, handler: {{function: tests.robust_handlers.leak_in_error}}}}
      - {{name: short, handler: {{function: tests.robust_handlers.short}}}}
workflows:
  - name: canary
    steps:
      - {{id: enc, connector: fn, action: encodings, input: {{token: "{{{{ secrets.TOKEN }}}}"}}}}
      - {{id: echo, connector: svc, action: echo, input: {{note: hello}}}}
      - {{id: deny, connector: svc, action: deny, input: {{note: hello}}, continueOnError: true}}
      - {{id: err, connector: fn, action: fail, input: {{token: "{{{{ secrets.TOKEN }}}}"}}, continueOnError: true}}
      - {{id: short, connector: fn, action: short, input: {{token: "{{{{ secrets.PIN }}}}"}}}}
    outputs:
      encodings: {{value: "{{{{ steps.enc.output }}}}"}}
      echoed: {{value: "{{{{ steps.echo.output }}}}"}}
      short: {{value: "{{{{ steps.short.output }}}}"}}
      error: {{value: "{{{{ steps.err.error }}}}"}}
"""


class _Hook(BaseHTTPRequestHandler):
    """The URL callback sink: keeps every body it is sent."""

    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        self.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hook() -> Any:
    _Hook.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Hook.bodies
    server.shutdown()
    server.server_close()


def _everything(result: Any) -> dict[str, str]:
    """Every channel a RunResult exposes, as text."""
    return {
        "repr": repr(result),
        "summary": result.summary(),
        "outputs": json.dumps(result.outputs, default=str),
        "steps": json.dumps({k: asdict(v) for k, v in result.steps.items()}, default=str),
        "step_reprs": repr(result.steps),
        "trace": json.dumps(result.trace_rows, default=str) + result.trace.to_csv(),
        "usage": json.dumps(result.usage_rows, default=str) + result.usage.to_csv(),
        "events": json.dumps(result.events, default=str),
        "error": json.dumps(asdict(result.error) if result.error else None, default=str),
        "pending": json.dumps(result.pending, default=str),
    }


def _store_rows(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return json.dumps({t: conn.execute(f"SELECT * FROM {t}").fetchall() for t in tables}, default=str)


def test_the_canary_never_leaves_in_any_form(tmp_path: Path, hook: Any, caplog: pytest.LogCaptureFixture) -> None:
    url, hooked = hook
    received: list[str | None] = []

    class Echo(JSONHandler):
        def do_POST(self) -> None:
            auth = self.headers.get("Authorization") or ""
            if self.path == "/deny":  # a 401 that quotes the credential it refused
                self.send_json({"error": f"invalid credential {auth}", "hint": auth[::-1].upper()}, status=401)
                return
            received.append(auth)
            self.send_json({"auth": auth, "token": auth.removeprefix("Bearer "), "body": self.read_json()})

    db = tmp_path / "runs.db"
    secrets = {"TOKEN": CANARY, "PIN": SHORT}
    caplog.set_level(logging.DEBUG)
    with serve(Echo) as base:
        ow = OpenWorkflow(state=str(db))
        ow.load(_FLOW.format(base=base))
        wf = ow.workflow("canary")
        seen: list[dict[str, Any]] = []
        by_callable = wf.execute(secrets=secrets, callback=seen.append)
        by_url = wf.execute(secrets=secrets, callback=url)
        stored = ow.run(by_callable.run_id)
        ow.close()

    # the credential reached the service (a trusted place), and the handlers did leak it
    assert received == [f"Bearer {CANARY}"] * 2
    for r in (by_callable, by_url):
        assert r.status == "completed", r.error
        enc = r.outputs["encodings"]
        assert enc["raw"] == "***" and enc["base64"] == "***" and enc["hex_upper"] == "***"
        assert enc["in_text"] == "the key is ***, do not share"
        assert enc["basic"].startswith("Basic ") and not leaks(enc["basic"])
        assert r.outputs["echoed"]["auth"] == "Bearer ***"
        assert r.steps["err"].status == "failed" and "***" in r.steps["err"].error.message
        assert r.steps["deny"].status == "failed" and r.steps["deny"].error is not None
        # the two-character secret: a whole value and a whole token are redacted, words are kept
        assert r.outputs["short"] == {
            "whole": "***",
            "upper": "***",
            "header": "Bearer ***",
            "word": "keep these words intact",
        }
        for name, text in _everything(r).items():
            assert not leaks(text), f"the canary leaked into {name}: {leaks(text)}"
            assert SHORT not in text.replace("keep these words intact", ""), name
    for name, text in _everything(stored).items():
        assert not leaks(text), f"the canary leaked into the stored run's {name}"

    assert seen and not leaks(json.dumps(seen, default=str))
    assert hooked, "the URL callback received nothing"
    assert not byte_leaks(b"\n".join(hooked))

    assert not leaks(caplog.text), "the canary leaked into the logs"
    rows = _store_rows(db)
    assert "Bearer ***" in rows and not leaks(rows)
    files = [p for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists()]
    for path in files:
        assert not byte_leaks(path.read_bytes()), f"the canary is in {path.name}: {byte_leaks(path.read_bytes())}"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert not byte_leaks(db.read_bytes())


def test_a_secret_in_every_encoding_is_redacted_from_any_value() -> None:
    value: dict[str, Any] = dict(forms(CANARY))
    value["mixed_case"] = "".join(c.upper() if i % 2 else c.lower() for i, c in enumerate(CANARY))
    value["inside"] = [f"x={form};" for form in forms(CANARY).values()]
    value["sliced"] = [CANARY[1:], CANARY[:-1], CANARY[1:-1], CANARY[2:].upper(), CANARY[:-2]]
    value["joined"] = ["-".join(CANARY), " ".join(CANARY), ", ".join(CANARY)]
    value["listed"] = list(CANARY)
    for offset in range(3):  # base64 of a longer text, at each byte alignment
        value[f"b64_{offset}"] = base64.b64encode(b"u" * offset + b":" + CANARY.encode() + b"!").decode()
    out = json.dumps(redact(value, {"T": CANARY}))
    assert not leaks(out)
    assert CANARY.lower()[2:-2] not in out.lower()
    assert "-".join(CANARY[3:9]) not in out and json.dumps(list(CANARY[:6]))[1:-1] not in out


@pytest.mark.parametrize("secret", ["q", "q7", "q7z"])
def test_short_secrets_are_redacted_without_destroying_unrelated_text(secret: str) -> None:
    value = {"whole": secret, "spaced": f" {secret.upper()} ", "word": f"a{secret}b and quick", "n": 5}
    out = redact(value, {"S": secret})
    assert out["whole"] == "***" and out["spaced"] == "***"
    assert out["word"] == f"a{secret}b and quick"  # inside a word it is not the secret
    token = redact(f"Bearer {secret}", {"S": secret})
    assert token == (f"Bearer {secret}" if len(secret) == 1 else "Bearer ***")


def test_a_number_that_is_the_secret_is_redacted() -> None:
    assert redact({"pin": 4821, "other": 4822}, {"PIN": "4821"}) == {"pin": "***", "other": 4822}


def test_an_error_raised_before_the_run_starts_is_redacted_too() -> None:
    ow = OpenWorkflow(state=False)
    ow.load("name: w\ninputs: {mode: {type: string, enum: [a, b]}}\nsteps: [{id: t, type: transform, expression: x}]\n")
    with pytest.raises(OWFError) as info:
        ow.workflow("w").execute(inputs={"mode": CANARY}, secrets={"TOKEN": CANARY})
    assert "must be one of" in str(info.value)
    assert not leaks(str(info.value) + repr(info.value) + json.dumps(getattr(info.value, "details", {})))
