"""Vendor every manifest of the OpenWorkflow specification into ``tests/spec_corpus/manifests/``.

Run by hand (never at test time) when the spec is updated::

    python tests/spec_corpus/extract.py [SPEC_DIR]

SPEC_DIR defaults to ``$OWF_SPEC_DIR`` or ``/work/shared/reference/openworkflow-spec``. The script

* reads every ```yaml and ```json code block of ``README.md``, ``specs/*.md`` and
  ``examples/*/README.md``, and every ``examples/**/*.yaml`` file;
* classifies each block: a *manifest* (the file form ``workflows:``/``workflow:``, the nested
  ``connector:`` form, the registry form ``type: agent|connector|workflow|bundle``, the
  agent-schema JSON Schema shape ``agent: {id: ...}``), a *steps fragment* (a bare ``steps:`` list,
  which is wrapped into a minimal workflow), or something to skip (a pseudo-schema, a fragment of
  a manifest, an API payload, a config file that is not a manifest...);
* writes each manifest to ``manifests/<source>__<n>.<yaml|json>`` (``n`` counts the yaml/json
  blocks of that source file, from 01), YAML ones with a header comment naming where they come
  from and what was changed, and lists everything else in ``skipped.yaml`` with the reason.

JSON blocks in the spec carry ``// comments`` as annotations; the vendored copy has them removed
(line structure kept), which ``skipped.yaml`` records under ``notes``. Nothing else in a block is
changed: line numbers in ``expected.yaml`` are lines of the vendored file.

The spec is Apache-2.0 (see ``NOTICE``). ``expected.yaml`` is written by hand, not by this script;
the script prints the files it wrote so a new or changed block is easy to spot.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
DEFAULT_SPEC = Path(os.environ.get("OWF_SPEC_DIR", "/work/shared/reference/openworkflow-spec"))
FENCE = re.compile(r"^```(\w*)\s*$")

#: Why a block that is not a manifest is skipped, by its name; checked against the classifier so
#: a reason never goes stale. Blocks without an entry get the classifier's generic reason.
REASONS: dict[str, str] = {
    # agent-schema.md
    "agent-schema__01": "the JSON Schema of the agent format itself, not an agent",
    "agent-schema__03": "an agent fragment: only 'personality'",
    "agent-schema__04": "a vector-store entry of an agent's knowledge block (Pinecone), not a manifest",
    "agent-schema__05": "a vector-store entry of an agent's knowledge block (Weaviate), not a manifest",
    "agent-schema__06": "a vector-store entry of an agent's knowledge block (ChromaDB), not a manifest",
    "agent-schema__07": "an agent fragment: only 'toolset'",
    "agent-schema__08": "an agent fragment: only 'memory'",
    "agent-schema__09": "an agent fragment: only 'guardrails'",
    # connector-schema.md
    "connector-schema__01": "a pseudo-schema: field values are type names ('kind: string', "
    "'required: never | first_use | ...')",
    "connector-schema__02": "a pseudo-schema of an action ('type: string|number|boolean|object|array')",
    "connector-schema__03": "auth descriptors: five 'auth:' alternatives in one block (duplicate keys), "
    "with pseudo-schema values ('in: header | query | cookie')",
    "connector-schema__04": "a handler pseudo-schema ('url: string', 'method: string')",
    "connector-schema__05": "an HTTP request body example, not a manifest",
    "connector-schema__06": "an HTTP response example (with a /* */ comment), not a manifest",
    "connector-schema__07": "an HTTP error response example, not a manifest",
    "connector-schema__08": "a handler fragment: only 'function'",
    "connector-schema__09": "a handler pseudo-schema ('command: string')",
    "connector-schema__10": "a handler fragment: only 'command' and 'args'",
    "connector-schema__11": "a handler pseudo-schema ('topic: string')",
    "connector-schema__12": "a Kafka message payload (with a /* */ comment), not a manifest",
    "connector-schema__14": "an 'actions:' fragment of a connector (the SQL injection anti-pattern), "
    "with no connector around it",
    "connector-schema__15": "two 'actions:' fragments in one block (a duplicate key), with no connector around them",
    # execution-backends.md
    "execution-backends__04": "three separate step objects in one block (not one JSON document)",
    "execution-backends__07": "an agent fragment: only 'execution' (LangChain config, with // comments)",
    "execution-backends__08": "a telemetry event payload, not a manifest",
    "execution-backends__09": "an error envelope (SDK contract), not a manifest",
    "execution-backends__10": "an error envelope (SDK contract), not a manifest",
    # execution-modes.md
    "execution-modes__02": "a connector fragment: only 'runtime.resources' (no name, no actions)",
    "execution-modes__03": "a connector service request payload, not a manifest",
    "execution-modes__04": "a connector service response payload, not a manifest",
    "execution-modes__05": "a connector service error payload, not a manifest",
    "execution-modes__06": "a health-check response payload, not a manifest",
    "execution-modes__07": "an async execution response payload, not a manifest",
    "execution-modes__08": "a webhook callback payload ({...} placeholder), not a manifest",
    "execution-modes__09": "a docker-compose file, not a manifest",
    "execution-modes__10": "runtime configuration of streaming, with a pseudo-union ('sse | websocket')",
    "execution-modes__11": "a streaming event payload, not a manifest",
    # registry-protocol.md
    "registry-protocol__01": "a registry search API response, not a manifest",
    "registry-protocol__02": "a registry plugin-details API response (slug, downloads, versions), not a manifest",
    "registry-protocol__03": "a registry publish API response, not a manifest",
    "registry-protocol__04": "a registry update API response, not a manifest",
    "registry-protocol__05": "a registry deprecation request body, not a manifest",
    "registry-protocol__06": "an MCP router registration request, not a manifest",
    "registry-protocol__07": "an MCP router registration response, not a manifest",
    "registry-protocol__08": "a health-check response payload, not a manifest",
    "registry-protocol__09": "a plugin signature block, not a manifest",
    "registry-protocol__10": "two versions of one 'actions:' list in one block (a duplicate key), "
    "with pseudo-schema inputs ('location: string')",
    # registry-taxonomy.md
    "registry-taxonomy__01": "a manifest header with an elision ('...'): not JSON",
    "registry-taxonomy__08": "deprecation fields of a manifest, not a manifest",
    "registry-taxonomy__09": "'requires' fields of a manifest, not a manifest",
    # sdk-contract.md
    "sdk-contract__01": "an error envelope (SDK contract), not a manifest",
    "sdk-contract__02": "an error envelope (SDK contract), not a manifest",
    "sdk-contract__03": "an error envelope (SDK contract), not a manifest",
    "sdk-contract__04": "an error envelope (SDK contract), not a manifest",
    "sdk-contract__05": "an error envelope (SDK contract), not a manifest",
    "sdk-contract__06": "an error envelope (SDK contract), not a manifest",
    # security.md
    "security__01": "a connector fragment: only 'auth', with a pseudo-union ('type: oauth2 | apiKey | bearer | ...')",
    "security__03": "an agent fragment: only 'toolset' (with // comments)",
    "security__04": "a 'triggers:' fragment (a webhook trigger), not a workflow",
    "security__06": "secrets-manager configuration, not a manifest",
    "security__07": "runtime configuration ('execution.security.secretRedaction'), not a manifest",
    "security__09": "two fragments in one block: a handler and a steps list",
    "security__12": "a step 'input:' fragment",
    "security__13": "a handler fragment (command handler security options)",
    "security__14": "a handler fragment (urlValidation options)",
    "security__15": "an 'actions:' fragment of a connector (input validation), with no connector around it",
    "security__16": "a connector fragment: only 'runtime.resources' (no name, no actions)",
    "security__17": "a docker-compose file, not a manifest",
    "security__18": "a runtime config file (.openworkflow/config.yaml), not a manifest",
    "security__20": "runtime configuration ('execution.audit'), not a manifest",
    "security__21": "an audit log event payload, not a manifest",
    "security__22": "monitoring configuration, not a manifest",
    "security__23": "compliance configuration (GDPR), not a manifest",
    "security__24": "compliance configuration (SOC 2), not a manifest",
    "security__26": "incident response configuration, not a manifest",
    # workflow-logic-steps.md
    "workflow-logic-steps__02": "condition expression examples (one key repeated), not a manifest",
    "workflow-logic-steps__03": 'a pseudo-schema of an if step\'s output (\'"then" | "else"\')',
    "workflow-logic-steps__05": "a pseudo-schema of a switch step's output",
    "workflow-logic-steps__07": "a step 'input:' fragment showing the loop context",
    "workflow-logic-steps__08": "a forEach step's output with '{...}' placeholders and // comments",
    "workflow-logic-steps__10": "a parallel step's output with '{...}' placeholders",
    "workflow-logic-steps__14": "a pseudo-schema of a wait step's output",
    "workflow-logic-steps__16": "a step 'input:' fragment showing the error context",
    "workflow-logic-steps__17": "a pseudo-schema of a try step's output",
    "workflow-logic-steps__21": "a transform step's output with '{...}' placeholders",
    "workflow-logic-steps__24": "a handoff step's output with '{...}' placeholders",
    "workflow-logic-steps__26": "a list of template expressions, not YAML",
    # workflow-schema.md
    "workflow-schema__02": "a pseudo-schema ('name: string  # Required')",
    "workflow-schema__05": "a pseudo-schema ('type: string|number|boolean|object')",
    "workflow-schema__08": "a 'triggers:' fragment (manual), not a workflow",
    "workflow-schema__09": "a 'triggers:' fragment (schedule), not a workflow",
    "workflow-schema__10": "a 'triggers:' fragment (webhook), not a workflow",
    "workflow-schema__12": "a 'triggers:' fragment (event), not a workflow",
    "workflow-schema__17": "an example of a loop step's collected output, not a manifest",
    # examples/*/README.md
    "examples-calculator-README__02": "an error response payload, not a manifest",
    "examples-calculator-README__03": "a handler fragment (the HTTP alternative)",
    "examples-weather-README__01": "an action input example, not a manifest",
    "examples-weather-README__02": "an action output example, not a manifest",
    "examples-weather-README__03": "an action input example, not a manifest",
    "examples-weather-README__04": "an 'actions:' fragment with an elided body ('# ... action definition')",
}


@dataclass
class Block:
    source: str  # path relative to the spec, e.g. specs/workflow-schema.md
    name: str  # e.g. workflow-schema__07
    lang: str  # yaml | json
    start: int  # first line of the block's text in the source
    text: str
    verdict: str = ""  # manifest | steps | skip
    reason: str = ""
    notes: list[str] = field(default_factory=list)


def source_stem(rel: str) -> str:
    """``specs/workflow-schema.md`` → ``workflow-schema``; ``examples/weather/README.md`` → ``examples-weather-README``."""
    p = Path(rel)
    parts = list(p.parent.parts)
    if parts[:1] == ["specs"]:
        parts = parts[1:]
    return "-".join([*parts, p.stem])


def blocks_of(spec: Path, rel: str) -> list[Block]:
    out: list[Block] = []
    lines = (spec / rel).read_text(encoding="utf-8").splitlines()
    i, n = 0, 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang = m.group(1)
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        if lang in ("yaml", "json"):
            n += 1
            out.append(Block(rel, f"{source_stem(rel)}__{n:02d}", lang, i + 2, "\n".join(lines[i + 1 : j]) + "\n"))
        i = j + 1
    return out


def strip_json_comments(text: str) -> tuple[str, int]:
    """Remove ``// ...`` comments outside strings, keeping every line; returns the count removed."""
    out_lines = []
    removed = 0
    for line in text.split("\n"):
        in_str = False
        esc = False
        cut = None
        for k, c in enumerate(line):
            if in_str:
                if esc:
                    esc = False
                elif c == "\\":
                    esc = True
                elif c == '"':
                    in_str = False
            elif c == '"':
                in_str = True
            elif c == "/" and line[k : k + 2] == "//":
                cut = k
                break
        if cut is not None:
            removed += 1
        out_lines.append(line if cut is None else line[:cut].rstrip())
    return "\n".join(out_lines), removed


