"""One agent on its own: `OpenWorkflow.load_agent(ref)` and the `AgentResult` of running it.

An agent runs as a one-step workflow on the engine (built once per backend, never registered in
the catalog), so its trace, usage, store, callbacks, events and spans are exactly a run's. A
session keeps the conversation (each exchange's user message and answer) in the run store under
its id; the next execution with that session sends it again before the new message.
"""

from __future__ import annotations

import json
import queue
import threading
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from owf_magics.agents.events import MESSAGE_DELTA, TOOL_CALLED, TOOL_COMPLETED, TURN_COMPLETED
from owf_magics.agents.history import using
from owf_magics.agents.loop import system_prompt
from owf_magics.errors import OWFError
from owf_magics.manifest.catalog import Loaded
from owf_magics.manifest.models import Agent as AgentModel
from owf_magics.manifest.render import redact
from owf_magics.runs.sessions import MemorySessions

if TYPE_CHECKING:
    import pandas as pd

    from owf_magics.api.workflow import Workflow
    from owf_magics.runtime.results import RunResult, StepError

STEP_ID = "agent"


class AgentResult(Mapping[str, Any]):
    """What one agent execution produced.

    A mapping: ``res["output"]`` is the final answer, and when the answer is an object (a
    structured output) its fields are keys too. ``.messages`` is the whole conversation (system
    prompt, session history, the user message, tool calls and their results, the answer);
    ``.trace``, ``.usage`` and ``.events`` are the run's (``.run`` is its `RunResult`).
    """

    def __init__(self, run: RunResult, agent: AgentModel, user: Any, earlier: list[dict[str, Any]]) -> None:
        self.run = run
        self.agent = agent
        step = run.steps.get(STEP_ID)
        self.status: str = run.status
        self.output: Any = step.output if step is not None else None
        self.error: StepError | None = (step.error if step is not None else None) or run.error
        self.session: str | None = None
        self._user = user
        self._earlier = earlier
        self._messages: list[dict[str, Any]] | None = None

    # -- mapping -------------------------------------------------------------------------------

    def _fields(self) -> dict[str, Any]:
        fields = dict(self.output) if isinstance(self.output, Mapping) else {}
        fields["output"] = self.output
        return fields

    def __getitem__(self, key: str) -> Any:
        return self._fields()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields())

    def __len__(self) -> int:
        return len(self._fields())

    # -- the run's views -----------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def trace(self) -> pd.DataFrame:
        return self.run.trace

    @property
    def usage(self) -> pd.DataFrame:
        return self.run.usage

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.run.events

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The conversation, rebuilt from the run's agent events (the same on every backend)."""
        if self._messages is None:
            self._messages = conversation(self.agent, self._earlier, self._user, self.events, self.output)
        return self._messages

    def __repr__(self) -> str:
        return f"<AgentResult {self.agent.name!r} {self.status}: {str(self.output)[:60]!r}>"


def conversation(
    agent: AgentModel, earlier: list[dict[str, Any]], user: Any, events: list[dict[str, Any]], output: Any
) -> list[dict[str, Any]]:
    """System prompt, earlier messages, the user message, each turn's tool calls and results, the answer."""
    messages: list[dict[str, Any]] = []
    system = system_prompt(agent)
    if system:
        messages.append({"role": "system", "content": system})
    messages.extend(earlier)
    messages.append({"role": "user", "content": user if isinstance(user, str) else json.dumps(user, default=str)})
    for event in events:
        kind = event.get("type")
        if kind == TURN_COMPLETED and event.get("tool_calls"):
            messages.append({"role": "assistant", "content": None, "tool_calls": []})
        elif kind == TOOL_CALLED:
            call = {"name": event.get("tool"), "args": event.get("arguments") or {}}
            if not messages or messages[-1].get("role") != "assistant" or messages[-1].get("content") is not None:
                messages.append({"role": "assistant", "content": None, "tool_calls": []})
            holder = next(m for m in reversed(messages) if m.get("role") == "assistant")
            holder.setdefault("tool_calls", []).append(call)
        elif kind == TOOL_COMPLETED:
            messages.append({"role": "tool", "name": event.get("tool"), "content": event.get("result")})
    if output is not None:
        messages.append({"role": "assistant", "content": output})
    return messages


