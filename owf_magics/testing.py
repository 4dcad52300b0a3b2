"""What users and backend authors need to test: a fake backend, the parity corpus, a conformance suite.

``BackendConformance("mybackend").checks()`` gives the seven conformance tests of the spec's
execution-backends.md as plain callables (they raise ``AssertionError``), ready to parametrize
a pytest test. Nothing here imports pytest, LangGraph or pandas at import time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from owf_magics._version import __version__
from owf_magics.runtime.backend import Backend, BackendInfo, ExecutionContext

if TYPE_CHECKING:
    from owf_magics.api import OpenWorkflow
    from owf_magics.runtime.results import RunResult

CORPUS_DIR = Path(__file__).resolve().parent / "parity"
#: Corpus workflows only ever called by others (they need inputs without defaults).
CALLED_ONLY = frozenset({"parity-child"})

__all__ = [
    "CORPUS_DIR",
    "BackendConformance",
    "FakeBackend",
    "assert_same_run",
    "corpus_files",
    "corpus_workflows",
    "execute_agent",
    "load_corpus",
    "run_snapshot",
]


# ------------------------------------------------------------------------------------------------
# handlers the corpus calls (importable as owf_magics.testing.X)

RECORDED: list[dict[str, Any]] = []
_DB: dict[str, list[Any]] = {}


def fail(message: str = "boom") -> dict[str, Any]:
    """Always raises ``RuntimeError(message)``."""
    raise RuntimeError(message)


def echo(input: Any) -> dict[str, Any]:
    """Returns ``{"echo": input}``."""
    return {"echo": input}


def record(input: Any) -> dict[str, Any]:
    """Appends its input to `RECORDED` and returns how many calls there were."""
    RECORDED.append(input)
    return {"recorded": len(RECORDED)}


async def sleep(seconds: float) -> dict[str, float]:
    """Sleeps without blocking the loop (timeouts and cancellation tests)."""
    await asyncio.sleep(seconds)
    return {"slept": seconds}


def db_query(table: str) -> dict[str, Any]:
    """Rows of a small fixed table (the spec's mixed-backend example)."""
    return {"table": table, "rows": [{"id": i, "amount": 10 * i} for i in (1, 2, 3)]}


def db_insert(table: str, row: Any) -> dict[str, Any]:
    """Accepts a row and reports it as stored (no state kept between runs)."""
    return {"table": table, "stored": row, "ok": True}


# ------------------------------------------------------------------------------------------------
# the parity corpus


def corpus_files() -> list[Path]:
    """The corpus files, sorted."""
    return sorted(CORPUS_DIR.glob("*.yaml"))


def load_corpus(ow: OpenWorkflow | None = None) -> OpenWorkflow:
    """Load every corpus file into `ow` (a fresh `OpenWorkflow` by default) and return it."""
    from owf_magics.api import OpenWorkflow

    ow = ow if ow is not None else OpenWorkflow(state=":memory:")
    ow.load_many(corpus_files())
    return ow


def corpus_workflows(ow: OpenWorkflow | None = None) -> list[str]:
    """Names of the corpus workflows a test runs directly."""
    ow = ow if ow is not None else load_corpus()
    return sorted(w.name for w in ow.workflows() if w.name.startswith("parity-") and w.name not in CALLED_ONLY)


def run_snapshot(result: RunResult) -> dict[str, Any]:
    """What must be identical between backends: status, outputs, each step's status, output and
    error code, every trace row's identity and tokens, and the usage rows (run ids read as ``<run>``)."""

    def _plain(value: Any) -> Any:
        return json.loads(json.dumps(value, default=str, sort_keys=True).replace(result.run_id, "<run>"))

    steps = {
        sid: (r.status, _plain(r.output), r.error.code if r.error else None, r.attempts)
        for sid, r in sorted(result.steps.items())
    }
    trace = [
        (
            row["step_id"],
            row["status"],
            row["attempt"],
            row["iteration"],
            row["prompt_tokens"],
            row["completion_tokens"],
            row["total_tokens"],
            row["cost_usd"],
            row["error_code"],
        )
        for row in result.trace_rows
    ]
    usage = [
        (
            u["step_id"],
            u["provider"],
            u["model"],
            u["prompt_tokens"],
            u["completion_tokens"],
            u["estimated"],
            u["cost_usd"],
        )
        for u in result.usage_rows
    ]
    return {
        "status": result.status,
        "outputs": _plain(result.outputs),
        "error": result.error.code if result.error else None,
        "steps": steps,
        "trace": trace,
        "usage": usage,
        "total_tokens": result.total_tokens,
    }


def assert_same_run(expected: RunResult, actual: RunResult, *, label: str = "") -> None:
    """Raise ``AssertionError`` naming the first difference between two runs' snapshots."""
    a, b = run_snapshot(expected), run_snapshot(actual)
    for key in a:
        if a[key] != b[key]:
            raise AssertionError(f"{label}: '{key}' differs\n  expected: {a[key]!r}\n  actual:   {b[key]!r}")


# ------------------------------------------------------------------------------------------------
# a fake backend for users' tests


@dataclass
class FakeBackend(Backend):
    """A backend that answers from a table, for testing workflows without the real thing.

    Args:
        outputs: Output by agent name or ``connector.action``; a callable gets ``(input, context)``.
            Anything not listed answers ``{"fake": True, "input": input}``.
        usage: Token usage reported per agent name: ``{"prompt_tokens": 3, "completion_tokens": 2}``.
        error: Raised by every call when set (e.g. ``BackendError("down")``).
        name: The name `get_info` reports.
        version: The adapter version `get_info` reports.

    Attributes:
        calls: Every call as ``(kind, name, input, context)``.

    Example:
        >>> fake = FakeBackend({"summarizer": "a summary"})
        >>> ow.register_backend("fake", fake)   # doctest: +SKIP
        >>> ow.workflow("w").execute(prefer_backend="fake").outputs   # doctest: +SKIP
    """

    outputs: Mapping[str, Any] = field(default_factory=dict)
    usage: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    error: Exception | None = None
    name: str = "fake"
    version: str = "0.0.1"
    calls: list[tuple[str, str, Any, ExecutionContext]] = field(default_factory=list)

    def get_info(self) -> BackendInfo:
        return BackendInfo(self.name, self.version, True, "a fake backend for tests", "python", ("action", "agent"), {})

    def invoke(self, manifest: dict[str, Any], input: dict[str, Any], context: ExecutionContext) -> dict[str, Any]:
        kind = str(manifest.get("type"))
        name = str(manifest.get("name"))
        if kind == "connector":
            name = f"{name}.{context.metadata.get('action')}"
        self.calls.append((kind, name, input, context))
        if self.error is not None:
            raise self.error
        answer = self.outputs.get(name, {"fake": True, "input": input})
        if callable(answer):
            answer = answer(input, context)
        result: dict[str, Any] = {"status": "success", "output": answer}
        if kind == "agent" and name in self.usage:
            u = self.usage[name]
            model = manifest.get("model") or {}
            result["usage"] = [
                {
                    "provider": model.get("provider"),
                    "model": model.get("id") or model.get("provider"),
                    "prompt_tokens": int(u.get("prompt_tokens", 0)),
                    "completion_tokens": int(u.get("completion_tokens", 0)),
                    "estimated": False,
                }
            ]
        return result


# ------------------------------------------------------------------------------------------------
# the conformance suite

_TELEMETRY = """
connectors:
  - name: conformance
    namespace: owf
    version: 1.0.0
    kind: sdk
    actions:
      - {name: echo, input: {type: object}, handler: {function: owf_magics.testing.echo}}
      - {name: fail, input: {type: object, properties: {message: {type: string}}}, handler: {function: owf_magics.testing.fail}}
      - {name: sleep, input: {type: object, properties: {seconds: {type: number}}}, handler: {function: owf_magics.testing.sleep}}
      - name: record
        description: Record the arguments
        input: {type: object, properties: {x: {type: integer}}, required: [x]}
        handler: {function: owf_magics.testing.record}
  - name: web-search
    namespace: owf
    version: 1.0.0
    kind: sdk
    actions:
      - name: search
        description: Search the web
        input: {type: object, properties: {query: {type: string}}, required: [query]}
        handler: {function: owf_magics.testing.record}
  - name: prefixed
    namespace: owf
    version: 1.0.0
    kind: sdk
    capabilities: {frameworks: {langchain: {tool_prefix: "search_"}}}
    actions:
      - {name: find, input: {type: object}, handler: {function: owf_magics.testing.record}}
agents:
  - name: counter
    namespace: owf
    version: 1.0.0
    model:
      provider: scripted
      responses:
        - content: counted
          usage: {prompt_tokens: 150, completion_tokens: 80}
  - name: tool-user
    namespace: owf
    version: 1.0.0
    toolset:
      - connector:owf/web-search@1.0.0
      - connector:owf/prefixed@1.0.0
      - {connector: "connector:owf/conformance@1.0.0", actions: [record], toolPrefix: rec}
    model:
      provider: scripted
      responses:
        - tool_calls:
            - {name: web_search_search, args: {query: openworkflow}}
            - {name: search_find, args: {q: 1}}
            - {name: rec_record, args: {x: 7}}
          usage: {prompt_tokens: 10, completion_tokens: 5}
        - content: done
          usage: {prompt_tokens: 20, completion_tokens: 2}
"""


@dataclass
class BackendConformance:
    """The seven conformance tests of execution-backends.md, for one backend.

    Args:
        backend: The name the backend is registered (or installed) under.
        factory: Builds the backend instance to register under that name in each test's fresh
            registry; omit it for built-in and entry-point backends.
        corpus: Corpus workflow names for the parity test (default: all of them).

    Example (pytest)::

        from owf_magics.testing import BackendConformance

        suite = BackendConformance("mybackend", factory=MyBackend)

        @pytest.mark.parametrize("check", suite.checks(), ids=lambda c: c.__name__)
        def test_conformance(check):
            check()
    """

    backend: str
    factory: Callable[[], Backend] | None = None
    corpus: Iterable[str] | None = None

    def registry(self) -> OpenWorkflow:
        """A fresh registry with the corpus and the conformance manifests loaded."""
        ow = load_corpus()
        ow.load(_TELEMETRY, name="<conformance>")
        if self.factory is not None:
            ow.register_backend(self.backend, self.factory())
        return ow

    def checks(self) -> list[Callable[[], None]]:
        """The seven checks, in the spec's order."""
        return [
            self.check_resolution_priority,
            self.check_output_parity,
            self.check_tool_translation,
            self.check_timeout_and_cancellation,
            self.check_telemetry_metadata,
            self.check_error_codes,
            self.check_version_warnings,
        ]

    def run_all(self) -> dict[str, str | None]:
        """Run every check; returns ``{check name: None or the failure message}``."""
        out: dict[str, str | None] = {}
        for check in self.checks():
            try:
                check()
                out[check.__name__] = None
            except AssertionError as exc:
                out[check.__name__] = str(exc)
        return out

    # 1 -----------------------------------------------------------------------------------------

    def check_resolution_priority(self) -> None:
        """Backend sources in order: step > agent > workflow > prefer (prefer_backend) > default (native)."""
        ow = self.registry()
        b = self.backend
        other = "native" if ow.backend_registry.canonical(b) != "native" else "langchain"
        ow.load(f"""
agents:
  - {{name: on-b, namespace: res, version: 1.0.0, model: {{provider: echo}}, execution: {{backend: {b}, runtime: python}}}}
  - {{name: on-other, namespace: res, version: 1.0.0, model: {{provider: echo}}, execution: {{backend: {other}, runtime: python}}}}
  - {{name: plain, namespace: res, version: 1.0.0, model: {{provider: echo}}}}
workflows:
  - name: resolution
    steps:
      - {{id: step_wins, type: agent, agent: "agent:res/on-other@1.0.0", execution: {{backend: {b}, runtime: python}}, input: x}}
      - {{id: agent_default, type: agent, agent: "agent:res/on-b@1.0.0", input: y}}
      - {{id: global_default, type: action, connector: "connector:owf/conformance@1.0.0", action: echo, input: {{v: 1}}}}
      - {{id: plain_agent, type: agent, agent: "agent:res/plain@1.0.0", input: z}}
""")
        wf = ow.workflow("resolution")
        canonical = ow.backend_registry.canonical(b)
        plan = wf.plan()
        got = {sid: (plan[sid].backend, plan[sid].source) for sid in plan}
        want = {
            "step_wins": (canonical, "step"),
            "agent_default": (canonical, "agent"),
            "global_default": ("native", "default"),
            "plain_agent": ("native", "default"),
        }
        _expect(got == want, f"resolution without prefer_backend: {got} != {want}")
        preferred = wf.plan(prefer_backend=b)
        _expect(
            (preferred["global_default"].backend, preferred["global_default"].source) == (canonical, "prefer"),
            "prefer_backend must apply to steps that name no backend",
        )
        _expect(
            preferred["agent_default"].source == "agent",
            "prefer_backend must not override an agent's backend",
        )
        result = wf.execute()
        _expect(result.status == "completed", f"the resolution workflow failed: {result.error}")
        rows = {r["step_id"]: r["backend"] for r in result.trace_rows}
        _expect(rows == {k: v[0] for k, v in want.items()}, f"trace backends {rows} differ from the plan")

    # 2 -----------------------------------------------------------------------------------------

    def check_output_parity(self) -> None:
        """Every corpus workflow gives identical outputs, statuses and token totals on native and here."""
        ow = self.registry()
        names = list(self.corpus) if self.corpus is not None else corpus_workflows(ow)
        _expect(bool(names), "the parity corpus is empty")
        for name in names:
            wf = ow.workflow(name)
            native = wf.execute(prefer_backend="native")
            other = wf.execute(prefer_backend=self.backend)
            assert_same_run(native, other, label=f"{name} on {self.backend}")

    # 3 -----------------------------------------------------------------------------------------

    def check_tool_translation(self) -> None:
        """Toolset connectors become tools named ``<toolPrefix or connector>_<action>`` (dashes become
        underscores, a langchain ``tool_prefix`` capability applies), with the action's input schema."""
        ow = self.registry()
        ow.load(f"""
name: tools
steps:
  - {{id: use, type: agent, agent: "agent:owf/tool-user@1.0.0", input: go, execution: {{backend: {self.backend}, runtime: python}}}}
""")
        RECORDED.clear()
        result = ow.workflow("tools").execute()
        _expect(result.status == "completed", f"the tool-calling agent failed: {result.error}")
        _expect(result.steps["use"].output == "done", f"unexpected answer {result.steps['use'].output!r}")
        _expect(
            RECORDED == [{"query": "openworkflow"}, {"q": 1}, {"x": 7}],
            f"tools web_search_search, search_find and rec_record must call their actions; calls: {RECORDED}",
        )
        RECORDED.clear()
        ow.load(f"""
agents:
  - name: bad-args
    namespace: owf
    version: 1.0.0
    toolset: [{{connector: "connector:owf/conformance@1.0.0", actions: [record], toolPrefix: rec}}]
    model:
      provider: scripted
      responses:
        - tool_calls: [{{name: rec_record, args: {{x: "not an integer"}}}}]
        - content: recovered
workflows:
  - name: bad-tool-args
    steps: [{{id: use, type: agent, agent: "agent:owf/bad-args@1.0.0", input: go, execution: {{backend: {self.backend}, runtime: python}}}}]
""")
        result = ow.workflow("bad-tool-args").execute()
        _expect(RECORDED == [], "a tool call that breaks the action's input schema must not reach the handler")
        _expect(result.steps["use"].output == "recovered", "the schema error must go back to the model")

    # 4 -----------------------------------------------------------------------------------------

    def check_timeout_and_cancellation(self) -> None:
        """A step's timeout fails it with TIMEOUT; canceling a run marks its running step canceled."""
        ow = self.registry()
        ow.load(f"""
name: slow
steps:
  - id: nap
    type: action
    connector: "connector:owf/conformance@1.0.0"
    action: sleep
    input: {{seconds: 30}}
    timeout: 0.2
    execution: {{backend: {self.backend}, runtime: python}}
""")
        result = ow.workflow("slow").execute()
        err = result.steps["nap"].error
        _expect(err is not None and err.code == "TIMEOUT", f"expected TIMEOUT, got {err}")

        async def cancel() -> RunResult:
            task = asyncio.ensure_future(ow.workflow("slow").aexecute())
            await asyncio.sleep(0.05)
            task.cancel()
            return await task

        canceled = asyncio.run(cancel())
        _expect(canceled.status == "canceled", f"expected a canceled run, got {canceled.status}")
        _expect(canceled.steps["nap"].status == "canceled", "the running step must be marked canceled")

    # 5 -----------------------------------------------------------------------------------------

    def check_telemetry_metadata(self) -> None:
        """Every ``step.execution.completed`` event names the backend, its adapter version, the
        duration and, for model steps, the exact token usage; trace rows name the backend."""
        ow = self.registry()
        b = self.backend
        ow.load(f"""
name: telemetry
steps:
  - {{id: act, type: action, connector: "connector:owf/conformance@1.0.0", action: echo, input: {{v: 1}}, execution: {{backend: {b}, runtime: python}}}}
  - {{id: think, type: agent, agent: "agent:owf/counter@1.0.0", input: go, execution: {{backend: {b}, runtime: python}}}}
  - {{id: local, type: transform, expression: "{{{{ steps.think.output }}}}", execution: {{backend: native}}}}
""")
        result = ow.workflow("telemetry").execute()
        _expect(result.status == "completed", f"the telemetry workflow failed: {result.error}")
        info = ow.backend_registry.info(b)
        canonical = ow.backend_registry.canonical(b)
        events = {e["step_id"]: e for e in result.events if e["type"] == "step.execution.completed"}
        for sid in ("act", "think"):
            ex = events[sid]["execution"]
            _expect(ex["backend"] == canonical, f"event of '{sid}' names backend {ex['backend']!r}")
            _expect(ex["adapter_version"] == info.version, f"event of '{sid}' has adapter {ex['adapter_version']!r}")
            _expect(isinstance(ex["duration_ms"], int | float), f"event of '{sid}' lacks duration_ms")
            _expect({"event_id", "timestamp", "result"} <= set(events[sid]), f"event of '{sid}' lacks fields")
        _expect(
            events["think"]["execution"].get("token_usage")
            == {"prompt_tokens": 150, "completion_tokens": 80, "total_tokens": 230},
            f"token usage of the model step: {events['think']['execution'].get('token_usage')}",
        )
        _expect(events["local"]["execution"]["backend"] == "native", "the native step must say native")
        rows = {r["step_id"]: r["backend"] for r in result.trace_rows}
        _expect(rows == {"act": canonical, "think": canonical, "local": "native"}, f"trace backends: {rows}")

    # 6 -----------------------------------------------------------------------------------------

    def check_error_codes(self) -> None:
        """A failing handler gives BACKEND_ERROR; a backend that is not installed gives UNAVAILABLE
        with a suggestion, both as ``{status, code, message, details}``."""
        ow = self.registry()
        b = self.backend
        ow.load(f"""
name: failing
steps:
  - {{id: f, type: action, connector: "connector:owf/conformance@1.0.0", action: fail, input: {{message: kaput}}, execution: {{backend: {b}, runtime: python}}}}
""")
        result = ow.workflow("failing").execute()
        err = result.steps["f"].error
        if err is None or err.code != "BACKEND_ERROR":
            raise AssertionError(f"expected BACKEND_ERROR, got {err}")
        _expect("kaput" in err.message, f"the message must carry the original error: {err.message!r}")
        from owf_magics.errors import UnavailableError

        try:
            ow.workflow("failing").plan(prefer_backend=f"{b}-not-installed-x")
        except UnavailableError as exc:
            body = exc.to_dict()
            _expect(body["status"] == "error" and body["code"] == "UNAVAILABLE", f"unexpected {body}")
            _expect(bool(body["details"].get("suggestion")), "UNAVAILABLE must carry a suggestion")
        else:
            raise AssertionError("an unknown backend name must raise UNAVAILABLE")

    # 7 -----------------------------------------------------------------------------------------

    def check_version_warnings(self) -> None:
        """A compatibility range the installed framework misses gives a VERSION_MISMATCH warning naming
        the range and the version found; a satisfied range gives none."""
        from owf_magics.manifest.refs import installed_version

        ow = self.registry()
        info = ow.backend_registry.info(self.backend)
        frameworks = dict(info.frameworks) or {"owf-magics": __version__}
        name, found = next(iter(frameworks.items()))
        found = installed_version(name) or found
        ow.load(f"""
agents:
  - name: pinned
    namespace: ver
    version: 1.0.0
    model: {{provider: echo}}
    execution: {{backend: {self.backend}, runtime: python, compatibility: {{{name}: "<0.0.1"}}}}
  - name: fine
    namespace: ver
    version: 1.0.0
    model: {{provider: echo}}
    execution: {{backend: {self.backend}, runtime: python, compatibility: {{{name}: ">=0.0.1"}}}}
""")
        warnings = [w for w in ow.warnings if w.code == "VERSION_MISMATCH"]
        _expect(len(warnings) == 1, f"expected one VERSION_MISMATCH warning, got {[w.message for w in warnings]}")
        _expect("<0.0.1" in warnings[0].message and found in warnings[0].message, warnings[0].message)


def execute_agent(
    manifest: Any,
    *,
    backend: str | None = None,
    input: Any = None,
    secrets: Mapping[str, str] | None = None,
    ow: OpenWorkflow | None = None,
) -> Any:
    """Run one agent manifest alone on a backend (the spec's conformance helper); an `AgentResult`.

    Args:
        manifest: The agent as a dict, or YAML/JSON text (with the connectors it uses, as more
            documents), or a path.
        backend: ``native``, ``langchain``... (default: the agent's own choice).
        input: What the agent receives.
        ow: The registry to load it into (default: a fresh one without a run store on disk).
    """
    from owf_magics.api import OpenWorkflow

    ow = ow or OpenWorkflow(state=":memory:")
    source = json.dumps(manifest) if isinstance(manifest, Mapping) else manifest
    items = ow.load(source)
    agents = [i for i in items if i.kind == "agent"]
    if len(agents) != 1:
        raise AssertionError(f"execute_agent needs exactly one agent in the manifest, found {len(agents)}")
    return ow.load_agent(agents[0].ref).execute({} if input is None else input, backend=backend, secrets=secrets)


def _expect(ok: bool, message: str) -> None:
    if not ok:
        raise AssertionError(message)
