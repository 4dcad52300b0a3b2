"""The canonical model: strict pydantic v2 classes for agents, connectors, workflows and steps.

Only canonical spellings reach these classes (`normalize` rewrites the aliases first), so every
unknown field is an error. Maps that are open by design (``config``, ``metadata``,
``providerConfig``, JSON Schemas, and a few blocks the spec gives several shapes for) are plain dicts.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from owf_magics.manifest.mcp_spec import McpServer

JsonDict = dict[str, Any]


class Strict(BaseModel):
    """Base of every canonical model: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_default=False, defer_build=True)


# ------------------------------------------------------------------------------------------------
# shared blocks


class RetryPolicy(Strict):
    maxAttempts: Annotated[int, Field(ge=1, le=100)] = 3
    backoff: Literal["fixed", "linear", "exponential"] = "exponential"
    backoffFactor: Annotated[float, Field(ge=0)] = 2.0
    initialDelay: Annotated[float, Field(ge=0)] | None = None
    maxDelay: Annotated[float, Field(ge=0)] | None = None
    retryOn: list[str] | None = None


class Execution(Strict):
    """Where and how something runs: the spec's ``execution`` block."""

    backend: str | None = None
    runtime: Literal["python", "node", "any"] | None = None
    placement: Literal["local", "cloud", "hybrid"] | None = None
    compatibility: dict[str, str] = Field(default_factory=dict)
    config: JsonDict = Field(default_factory=dict)


# ------------------------------------------------------------------------------------------------
# agents


class ModelFallback(Strict):
    provider: str
    id: str | None = None


class ToolCall(Strict):
    name: str
    args: JsonDict = Field(default_factory=dict)
    id: str | None = None


class ScriptedUsage(Strict):
    prompt_tokens: Annotated[int, Field(ge=0)] = 0
    completion_tokens: Annotated[int, Field(ge=0)] = 0
    total_tokens: Annotated[int, Field(ge=0)] | None = None


class ScriptedResponse(Strict):
    """One answer of the offline ``scripted`` provider."""

    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    usage: ScriptedUsage | None = None


class ModelSpec(Strict):
    provider: str
    id: str | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    maxTokens: Annotated[int, Field(ge=1)] | None = None
    topP: Annotated[float, Field(ge=0, le=1)] | None = None
    topK: Annotated[int, Field(ge=1)] | None = None
    presencePenalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequencyPenalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    stopSequences: list[str] | None = None
    fallback: ModelFallback | None = None
    providerConfig: JsonDict = Field(default_factory=dict)
    params: JsonDict = Field(default_factory=dict)
    responses: list[ScriptedResponse] | None = None
    pricing: dict[str, float] | None = None


class FewShot(Strict):
    input: str
    output: str


class Personality(Strict):
    name: str | None = None
    role: str | None = None
    traits: list[str] = Field(default_factory=list)
    tone: str | None = None
    systemPrompt: str | None = None
    goals: list[str] = Field(default_factory=list)
    examples: list[FewShot] = Field(default_factory=list)
    constraints: list[str] = Field(default_factory=list)
    language: str | None = None


class Knowledge(Strict):
    vectorStores: list[JsonDict] = Field(default_factory=list)
    connectors: list[str] = Field(default_factory=list)
    staticContext: list[JsonDict] = Field(default_factory=list)
    retrievalStrategy: JsonDict | None = None


class ToolsetEntry(Strict):
    """A toolset connector with options (security.md's allow/deny lists)."""

    connector: str
    actions: list[str] | None = None
    deny: list[str] | None = None
    toolPrefix: str | None = None
    inputSchema: Any = None
    rateLimit: JsonDict | None = None


class Memory(Strict):
    type: Literal["buffer", "summary", "token_buffer", "vector", "none"] = "none"
    maxMessages: Annotated[int, Field(ge=0)] | None = None
    maxTokens: Annotated[int, Field(ge=0)] | None = None
    summarization: JsonDict | None = None
    vectorStore: JsonDict | None = None


