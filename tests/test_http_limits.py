"""Bounded HTTP: response size, redirects, URLs whose host values cannot change, the default timeout.

Every server is real, on 127.0.0.1, started by the test; each records what it received.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from owf_magics import OpenWorkflow
from owf_magics.connectors.http_limits import (
    DEFAULT_MAX_REDIRECTS,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_TIMEOUT,
    HttpLimits,
)
from owf_magics.manifest.models import parse_size
from tests.conftest import ROOT
from tests.local_http import JSONHandler, serve


def _recorder() -> tuple[type[BaseHTTPRequestHandler], list[tuple[str, str, dict[str, str]]]]:
    """A server that answers everything with {"ok": true} and records each request."""
    seen: list[tuple[str, str, dict[str, str]]] = []

    class Recorder(JSONHandler):
        def answer(self) -> None:
            seen.append((self.command, self.path, dict(self.headers)))
            self.send_json({"ok": True, "path": self.path})

        do_GET = do_POST = answer

    return Recorder, seen


def _workflow(ow: OpenWorkflow, http: str, *, inputs: str = "{}", step_input: str = "{}") -> Any:
    """Load a connector `api.call` with this `http:` block and a one-step workflow that calls it."""
    ow.load(f"connector: {{name: api, kind: http}}\nactions:\n  - name: call\n    handler:\n      http: {http}\n")
    ow.load(f"name: w\ninputs: {inputs}\nsteps: [{{id: c, connector: api, action: call, input: {step_input}}}]")
    return ow.workflow("w")


# ------------------------------------------------------------------------------------------------
# limits and their defaults


def test_defaults_are_the_documented_ones():
    limits = HttpLimits()
    assert (limits.timeout, limits.max_response_bytes, limits.max_redirects) == (30.0, 10 * 1024 * 1024, 5)
    assert (DEFAULT_TIMEOUT, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_MAX_REDIRECTS) == (30.0, 10485760, 5)
    doc = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    assert "30 s" in doc and "10 MiB" in doc and "5 redirects" in doc


def test_registry_limits_and_action_values():
    ow = OpenWorkflow(state=":memory:", http_limits={"timeout": 2, "max_response_bytes": 100})
    assert ow.http_limits == HttpLimits(timeout=2, max_response_bytes=100)

    class Http:
        timeout = 60.0
        maxResponseBytes = 10**9
        maxRedirects = None

    assert HttpLimits().for_action(Http) == HttpLimits(timeout=60, max_response_bytes=10**9)
    enforced = HttpLimits(enforce=True).for_action(Http)  # a server: actions only lower them
    assert (enforced.timeout, enforced.max_response_bytes, enforced.max_redirects) == (30, 10485760, 5)
    with pytest.raises(ValueError, match="max_bytes"):
        OpenWorkflow(state=":memory:", http_limits={"max_bytes": 1})
    with pytest.raises(ValueError):
        OpenWorkflow(state=":memory:", http_limits={"timeout": 0})


def test_sizes_and_aliases_normalise():
    assert [parse_size(v) for v in ("10MB", "512KiB", "2g", "1.5kb", "77", 5)] == [
        10_000_000,
        524288,
        2_000_000_000,
        1500,
        77,
        5,
    ]
    ow = OpenWorkflow(state=":memory:")
    ow.load(
        "connector: {name: api, kind: http}\nactions:\n  - name: call\n    handler:\n"
        "      http: {url: 'http://127.0.0.1:9/x', max_response_bytes: 1KB, max_redirects: 0}\n"
    )
    http = ow.connector("api").model.actions[0].handler.http
    assert (http.maxResponseBytes, http.maxRedirects) == (1000, 0)
    assert {w.code for w in ow.warnings} == {"ALIAS"}


# ------------------------------------------------------------------------------------------------
# response size


def _sized(size: int, *, declare: bool) -> type[BaseHTTPRequestHandler]:
    class Big(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if declare:
                self.send_header("Content-Length", str(size))
            self.end_headers()
            chunk = b"x" * 65536
            sent = 0
            try:
                while sent < size:
                    self.wfile.write(chunk[: size - sent])
                    sent += len(chunk)
            except OSError:
                pass  # the client hung up at its limit

        def log_message(self, *args: Any) -> None:
            pass

    return Big


@pytest.mark.parametrize("declare", [True, False], ids=["content-length", "streamed"])
def test_a_body_over_the_action_limit_fails_the_step(declare):
    with serve(_sized(5000, declare=declare)) as base:
        ow = OpenWorkflow(state=":memory:")
        wf = _workflow(ow, f"{{url: '{base}/big', method: GET, maxResponseBytes: 4000}}")
        result = wf.execute()
        error = result.steps["c"].error
        assert result.status == "failed" and error.code == "BACKEND_ERROR"
        assert error.details["reason"] == "response_too_large" and error.details["limit"] == 4000
        assert "maxResponseBytes" in error.message
        assert result.steps["c"].output is None
        ok = _workflow(OpenWorkflow(state=":memory:"), f"{{url: '{base}/big', method: GET, maxResponseBytes: 5000}}")
        assert ok.execute().steps["c"].output == "x" * 5000


_RSS_SCRIPT = """
import json, resource, sys, threading, zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
sys.path.insert(0, {root!r})
from owf_magics import OpenWorkflow

