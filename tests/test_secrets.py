"""The secret canary, pushed through every channel a value can leave the engine by.

conftest.py gives every run of the suite the canary as a secret (and in the environment) and checks
every result for it; here workflows try hard to leak it, and each channel must show `***` instead.
"""

from __future__ import annotations

import json
import logging

import pytest

from owf_magics import ManifestError
from tests.conftest import CANARY, CANARY_NAME, assert_no_canary
from tests.local_http import JSONHandler, serve


def test_every_channel_redacts_the_canary(ow, caplog):
    received = []

    class Echo(JSONHandler):
        def do_POST(self):
            received.append(self.headers.get("Authorization"))
            # a careless service that echoes the credential back
            self.send_json({"auth": self.headers.get("Authorization"), "body": self.read_json()})

    with serve(Echo) as base:
        ow.load(f"""
connectors:
  - name: svc
    kind: http
    actions:
      - name: echo
        handler:
          http: {{url: "{base}/echo", method: POST, headers: {{Authorization: "Bearer ${{secrets.{CANARY_NAME}}}"}}}}
  - name: fn
    kind: sdk
    actions:
      - {{name: echo, handler: {{function: tests.handlers.echo}}}}
      - {{name: fail, handler: {{function: tests.handlers.fail_with_token}}}}
workflows:
  - name: leaky
    runtime: {{environment: [{{name: {CANARY_NAME}}}]}}
    steps:
      - {{id: http, connector: svc, action: echo, input: {{token: "{{{{ env.{CANARY_NAME} }}}}"}}}}
      - {{id: fn, connector: fn, action: echo, input: {{token: "{{{{ env.{CANARY_NAME} }}}}"}}}}
      - {{id: err, connector: fn, action: fail, input: {{token: "{{{{ secrets.{CANARY_NAME} }}}}"}}, continueOnError: true}}
    outputs:
      nested: {{value: "{{{{ steps.fn.output }}}}"}}
""")
        seen: list[dict] = []
        with caplog.at_level(logging.DEBUG):
            r = ow.workflow("leaky").execute(callback=seen.append)

    # the credential reached the service (a trusted place) ...
    assert received == [f"Bearer {CANARY}"]
    # ... and nothing that came back out shows it
    assert r.outputs["nested"] == {"echo": {"token": "***"}}
    assert r.steps["http"].output["auth"] == "Bearer ***"
    assert r.steps["http"].output["body"] == {"token": "***"}
    assert r.steps["err"].status == "failed" and "***" in r.steps["err"].error.message
    assert_no_canary(r)
    assert seen and CANARY not in json.dumps(seen, default=str)  # what the callback saw as it happened
    assert CANARY not in r.trace.to_csv() and CANARY not in r.usage.to_csv()
    assert CANARY not in caplog.text


def test_secrets_are_not_template_visible_outside_trusted_fields(ow):
    """A secret in a plain input field is refused at load (it used to fail only when the step ran)."""
    with pytest.raises(ManifestError) as info:
        ow.load(f"""
connector: {{name: fn, kind: sdk, actions: [{{name: echo, handler: {{function: tests.handlers.echo}}}}]}}
---
name: exposure
steps:
  - {{id: body, connector: fn, action: echo, input: {{text: "{{{{ secrets.{CANARY_NAME} }}}}"}}}}
""")
    [d] = info.value.diagnostics
    assert (d.code, d.line, d.step_id) == ("SECRET_USE", 6, "body")
    assert "secret" in d.message