class ContentGuardrails(Strict):
    blockedTopics: list[str] = Field(default_factory=list)
    blockedPatterns: list[str] = Field(default_factory=list)
    piiDetection: bool = False
    toxicityThreshold: Annotated[float, Field(ge=0, le=1)] | None = None
    languageFilter: list[str] = Field(default_factory=list)


class BehaviorGuardrails(Strict):
    maxToolCalls: Annotated[int, Field(ge=0)] | None = None
    preventInfiniteLoops: bool = False
    requireConfirmation: list[str] = Field(default_factory=list)
    allowedDomains: list[str] = Field(default_factory=list)
    blockedDomains: list[str] = Field(default_factory=list)


class OutputGuardrails(Strict):
    maxLength: Annotated[int, Field(ge=0)] | None = None
    minLength: Annotated[int, Field(ge=0)] | None = None
    format: Literal["text", "markdown", "json"] | None = None
    languageCheck: bool = False
    schema_: JsonDict | None = Field(default=None, alias="schema")


class AgentGuardrails(Strict):
    content: ContentGuardrails | None = None
    behavior: BehaviorGuardrails | None = None
    output: OutputGuardrails | None = None


class RateLimitPolicy(Strict):
    requestsPerMinute: Annotated[float, Field(gt=0)] | None = None
    tokensPerMinute: Annotated[float, Field(gt=0)] | None = None
    requestsPerDay: Annotated[float, Field(gt=0)] | None = None
    messagesPerSecond: Annotated[float, Field(gt=0)] | None = None
    rpm: Annotated[float, Field(gt=0)] | None = None
    burst: Annotated[int, Field(ge=1)] | None = None
    queue: str | None = None


class CostPolicy(Strict):
    maxCostPerRequest: Annotated[float, Field(ge=0)] | None = None
    budgetAlert: Annotated[float, Field(ge=0)] | None = None
    monthlyBudget: Annotated[float, Field(ge=0)] | None = None
    maxTokensPerRequest: Annotated[int, Field(ge=0)] | None = None


class Policies(Strict):
    rateLimit: RateLimitPolicy | None = None
    cost: CostPolicy | None = None
    privacy: JsonDict | None = None
    compliance: JsonDict | None = None
    safety: str | None = None


class AgentIO(Strict):
    inputSchema: JsonDict | None = None
    outputSchema: JsonDict | str | None = None


class _Meta(Strict):
    """Descriptive fields every registry manifest may carry."""

    schemaVersion: str | None = None
    namespace: str | None = None
    displayName: str | None = None
    description: str | None = None
    author: str | None = None
    homepage: str | None = None
    repository: str | None = None
    icon: str | None = None
    license: str | None = None
    categories: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    metadata: JsonDict = Field(default_factory=dict)
    requires: dict[str, str] | None = None
    deprecated: bool = False
    deprecationReason: str | None = None
    replacement: str | None = None


class Agent(_Meta):
    type: Literal["agent"] = "agent"
    name: Annotated[str, Field(min_length=1)]
    version: str = "1.0.0"
    registryMode: bool = False
    execution: Execution | None = None
    model: ModelSpec
    personality: Personality | None = None
    knowledge: Knowledge | None = None
    toolset: list[str | ToolsetEntry] = Field(default_factory=list)
    memory: Memory | None = None
    guardrails: AgentGuardrails | None = None
    policies: Policies | None = None
    io: AgentIO | None = None
    planner: JsonDict | None = None
    extensions: JsonDict | None = None


# ------------------------------------------------------------------------------------------------
# connectors


class EnvVar(Strict):
    name: str
    description: str | None = None
    required: bool = False


class ConnectorRuntime(Strict):
    memory: str | None = None
    timeout: float | None = None
    environment: list[EnvVar] = Field(default_factory=list)
    resources: JsonDict | None = None