_PSEUDO_TYPE = re.compile(r"^(string|number|integer|boolean|object|array|any)(\s*\|\s*\w+)*$|^\[?string\]?$")
_PSEUDO_UNION = re.compile(r"^[\w./-]+( \| [\w./-]+)+$")


def pseudo_values(data: Any) -> list[str]:
    """String values that describe a type rather than hold one (``name: string``, ``a | b | c``).

    ``type: string`` is a JSON Schema keyword, so under a ``type`` key only unions count.
    """
    found: list[str] = []
    stack: list[tuple[Any, Any]] = [(None, data)]
    while stack:
        key, node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.items())
        elif isinstance(node, list):
            stack.extend((key, v) for v in node)
        elif isinstance(node, str):
            text = node.strip()
            if _PSEUDO_UNION.match(text) or (_PSEUDO_TYPE.match(text) and (key != "type" or "|" in text)):
                found.append(node)
    return found


def parse(block: Block) -> tuple[Any, str | None]:
    text = block.text
    if block.lang == "json":
        text, _ = strip_json_comments(text)
        try:
            return json.loads(text), None
        except json.JSONDecodeError as exc:
            return None, f"not JSON ({exc.msg}, line {exc.lineno})"
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        return None, f"not YAML ({str(exc).splitlines()[0]})"
    return (docs[0] if len(docs) == 1 else docs), None