class Server(BaseHTTPRequestHandler):
    def do_GET(self):
        size = 100 * 1024 * 1024 if self.path == "/big" else 1000
        self.send_response(200)
        if self.path == "/gzip":  # 1 GB of zeros, compressed on the fly to about 1 MB
            self.send_header("Content-Encoding", "gzip")
            self.end_headers()
            squeeze, zeros = zlib.compressobj(9, zlib.DEFLATED, 31), bytes(1024 * 1024)
            try:
                for _ in range(1024):
                    self.wfile.write(squeeze.compress(zeros))
                self.wfile.write(squeeze.flush())
            except OSError:
                pass
            return
        self.end_headers()
        chunk = b"x" * 65536
        try:
            for start in range(0, size, len(chunk)):  # streamed: the body is never built
                self.wfile.write(chunk[: size - start])
        except OSError:
            pass
    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Server)
threading.Thread(target=server.serve_forever, daemon=True).start()
base = f"http://127.0.0.1:{{server.server_address[1]}}"
ow = OpenWorkflow(state=":memory:")
for path in ("plain", "big", "gzip"):
    ow.load(f"connector: {{{{name: {{path}}, kind: http}}}}\\nactions: [{{{{name: get, handler: "
            f"{{{{http: {{{{url: '{{base}}/{{path}}', method: GET}}}}}}}}}}}}]")
    ow.load(f"name: {{path}}-w\\nsteps: [{{{{id: s, connector: {{path}}, action: get}}}}]")

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

plain = ow.workflow("plain-w").execute()
before = peak()
big = ow.workflow("big-w").execute()
after = peak()
bomb = ow.workflow("gzip-w").execute()
after_bomb = peak()
err, bomb_err = big.steps["s"].error, bomb.steps["s"].error
print(json.dumps({{"plain": plain.status, "status": big.status, "reason": err and err.details.get("reason"),
                  "message": err and err.message, "grew": after - before, "before": before,
                  "bomb": bomb_err and bomb_err.details.get("reason"), "bomb_grew": after_bomb - before}}))