class Approval(Strict):
    required: Literal["never", "first_use", "always", "admin_approval"] = "never"
    approvers: list[str] = Field(default_factory=list)
    timeout: Annotated[float, Field(ge=0)] = 3600
    onTimeout: Literal["reject", "allow", "escalate"] = "reject"


class FrameworkHints(Strict):
    toolPrefix: str | None = None
    supportsStreaming: bool | None = None
    schemaFormat: str | None = None


class Capabilities(Strict):
    runtime: str | None = None
    frameworks: dict[str, FrameworkHints] = Field(default_factory=dict)


class UrlValidation(Strict):
    allowedDomains: list[str] = Field(default_factory=list)
    blockedDomains: list[str] = Field(default_factory=list)
    requireHTTPS: bool = False


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.I)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "ki": 1024, "mi": 1024**2, "gi": 1024**3}


def parse_size(value: Any) -> Any:
    """A size like ``10MB``, ``512KiB`` or ``2g`` as a number of bytes; anything else unchanged."""
    if not isinstance(value, str):
        return value
    m = _SIZE_RE.match(value)
    if m is None:
        return value  # the model says what is wrong with it
    unit = (m.group(2) or "").lower().removesuffix("b")
    return int(float(m.group(1)) * _SIZE_UNITS[unit])