def is_manifest(data: Any) -> bool:
    if not isinstance(data, dict):
        return False
    if isinstance(data.get("workflows"), list) or isinstance(data.get("workflow"), dict):
        return True
    conn = data.get("connector")
    if isinstance(conn, dict):
        return "actions" in data or "actions" in conn or "name" in conn
    if data.get("type") in ("agent", "connector", "workflow", "bundle") and "name" in data:
        return True
    return isinstance(data.get("agent"), dict) and "model" in data and "$schema" not in data


def classify(block: Block) -> None:
    data, problem = parse(block)
    if problem is not None:
        block.verdict, block.reason = "skip", problem
    elif isinstance(data, dict) and "$schema" in data:
        block.verdict, block.reason = "skip", "a JSON Schema, not a manifest"
    elif is_manifest(data):
        pseudo = pseudo_values(data)
        if pseudo:
            block.verdict, block.reason = "skip", f"a pseudo-schema (values like {pseudo[0]!r})"
        else:
            block.verdict = "manifest"
    elif isinstance(data, dict) and set(data) == {"steps"} and isinstance(data["steps"], list):
        block.verdict = "steps"
    else:
        keys = ", ".join(map(str, data)) if isinstance(data, dict) else type(data).__name__
        block.verdict, block.reason = "skip", f"not a manifest (top-level keys: {keys})"
    if block.verdict == "skip" and block.name in REASONS:
        block.reason = REASONS[block.name]
    if block.lang == "json":
        _, removed = strip_json_comments(block.text)
        if removed and block.verdict != "skip":
            block.notes.append(f"{removed} '//' comment(s) removed (the spec uses them as annotations)")