"""


def test_a_100_mb_body_is_cut_off_in_a_fresh_process():
    script = _RSS_SCRIPT.format(root=str(ROOT))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["plain"] == "completed"
    assert report["status"] == "failed" and report["reason"] == "response_too_large", report
    assert "10485760" in report["message"]
    assert report["grew"] < 200 * 1024 * 1024, report  # peak RSS above a plain request's
    # a compressed body is counted as it is decompressed: 1 GB of zeros in about 1 MB of gzip
    assert report["bomb"] == "response_too_large" and report["bomb_grew"] < 200 * 1024 * 1024, report


# ------------------------------------------------------------------------------------------------
# redirects


def _redirector(targets: dict[str, str], status: int = 302) -> tuple[type[BaseHTTPRequestHandler], list[str]]:
    hits: list[str] = []

    class Redirector(JSONHandler):
        def answer(self) -> None:
            hits.append(f"{self.command} {self.path} {self.headers.get('X-Token')}")
            if self.path in targets:
                self.send_response(status)
                self.send_header("Location", targets[self.path])
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.send_json({"landed": self.path, "method": self.command})

        do_GET = do_POST = answer

    return Redirector, hits


def test_redirects_to_file_or_another_host_are_failed_steps():
    Other, other_seen = _recorder()
    with serve(Other) as other:
        port = other.rsplit(":", 1)[1]
        targets = {
            "/file": "file:///etc/passwd",
            "/host": f"http://localhost:{port}/x",
            "/port": f"{other}/x",  # the same host on another port is another server
            "/none": "",
        }
        Handler, hits = _redirector(targets)
        with serve(Handler) as base:
            for path, where in targets.items():
                wf = _workflow(OpenWorkflow(state=":memory:"), f"{{url: '{base}{path}', method: GET}}")
                result = wf.execute()
                error = result.steps["c"].error
                assert result.status == "failed", path
                assert error.code == "BACKEND_ERROR" and error.details["reason"] == "redirect", path
                assert error.details["redirect"] == where and repr(where) in error.message, path
    assert other_seen == []  # never contacted
    assert len(hits) == 4


def test_same_host_redirects_are_followed_within_the_limit():
    Handler, hits = _redirector({"/a": "/b", "/b": "/c?x=1", "/loop": "/loop"})
    with serve(Handler) as base:
        wf = _workflow(OpenWorkflow(state=":memory:"), f"{{url: '{base}/a', method: GET}}")
        assert wf.execute().steps["c"].output == {"landed": "/c?x=1", "method": "GET"}
        hits.clear()
        result = _workflow(OpenWorkflow(state=":memory:"), f"{{url: '{base}/loop', method: GET}}").execute()
        error = result.steps["c"].error
        assert error.details["reason"] == "too_many_redirects" and error.details["limit"] == 5
        assert len(hits) == 6  # the request and 5 redirects, not one more
        hits.clear()
        wf = _workflow(OpenWorkflow(state=":memory:"), f"{{url: '{base}/a', method: GET, maxRedirects: 0}}")
        assert wf.execute().steps["c"].error.details["reason"] == "too_many_redirects"
        assert len(hits) == 1


def test_allowed_domains_let_redirects_change_host_without_the_handlers_headers():
    Other, other_seen = _recorder()
    with serve(Other) as other:
        Handler, hits = _redirector({"/go": f"{other}/landing"}, status=307)
        with serve(Handler) as base:
            http = (
                f"{{url: '{base}/go', method: POST, headers: {{X-Token: '${{secrets.TOKEN}}'}}, "
                "urlValidation: {allowedDomains: ['127.0.0.1']}}"
            )
            wf = _workflow(OpenWorkflow(state=":memory:"), http, step_input="{n: 1}")
            result = wf.execute(secrets={"TOKEN": "tok-xyz"})
            assert result.steps["c"].output == {"ok": True, "path": "/landing"}
    assert hits == ["POST /go tok-xyz"]
    [(method, path, headers)] = other_seen
    assert (method, path) == ("POST", "/landing")  # 307 keeps the method and the body
    assert "X-Token" not in headers and "tok-xyz" not in json.dumps(headers)


def test_see_other_after_post_becomes_get():
    Handler, hits = _redirector({"/post": "/done"}, status=303)
    with serve(Handler) as base:
        wf = _workflow(OpenWorkflow(state=":memory:"), f"{{url: '{base}/post', method: POST}}", step_input="{n: 1}")
        assert wf.execute().steps["c"].output == {"landed": "/done", "method": "GET"}
    assert hits == ["POST /post None", "GET /done None"]


# ------------------------------------------------------------------------------------------------
# URLs: input values never change the scheme, host or port


def test_host_injection_is_refused_before_anything_is_sent():
    Target, seen = _recorder()
    with serve(Target) as target:
        port = target.rsplit(":", 1)[1]
        wf = _workflow(
            OpenWorkflow(state=":memory:"),
            "{url: 'http://example.invalid${input.p}', method: GET}",
            inputs="{p: {type: string}}",
            step_input="{p: '{{ inputs.p }}'}",
        )
        result = wf.execute(inputs={"p": f"@127.0.0.1:{port}/x"})
        error = result.steps["c"].error
        assert result.status == "failed" and error.code == "VALIDATION"
        assert error.details["placeholder"] == "${input.p}" and "refused" in error.message
        time.sleep(0.2)
    assert seen == []  # the server on that port never received anything


def test_the_load_warns_about_a_host_from_an_input_at_its_line():
    ow = OpenWorkflow(state=":memory:")
    text = "connector: {name: api}\nactions:\n  - name: get\n    handler:\n      http:\n        url: %s\n"
    ow.load(text % "'http://example.invalid${input.p}'")
    [warning] = ow.warnings
    assert (warning.code, warning.line, warning.severity) == ("URL_HOST_FROM_INPUT", 6, "warning")
    assert "${input.p}" in warning.message and warning.hint
    for fine in (
        "'http://example.invalid/${input.p}'",
        "'${env.BASE}/x/${input.p}'",
        "'${input.u}'\n        urlValidation: {allowedDomains: [example.com]}",
    ):
        ow.load(text % fine)
        assert ow.warnings == [], fine


def test_input_values_are_encoded_into_the_path_and_query():
    Target, seen = _recorder()
    Other, other_seen = _recorder()
    with serve(Target) as base, serve(Other) as other:
        wf = _workflow(
            OpenWorkflow(state=":memory:"),
            f"{{url: '{base}/repos/${{input.repo}}/items?q=${{input.q}}', method: POST}}",
            inputs="{repo: {type: string}, q: {type: string}}",
            step_input="{repo: '{{ inputs.repo }}', q: '{{ inputs.q }}'}",
        )
        evil = f"@{other.removeprefix('http://')}/../../x"
        result = wf.execute(inputs={"repo": evil, "q": "a&b=c#d"})
        assert result.status == "completed", result.steps["c"].error
    [(_, path, _)] = seen
    assert (
        path == f"/repos/%40{other.removeprefix('http://').replace(':', '%3A')}/%2E%2E/%2E%2E/x/items?q=a%26b%3Dc%23d"
    )
    assert other_seen == []


def test_a_base_url_from_the_environment_keeps_inputs_in_the_path():
    Target, seen = _recorder()
    with serve(Target) as base:
        ow = OpenWorkflow(state=":memory:", environment={"API_BASE": base})
        wf = _workflow(
            ow,
            "{url: '${env.API_BASE}/items/${input.p}', method: POST}",
            inputs="{p: {type: string}}",
            step_input="{p: '{{ inputs.p }}'}",
        )
        assert ow.warnings == []
        result = wf.execute(inputs={"p": "@example.invalid:1/.."})
        assert result.steps["c"].output == {"ok": True, "path": "/items/%40example.invalid%3A1/%2E%2E"}
    assert len(seen) == 1


def test_a_user_provided_url_needs_allowed_domains():
    Target, seen = _recorder()
    with serve(Target) as base:
        http = "{url: '${input.url}', method: POST, urlValidation: {allowedDomains: ['127.0.0.1']}}"
        wf = _workflow(
            OpenWorkflow(state=":memory:"), http, inputs="{url: {type: string}}", step_input="{url: '{{ inputs.url }}'}"
        )
        assert wf.execute(inputs={"url": f"{base}/hook"}).steps["c"].output == {"ok": True, "path": "/hook"}
        # the whole URL is the user's, its query included
        assert wf.execute(inputs={"url": f"{base}/hook?a=1&b=2"}).steps["c"].output == {
            "ok": True,
            "path": "/hook?a=1&b=2",
        }
        refused = wf.execute(inputs={"url": "http://example.invalid/hook"}).steps["c"].error
        assert refused.code == "VALIDATION" and "allowed domains" in refused.message
        open_wf = _workflow(
            OpenWorkflow(state=":memory:"),
            "{url: '${input.url}', method: POST}",
            inputs="{url: {type: string}}",
            step_input="{url: '{{ inputs.url }}'}",
        )
        assert open_wf.execute(inputs={"url": f"{base}/hook"}).steps["c"].error.code == "VALIDATION"
    assert [p for _, p, _ in seen] == ["/hook", "/hook?a=1&b=2"]


# ------------------------------------------------------------------------------------------------
# time


def _slow(kind: str) -> type[BaseHTTPRequestHandler]:
    class Slow(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                if kind == "silent":
                    time.sleep(5)
                self.send_response(200)
                self.send_header("Content-Length", "100")
                self.end_headers()
                for _ in range(50):  # a byte every 0.2 s: never idle long enough for a read timeout
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass

        def log_message(self, *args: Any) -> None:
            pass

    return Slow


@pytest.mark.parametrize("kind", ["silent", "trickle"])
def test_the_default_timeout_bounds_the_whole_request(kind):
    with serve(_slow(kind)) as base:
        ow = OpenWorkflow(state=":memory:", http_limits={"timeout": 1})
        wf = _workflow(ow, f"{{url: '{base}/slow', method: GET}}")  # no timeout: in the manifest
        started = time.monotonic()
        result = wf.execute()
        took = time.monotonic() - started
    error = result.steps["c"].error
    assert result.status == "failed" and error.code == "TIMEOUT" and error.details["timeout"] == 1
    assert took < 4, took