class HttpHandler(Strict):
    url: str
    method: Literal["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, Any] = Field(default_factory=dict)
    body: Any = None
    timeout: Annotated[float, Field(gt=0)] | None = None
    retry: RetryPolicy | None = None
    urlValidation: UrlValidation | None = None
    # the bounds of docs/security.md ("HTTP limits"); None: the registry's http_limits
    maxResponseBytes: Annotated[int, Field(ge=0)] | None = None
    maxRedirects: Annotated[int, Field(ge=0, le=100)] | None = None

    @field_validator("maxResponseBytes", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        """``10MB``, ``512KiB``, ``1GB`` as bytes (decimal units are 1000s, binary ones 1024s)."""
        return parse_size(value)


class KafkaHandler(Strict):
    topic: str
    responseTopic: str | None = None
    timeout: float | None = None
    key: str | None = None


#: The fields of `Handler` that name a handler kind, in the order `Handler.kind` looks at them.
HANDLER_FIELDS: tuple[str, ...] = ("function", "http", "command", "kafka", "mcp", "sql", "image", "queue", "router")


class Handler(Strict):
    """How an action runs: exactly one of the `HANDLER_FIELDS` (``function``, ``http``, ...)."""

    function: str | None = None
    http: HttpHandler | None = None
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    workingDir: str | None = None
    security: JsonDict | None = None
    kafka: KafkaHandler | None = None
    mcp: str | JsonDict | None = None
    #: SQL against SQLite or PostgreSQL (``connectors/sql.py``): query, params, database
    sql: JsonDict | None = None
    #: an image source (``connectors/image.py``), offline unless configured
    image: JsonDict | None = None
    #: a named queue with bandwidth limits (``connectors/queue.py``)
    queue: JsonDict | None = None
    #: an intent from a text by prefix, keyword, pattern or rule (``connectors/router.py``)
    router: JsonDict | None = None

    @property
    def kind(self) -> str | None:
        for k in HANDLER_FIELDS:
            if getattr(self, k):
                return k
        return None


class Action(Strict):
    name: Annotated[str, Field(min_length=1)]
    description: str | None = None
    input: JsonDict | None = None
    output: JsonDict | None = None
    handler: Handler | None = None
    approval: Approval | None = None
    examples: list[Any] = Field(default_factory=list)
    metadata: JsonDict = Field(default_factory=dict)


class Connector(_Meta):
    type: Literal["connector"] = "connector"
    kind: Literal["mcp-server", "http", "sdk", "lambda", "custom", "command", "function"] | None = None
    name: Annotated[str, Field(min_length=1)]
    version: str = "1.0.0"
    runtime: ConnectorRuntime | None = None
    approval: Approval | None = None
    security: JsonDict | None = None
    supports: list[str] = Field(default_factory=list)
    auth: JsonDict | None = None
    capabilities: Capabilities | None = None
    mcp: McpServer | None = None
    actions: list[Action] = Field(default_factory=list)
    _tools_listed: bool = PrivateAttr(default=False)

    def action(self, name: str) -> Action | None:
        for a in self.actions:
            if a.name == name:
                return a
        if self.mcp is not None and not self._tools_listed:  # an MCP tool, looked up on first use
            return Action(name=name, handler=Handler(mcp={"connector": self.ref, "tool": name}))
        return None

    @property
    def ref(self) -> str:
        return f"connector:{self.namespace or 'local'}/{self.name}@{self.version}"

    @property
    def tools_listed(self) -> bool:
        """Whether an MCP server's tools are known (its actions are then exactly those exposed)."""
        return self._tools_listed

    def with_tools(self, tools: list[Action]) -> Connector:
        """A copy whose actions are an MCP server's listed tools (and the actions declared with a
        handler of their own)."""
        names = {t.name for t in tools}
        kept = [a for a in self.actions if a.handler is not None and a.handler.kind != "mcp" and a.name not in names]
        out = self.model_copy(update={"actions": [*kept, *tools]})
        out._tools_listed = True
        return out


# ------------------------------------------------------------------------------------------------
# steps


class LoopModifier(Strict):
    """The inline loop of a non-loop step (``for_each:`` + ``parallel:`` in workflow-schema.md)."""

    items: Any
    parallel: bool = False
    maxConcurrency: Annotated[int, Field(ge=1)] | None = None
    continueOnError: bool = False


class StepGuardrails(Strict):
    piiDetection: bool = False
    toxicityThreshold: Annotated[float, Field(ge=0, le=1)] | None = None
    blockedTopics: list[str] = Field(default_factory=list)
    maxCost: Annotated[float, Field(ge=0)] | None = None
    maxTokens: Annotated[int, Field(ge=0)] | None = None
    maxToolCalls: Annotated[int, Field(ge=0)] | None = None
    timeLimit: Annotated[float, Field(ge=0)] | None = None
    outputSchema: JsonDict | None = None


class StepBase(Strict):
    id: Annotated[str, Field(min_length=1)]
    displayName: str | None = None
    description: str | None = None
    condition: str | bool | None = None
    needs: list[str] = Field(default_factory=list)
    timeout: float | str | None = None
    retry: RetryPolicy | None = None
    continueOnError: bool = False
    execution: Execution | None = None
    forEach: LoopModifier | None = None
    guardrails: StepGuardrails | None = None
    authorization: JsonDict | None = None
    metadata: JsonDict = Field(default_factory=dict)


class ActionStep(StepBase):
    type: Literal["action"] = "action"
    connector: str
    action: str
    input: JsonDict = Field(default_factory=dict)


class AgentStep(StepBase):
    type: Literal["agent"] = "agent"
    agent: str
    input: Any = None


class WorkflowStep(StepBase):
    type: Literal["workflow"] = "workflow"
    workflow: str
    version: str | None = None
    input: JsonDict = Field(default_factory=dict)


class IfStep(StepBase):
    type: Literal["if"] = "if"
    condition: str | bool
    then: list[Step]
    else_: list[Step] = Field(default_factory=list, alias="else")


class SwitchStep(StepBase):
    type: Literal["switch"] = "switch"
    value: Any
    cases: dict[str, list[Step]]
    default: list[Step] = Field(default_factory=list)


class ForEachStep(StepBase):
    type: Literal["forEach"] = "forEach"
    items: Any
    maxConcurrency: Annotated[int, Field(ge=1)] | None = None
    ordered: bool = False
    steps: list[Step]


class JoinCount(Strict):
    count: Annotated[int, Field(ge=1)]


class ParallelStep(StepBase):
    type: Literal["parallel"] = "parallel"
    join: Literal["all", "any"] | JoinCount = "all"
    branches: dict[str, list[Step]]


class WaitUntil(Strict):
    event: str | None = None
    time: str | None = None
    timeout: float | str | None = None
    channel: str | None = None
    filter: JsonDict | None = None


class WaitStep(StepBase):
    type: Literal["wait"] = "wait"
    duration: float | str | None = None
    until: WaitUntil | None = None


class TryStep(StepBase):
    type: Literal["try"] = "try"
    steps: list[Step]
    catch: list[Step] = Field(default_factory=list)
    finally_: list[Step] = Field(default_factory=list, alias="finally")


class TransformStep(StepBase):
    type: Literal["transform"] = "transform"
    language: Literal["template", "jq", "jsonpath", "javascript", "python"] = "template"
    expression: str
    input: Any = None


class SelectAgent(Strict):
    agent: str
    condition: str | bool | None = None
    default: bool = False


class HandoffStep(StepBase):
    type: Literal["handoff"] = "handoff"
    agent: str | None = None
    selectAgent: list[SelectAgent] | None = None
    reason: str | None = None
    context: JsonDict = Field(default_factory=dict)
    input: Any = None
    resumeAfter: bool = False
    maxTransfers: Annotated[int, Field(ge=0)] | None = None


class Termination(Strict):
    maxRounds: Annotated[int, Field(ge=1)] = 10
    phrase: str | None = None
    condition: str | bool | None = None


class _Pattern(StepBase):  # agents taking turns (docs/patterns.md); output: conversation, final, rounds
    participants: Annotated[list[str], Field(min_length=1)]
    input: Any = None


class GroupChatStep(_Pattern):
    type: Literal["groupChat"] = "groupChat"
    selection: Literal["roundRobin"] | dict[Literal["manager", "function"], str] = "roundRobin"
    termination: Termination = Field(default_factory=Termination)


class MagenticStep(_Pattern):
    type: Literal["magentic"] = "magentic"
    manager: str
    maxRounds: Annotated[int, Field(ge=1)] = 10
    maxStalls: Annotated[int, Field(ge=1)] = 2
    maxResets: Annotated[int, Field(ge=0)] = 2


class SequentialStep(_Pattern):
    type: Literal["sequential"] = "sequential"


class ConcurrentStep(_Pattern):
    type: Literal["concurrent"] = "concurrent"
    aggregator: str | dict[Literal["agent", "template"], str] | None = None


PATTERN_STEPS = (GroupChatStep, MagenticStep, SequentialStep, ConcurrentStep)

Step = Annotated[
    ActionStep
    | AgentStep
    | WorkflowStep
    | IfStep
    | SwitchStep
    | ForEachStep
    | ParallelStep
    | WaitStep
    | TryStep
    | TransformStep
    | HandoffStep
    | GroupChatStep
    | MagenticStep
    | SequentialStep
    | ConcurrentStep,
    Field(discriminator="type"),
]

STEP_TYPES: dict[str, type[StepBase]] = {
    "action": ActionStep,
    "agent": AgentStep,
    "workflow": WorkflowStep,
    "if": IfStep,
    "switch": SwitchStep,
    "forEach": ForEachStep,
    "parallel": ParallelStep,
    "wait": WaitStep,
    "try": TryStep,
    "transform": TransformStep,
    "handoff": HandoffStep,
    **{m.model_fields["type"].default: m for m in PATTERN_STEPS},
}
PATTERN_TYPES = frozenset(m.model_fields["type"].default for m in PATTERN_STEPS)
LOGIC_STEP_TYPES = (
    frozenset({"if", "switch", "forEach", "parallel", "wait", "try", "transform", "handoff"}) | PATTERN_TYPES
)


def child_blocks(step: StepBase) -> list[tuple[str, str | None, list[Any]]]:
    """The nested step lists of a step: ``(field, key, steps)``, e.g. ``("cases", "high", [...])``."""
    out: list[tuple[str, str | None, list[Any]]] = []
    if isinstance(step, IfStep):
        out.append(("then", None, step.then))
        out.append(("else", None, step.else_))
    elif isinstance(step, SwitchStep):
        out.extend(("cases", k, v) for k, v in step.cases.items())
        out.append(("default", None, step.default))
    elif isinstance(step, ForEachStep):
        out.append(("steps", None, step.steps))
    elif isinstance(step, ParallelStep):
        out.extend(("branches", k, v) for k, v in step.branches.items())
    elif isinstance(step, TryStep):
        out.append(("steps", None, step.steps))
        out.append(("catch", None, step.catch))
        out.append(("finally", None, step.finally_))
    return out


# ------------------------------------------------------------------------------------------------
# workflows


class InputSpec(Strict):
    type: Literal["string", "number", "integer", "boolean", "object", "array", "any", "file", "null"] | None = None
    description: str | None = None
    default: Any = None
    required: bool = False
    enum: list[Any] | None = None
    items: JsonDict | None = None
    properties: JsonDict | None = None
    pattern: str | None = None
    format: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    minLength: int | None = None
    maxLength: int | None = None
    examples: list[Any] | None = None
    secret: bool = False


class Trigger(Strict):
    type: Literal["manual", "schedule", "webhook", "event"]
    cron: str | None = None
    timezone: str | None = None
    path: str | None = None
    method: str | None = None
    auth: JsonDict | None = None
    security: JsonDict | None = None
    source: str | None = None
    topic: str | None = None
    filter: JsonDict | None = None


class OutputSpec(Strict):
    value: Any
    description: str | None = None
    type: str | None = None


class WorkflowRuntime(Strict):
    """``runtime.environment``: the environment variables the workflow's templates read as ``env.*``."""

    environment: list[EnvVar] = Field(default_factory=list)


class Workflow(_Meta):
    type: Literal["workflow"] = "workflow"
    name: Annotated[str, Field(min_length=1)]
    version: str = "1.0.0"
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    triggers: list[Trigger] = Field(default_factory=list)
    steps: list[Step]
    outputs: dict[str, OutputSpec] = Field(default_factory=dict)
    execution: Execution | None = None
    authorization: JsonDict | None = None
    testing: JsonDict | None = None
    policies: Policies | None = None
    guardrails: StepGuardrails | None = None
    timeout: float | str | None = None
    runtime: WorkflowRuntime | None = None


class Bundle(_Meta):
    type: Literal["bundle"] = "bundle"
    name: str
    version: str = "1.0.0"
    includes: list[str] = Field(default_factory=list)


# Models build their validators on first use (`defer_build`), not at import: importing the package
# stays cheap, and a load that reads no agent never builds the agent models. The recursive step
# models resolve `Step` then, from this module's namespace.

Manifest = Agent | Connector | Workflow | Bundle
MODEL_FOR_KIND: dict[str, type[BaseModel]] = {
    "agent": Agent,
    "connector": Connector,
    "workflow": Workflow,
    "bundle": Bundle,
}


def json_schema() -> dict[str, Any]:
    """The canonical model as one JSON Schema (for editors validating manifest files)."""
    from pydantic import TypeAdapter

    class WorkflowFile(Strict):
        schemaVersion: str | None = None
        namespace: str | None = None
        agents: list[Agent] = Field(default_factory=list)
        connectors: list[Connector] = Field(default_factory=list)
        workflows: list[Workflow] = Field(default_factory=list)

    adapter: TypeAdapter[Any] = TypeAdapter(WorkflowFile | Agent | Connector | Workflow | Bundle)
    schema = adapter.json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "OpenWorkflow manifest (owf-magics canonical model)"
    return schema