def header(block: Block, extra: list[str]) -> str:
    end = block.start + block.text.count("\n") - 1
    lines = [
        "# Vendored from the OpenWorkflow specification (Apache-2.0, see ../NOTICE):",
        f"# {block.source}, lines {block.start}-{end}.",
        *(f"# {e}" for e in extra),
        "# Written by tests/spec_corpus/extract.py. Lines in expected.yaml are lines of this file.",
    ]
    return "\n".join(lines) + "\n"


def wrap_yaml_steps(block: Block) -> str:
    head = header(
        block,
        [
            "The spec shows a bare 'steps:' list; extract.py wrapped it, unchanged, in a minimal workflow",
            f"named '{block.name}' (no inputs declared, nothing else added).",
        ],
    )
    body = "".join(("    " + line if line.strip() else line) + "\n" for line in block.text.splitlines())
    return head + f"workflows:\n  - name: {block.name}\n" + body


def wrap_json_steps(text: str, name: str) -> str:
    """``{"steps": [...]}`` → ``{"workflows": [{"name": ..., "steps": [...]}]}`` on the same lines."""
    first = text.index("{")
    last = text.rindex("}")
    return (
        text[:first]
        + '{"workflows": [{"name": '
        + json.dumps(name)
        + ", "
        + text[first + 1 : last]
        + "}]}"
        + text[last + 1 :]
    )


