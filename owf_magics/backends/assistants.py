"""The ``assistants`` backend: agents on the OpenAI Agents SDK (``openai-agents``).

Agent steps run with ``agents.Runner`` on an ``OpenAIChatCompletionsModel`` (so any server that
speaks chat completions works, ``providerConfig.base_url``), with toolset connectors as SDK
``FunctionTool``s and the SDK's tracing off. Action steps run the native handler. The SDK is
imported only when this backend is first used.
"""

from __future__ import annotations

import json
import os
from typing import Any

from owf_magics._version import __version__
from owf_magics.agents import events
from owf_magics.agents.loop import agent_tools, system_prompt
from owf_magics.backends.assistants_events import run_hooks
from owf_magics.backends.langchain_parts import (
    AgentOptions,
    check_output,
    native_error,
    no_confirmations,
    run_prices,
    run_sync,
    standalone_action,
)
from owf_magics.errors import BackendError, OWFError, UnavailableError
from owf_magics.runtime.backend import Backend, BackendInfo, ExecutionContext

ADAPTER_VERSION = __version__


def framework_versions() -> dict[str, str]:
    from importlib import metadata

    out: dict[str, str] = {}
    for dist in ("openai-agents", "openai"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


class AssistantsBackend(Backend):
    """OpenAI Agents SDK agents behind the spec's backend contract."""

    name = "assistants"

    def get_info(self) -> BackendInfo:
        return BackendInfo(
            name="assistants",
            version=ADAPTER_VERSION,
            installed=True,
            description="OpenAI Agents SDK adapter",
            runtime="python",
            capabilities=("action", "agent"),
            frameworks=framework_versions(),
        )

    def invoke(self, manifest: dict[str, Any], input: dict[str, Any], context: ExecutionContext) -> dict[str, Any]:
        result: dict[str, Any] = run_sync(self.ainvoke(manifest, input, context))
        return result

    async def ainvoke(
        self, manifest: dict[str, Any], input: dict[str, Any], context: ExecutionContext
    ) -> dict[str, Any]:
        kind = manifest.get("type")
        if kind == "connector":
            native = context.metadata.get("native")
            if native is None:  # called outside the executor: function handlers only
                from owf_magics.manifest.models import Connector

                action = str(context.metadata.get("action") or "")
                data = context.metadata.get("raw_input", input)
                native = standalone_action(Connector.model_validate(manifest), action, data, context)
            try:
                return {"status": "success", "output": await native()}
            except OWFError:
                raise
            except Exception as exc:
                raise native_error(exc) from exc
        if kind != "agent":
            raise BackendError(f"the assistants backend cannot invoke a manifest of type {kind!r}")
        try:
            return await self._agent(manifest, input, context)
        except OWFError:
            raise
        except Exception as exc:
            raise BackendError(
                f"OpenAI Agents SDK execution failed: {type(exc).__name__}: {exc}",
                details={"backend": "assistants", "original_error": f"{type(exc).__name__}: {exc}"},
            ) from exc

    async def _agent(
        self, manifest: dict[str, Any], input: dict[str, Any], context: ExecutionContext
    ) -> dict[str, Any]:
        from agents import Agent as SDKAgent
        from agents import (
            FunctionTool,
            MaxTurnsExceeded,
            ModelSettings,
            OpenAIChatCompletionsModel,
            RunConfig,
            Runner,
        )
        from openai import AsyncOpenAI

        from owf_magics.agents.providers import Usage, cost_of
        from owf_magics.manifest.models import Agent

        agent = Agent.model_validate(manifest)
        no_confirmations(agent, "assistants")
        spec = agent.model
        if spec.provider != "openai":
            raise UnavailableError(
                f"the assistants backend runs OpenAI models, not provider '{spec.provider}'",
                details={"backend": "assistants", "suggestion": "use provider: openai, or another backend"},
            )
        options = AgentOptions.from_config(agent.execution.config if agent.execution else {})
        config = dict(spec.providerConfig)
        key = config.get("api_key") or os.environ.get("OPENAI_API_KEY")
        if not key:
            raise UnavailableError(
                "model provider 'openai' needs an API key",
                details={"provider": "openai", "suggestion": "set OPENAI_API_KEY, or providerConfig.api_key"},
            )
        client = AsyncOpenAI(api_key=key, base_url=config.get("base_url"), max_retries=0)
        registry = context.metadata.get("registry")
        caller = context.metadata.get("call_action")
        tools: list[Any] = []
        if agent.toolset:
            if registry is None or caller is None:
                raise UnavailableError(
                    "the agent's toolset needs a workflow run (its registry and action runner)",
                    details={"backend": "assistants"},
                )
            for tool in agent_tools(registry, agent).values():

                async def call(_ctx: Any, args: str, _tool: Any = tool) -> str:
                    arguments = json.loads(args or "{}")
                    events.emit(events.TOOL_CALLED, agent=agent.name, tool=_tool.name, arguments=arguments)
                    try:
                        result = await caller(_tool.connector, _tool.action, arguments)
                    except OWFError as exc:
                        result = {"error": exc.message, "code": exc.code}
                    events.emit(events.TOOL_COMPLETED, agent=agent.name, tool=_tool.name, result=result)
                    return json.dumps(result, default=str)

                tools.append(
                    FunctionTool(
                        name=tool.name,
                        description=tool.description or f"The '{tool.action}' action of '{tool.connector.name}'",
                        params_json_schema=tool.parameters,
                        on_invoke_tool=call,
                        strict_json_schema=False,
                    )
                )
        # model.params.tool_choice (OpenFlow's tool_selection: manual): the SDK resets it after a tool call
        choice = spec.params.get("tool_choice") if tools else None
        settings = ModelSettings()
        if isinstance(choice, str) and choice:
            settings = ModelSettings(tool_choice="required" if choice == "any" else choice)
        sdk_agent = SDKAgent(
            model_settings=settings,
            name=agent.name,
            instructions=system_prompt(agent) or None,
            tools=tools,
            model=OpenAIChatCompletionsModel(model=spec.id or "gpt-4o-mini", openai_client=client),
        )
        raw = context.metadata.get("raw_input", input)
        content = raw if isinstance(raw, str) else json.dumps(raw, default=str, sort_keys=True)
        try:
            result = await Runner.run(
                sdk_agent,
                content,
                max_turns=options.max_iterations,
                run_config=RunConfig(tracing_disabled=True),
                hooks=run_hooks(agent.name, spec.id or "openai", lambda u: cost_of(spec, u, run_prices(context)))
                if events.active()
                else None,
            )
        except MaxTurnsExceeded as exc:
            raise BackendError(
                f"agent did not finish within {options.max_iterations} iterations",
                details={"backend": "assistants", "maxIterations": options.max_iterations},
            ) from exc
        usage = []
        for response in result.raw_responses:
            turn = Usage(int(response.usage.input_tokens), int(response.usage.output_tokens), False)
            usage.append(
                {
                    "provider": "openai",
                    "model": spec.id or "openai",
                    "prompt_tokens": turn.prompt_tokens,
                    "completion_tokens": turn.completion_tokens,
                    "total_tokens": turn.total_tokens,
                    "estimated": False,
                    "cost_usd": cost_of(spec, turn, run_prices(context)),
                }
            )
        answer = check_output(agent, result.final_output)
        return {"status": "success", "output": answer, "usage": usage}