class Agent:
    """A loaded agent, runnable on its own (`OpenWorkflow.load_agent`)."""

    def __init__(self, ow: Any, loaded: Loaded[AgentModel]) -> None:
        self.ow = ow
        self.loaded = loaded
        self._workflows: dict[str | None, Workflow] = {}

    @property
    def name(self) -> str:
        return self.loaded.name

    @property
    def ref(self) -> str:
        return f"agent:{self.loaded.namespace}/{self.loaded.name}@{self.loaded.version}"

    @property
    def manifest(self) -> AgentModel:
        return self.loaded.model

    def workflow(self, backend: str | None = None) -> Workflow:
        """The one-step workflow this agent runs as (on `backend`, or the agent's own choice)."""
        hit = self._workflows.get(backend)
        if hit is None:
            hit = self._workflows[backend] = one_step_workflow(self.ow, self.ref, self.loaded.version, backend)
        return hit

    # -- running -------------------------------------------------------------------------------

    def execute(
        self,
        input: Any,
        *,
        backend: str | None = None,
        secrets: Mapping[str, str] | None = None,
        session: str | None = None,
        callback: Any = None,
    ) -> AgentResult:
        """Run the agent once and wait for its answer (also inside a running event loop).

        Args:
            input: What the agent receives: text, or an object its prompt reads.
            backend: ``native``, ``langchain``... (default: the agent's ``execution.backend``, else native).
            secrets: Values for ``{{ secrets.NAME }}`` in the agent's connectors (redacted everywhere).
            session: A conversation id: earlier exchanges of this session (kept in the run store)
                are sent before this message, and this exchange is added to them.
            callback: As for `Workflow.execute`: every event as it happens, agent events included.
        """
        wf, earlier = self._prepare(backend, session)
        with using(earlier, session):
            run = wf.execute({"input": input}, secrets=secrets, callback=callback)
        return self._finish(run, input, earlier, session, secrets)

    async def aexecute(
        self,
        input: Any,
        *,
        backend: str | None = None,
        secrets: Mapping[str, str] | None = None,
        session: str | None = None,
        callback: Any = None,
    ) -> AgentResult:
        """Async form of `execute`."""
        wf, earlier = self._prepare(backend, session)
        with using(earlier, session):
            run = await wf.aexecute({"input": input}, secrets=secrets, callback=callback)
        return self._finish(run, input, earlier, session, secrets)

    def stream(
        self,
        input: Any,
        *,
        backend: str | None = None,
        secrets: Mapping[str, str] | None = None,
        session: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Chunks as the agent runs: ``{"delta": text, "event": ...}`` for each piece of text the
        model streams (``providerConfig.streaming: true``), then ``{"delta": "", "done": True,
        "output": ..., "result": AgentResult}``."""
        chunks: queue.Queue[dict[str, Any]] = queue.Queue()
        box: dict[str, Any] = {}

        def on_event(event: dict[str, Any]) -> None:
            if event.get("type") == MESSAGE_DELTA:
                chunks.put({"delta": event.get("delta", ""), "event": event})

        def work() -> None:
            try:
                box["result"] = self.execute(
                    input, backend=backend, secrets=secrets, session=session, callback=on_event
                )
            except BaseException as exc:  # re-raised in the caller's thread
                box["error"] = exc
            finally:
                chunks.put({"done": True})

        thread = threading.Thread(target=work, name="owf-agent-stream", daemon=True)
        thread.start()
        while True:
            chunk = chunks.get()
            if chunk.get("done"):
                break
            yield chunk
        thread.join()
        if "error" in box:
            raise box["error"]
        result: AgentResult = box["result"]
        yield {"delta": "", "done": True, "output": result.output, "result": result}

    async def astream(self, input: Any, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        """Async form of `stream` (the agent runs on a worker thread; chunks arrive in order)."""
        import asyncio

        it = self.stream(input, **kwargs)
        end = object()
        while True:
            chunk = await asyncio.to_thread(next, it, end)
            if chunk is end:
                return
            yield chunk  # type: ignore[misc]

    # -- sessions ------------------------------------------------------------------------------

    def history(self, session: str) -> list[dict[str, Any]]:
        """A session's messages with this agent, oldest first."""
        return list(sessions_of(self.ow).get_messages(session, agent=self.name))

    def _prepare(self, backend: str | None, session: str | None) -> tuple[Workflow, list[dict[str, Any]]]:
        return self.workflow(backend), self.history(session) if session else []

    def _finish(
        self,
        run: RunResult,
        input: Any,
        earlier: list[dict[str, Any]],
        session: str | None,
        secrets: Mapping[str, str] | None,
    ) -> AgentResult:
        result = AgentResult(run, self.manifest, input, earlier)
        result.session = session
        if session and result.status == "completed":
            text = input if isinstance(input, str) else json.dumps(input, default=str, sort_keys=True)
            answer = result.output if isinstance(result.output, str) else json.dumps(result.output, default=str)
            exchange = [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]
            if secrets:
                exchange = redact(exchange, dict(secrets))
            sessions_of(self.ow).append_messages(session, exchange, agent=self.name, run_id=run.run_id)
        return result

    def __repr__(self) -> str:
        return f"<Agent {self.ref}>"


_MEMORY: weakref.WeakKeyDictionary[Any, MemorySessions] = weakref.WeakKeyDictionary()


def sessions_of(ow: Any) -> Any:
    """Where `ow` keeps sessions: its run store, or (without one) memory for the registry's life."""
    store = ow.store
    if store is not None and hasattr(store, "append_messages"):
        return store
    found = _MEMORY.get(ow)
    if found is None:
        found = _MEMORY[ow] = MemorySessions()
    return found


def one_step_workflow(ow: Any, ref: str, version: str, backend: str | None) -> Workflow:
    """A workflow running `ref` once on its ``inputs.input``, validated against `ow`'s catalog but
    not registered in it (``ow.workflows()`` does not list it)."""
    from owf_magics.api.workflow import Workflow

    step: dict[str, Any] = {"id": STEP_ID, "type": "agent", "agent": ref, "input": "{{ inputs.input }}"}
    if backend:
        step["execution"] = {"backend": backend} if backend == "native" else {"backend": backend, "runtime": "python"}
    doc = {
        "type": "workflow",
        "name": f"agent-{ref.rsplit('/', maxsplit=1)[-1].split('@', maxsplit=1)[0]}",
        "version": version,
        "inputs": {"input": {"required": True}},
        "steps": [step],
        "outputs": {"output": {"value": "{{ steps.agent.output }}"}},
    }
    items = ow.load_detached(json.dumps(doc), name=f"<agent {ref}>")
    workflows = [i for i in items if i.kind == "workflow"]
    if len(workflows) != 1:  # pragma: no cover - the document above has exactly one
        raise OWFError(f"could not build the workflow for {ref}", code="INTERNAL_ERROR")
    return Workflow(ow, workflows[0])


def load_agent(ow: Any, ref_or_name: str) -> Agent:
    """The loaded agent named by a reference (``agent:ns/name@range``) or by its name."""
    text = ref_or_name if ref_or_name.startswith("agent:") else None
    if text is None:
        found = [a for a in ow.agents() if a.name == ref_or_name]
        if not found:
            known = sorted({a.name for a in ow.agents()})
            raise OWFError(
                f"agent '{ref_or_name}' is not loaded",
                code="VALIDATION",
                details={"known": known, "suggestion": "load its manifest first (ow.load(path))"},
            )
        found.sort(key=lambda a: _version_key(a.version))
        return Agent(ow, found[-1])
    return Agent(ow, ow.agent(text))


def _version_key(version: str) -> tuple[int, ...]:
    parts = []
    for p in version.split(".")[:3]:
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)