def render(block: Block) -> str:
    if block.lang == "json":
        text, _ = strip_json_comments(block.text)
        if block.verdict == "steps":
            block.notes.append(
                f"a bare 'steps' list, wrapped in a minimal workflow named '{block.name}' "
                "(on the same lines; no inputs declared)"
            )
            text = wrap_json_steps(text, block.name)
        return text
    if block.verdict == "steps":
        return wrap_yaml_steps(block)
    return header(block, ["Unchanged below this header."]) + block.text


def main(argv: list[str]) -> int:
    spec = Path(argv[1]) if len(argv) > 1 else DEFAULT_SPEC
    if not (spec / "specs").is_dir():
        print(f"no spec at {spec} (pass the spec directory)", file=sys.stderr)
        return 2
    out_dir = HERE / "manifests"
    out_dir.mkdir(exist_ok=True)
    for old in out_dir.iterdir():
        if old.suffix in (".yaml", ".json"):
            old.unlink()
    sources = ["README.md", *sorted(str(p.relative_to(spec)) for p in (spec / "specs").glob("*.md"))]
    sources += sorted(str(p.relative_to(spec)) for p in (spec / "examples").glob("*/README.md"))
    blocks: list[Block] = []
    for rel in sources:
        blocks.extend(blocks_of(spec, rel))
    skipped: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    written: list[str] = []
    for block in blocks:
        classify(block)
        if block.verdict == "skip":
            skipped.append(
                {
                    "block": block.name,
                    "source": f"{block.source}:{block.start}",
                    "lang": block.lang,
                    "reason": block.reason,
                }
            )
            continue
        target = out_dir / f"{block.name}.{block.lang}"
        target.write_text(render(block), encoding="utf-8")
        written.append(target.name)
        if block.notes:
            notes.append({"file": target.name, "source": f"{block.source}:{block.start}", "changes": block.notes})
    for path in sorted((spec / "examples").rglob("*.yaml")):
        rel = str(path.relative_to(spec))
        name = "-".join(Path(rel).parent.parts) + "__" + path.stem  # examples-weather__connector
        block = Block(rel, name, "yaml", 1, path.read_text(encoding="utf-8"))
        target = out_dir / f"{name}.yaml"
        target.write_text(
            header(block, ["Unchanged below this header (the whole example file)."]) + block.text, encoding="utf-8"
        )
        written.append(target.name)
    doc = {
        "about": "Code blocks of the OpenWorkflow spec that are not vendored as manifests, and why; "
        "'notes' lists vendored JSON files whose text was changed. Written by extract.py.",
        "skipped": skipped,
        "notes": notes,
    }
    (HERE / "skipped.yaml").write_text(
        yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=110), encoding="utf-8"
    )
    stale = sorted(set(REASONS) - {s["block"] for s in skipped})
    if stale:
        print(f"REASONS entries for blocks that are not skipped: {', '.join(stale)}", file=sys.stderr)
        return 1
    print(
        f"{len(written)} manifests written to {out_dir.relative_to(HERE.parent.parent)}/, "
        f"{len(skipped)} blocks skipped (skipped.yaml)"
    )
    for name in written:
        print("  ", name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
