"""Completion for ``%%workflow`` cell bodies and ``%workflow`` lines, answered by the kernel.

One IPython matcher (API v2, which sees the whole cell). In a ``%%workflow`` body it completes
values in block and flow YAML (``type: tra``, ``- {id: b, type: tra``): step types, backends,
providers, agents and connectors (by reference or by name, on any part of the word), a
connector's actions, step ids (``needs:``, ``{{ steps.``) and the workflow's input names
(``{{ inputs.``). On a ``%workflow`` line it completes subcommands, flags, workflow names, run
ids and result variables. When it has something to offer, other matchers (Python names and
keywords) are suppressed; elsewhere it offers nothing and lets them answer.

IPython suppresses other matchers only for a matcher that returns completions, so a ``%%workflow``
body where nothing of ours matches would still get Python names and file paths. The body is YAML:
`install_completer` also wraps the completer's ``completions`` (what kernels call) so that, in a
body, every other matcher is in ``disable_matchers`` for that one request (restored after it):
there a body shows our completions or none. ``%workflow`` lines and Python cells are untouched.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

IDENTIFIER = "owf_magics.workflow_body"
PROVIDERS = ("echo", "scripted", "openai", "anthropic")
VIEW_KEYS = ("output", "status", "error", "attempts", "outputs")
STEP_LIST_KEYS = frozenset({"needs", "dependsOn", "depends_on"})
_TEMPLATE_RE = re.compile(r"\b(steps|inputs)\.(?:([\w/-]+)\.)?([\w-]*)$")
# a value being typed: after "key:" at a line's start (block style) or after "{" or "," (flow style)
_VALUE_RE = re.compile(r"(?:^\s*(?:-\s+)?|[{,]\s*)([A-Za-z_]\w*):\s*['\"]?([^\s'\",{}\[\]]*)$")
# an item of a flow list being typed: "needs: [a, b"
_LIST_RE = re.compile(r"(?:^\s*(?:-\s+)?|[{,]\s*)([A-Za-z_]\w*):\s*\[[^\]]*?['\"]?([^\s'\",{}\[\]]*)$")
_ID_RE = re.compile(r"(?:^\s*-?\s*|[{,]\s*)id:\s*['\"]?([\w./-]+)", re.M)
_CONNECTOR_RE = re.compile(r"(?:^\s*(?:-\s+)?|[{,]\s*)connector:\s*['\"]?([^\s'\",{}\[\]]+)", re.M)


# -- the cell body ------------------------------------------------------------------------------


def _documents(body: str, cursor_line: int) -> list[Any]:
    """The cell's YAML documents as far as they parse: the whole cell without the cursor's line,
    else the lines before it (a cell being typed is rarely valid YAML as a whole)."""
    lines = body.splitlines()[1:]  # without the %%workflow line
    row = max(cursor_line - 1, 0)
    for text in ("\n".join(lines[:row] + lines[row + 1 :]), "\n".join(lines[:row])):
        try:
            return [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError:
            continue
    return []


def _workflow_docs(docs: Iterable[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        if isinstance(doc.get("workflows"), list):
            out += [w for w in doc["workflows"] if isinstance(w, dict)]
        if isinstance(doc.get("workflow"), dict):
            out.append(doc["workflow"])
        if "steps" in doc:
            out.append(doc)
    return out


def _step_ids(body: str, magics: Any) -> list[str]:
    ids = [s.strip() for s in _ID_RE.findall(body)]
    for wf in magics.ow.workflows():
        if wf.graph is not None and wf.name in body:
            ids += list(wf.graph.nodes)
    return list(dict.fromkeys(ids))


def _input_names(body: str, cursor_line: int, magics: Any) -> list[str]:
    names: list[str] = []
    for wf in _workflow_docs(_documents(body, cursor_line)):
        if isinstance(wf.get("inputs"), dict):
            names += [str(k) for k in wf["inputs"]]
    for loaded in magics.ow.workflows():
        if loaded.name in body:
            names += list(loaded.manifest.inputs or {})
    return list(dict.fromkeys(names))


def _refs(items: Iterable[Any]) -> list[str]:
    """References and names: the full reference always, the bare name when no other item has it."""
    items = list(items)
    out = [i.ref for i in items]
    names = [i.name for i in items]
    out += [n for n in names if names.count(n) == 1]
    return out


def _actions(before_cell: str, magics: Any) -> list[str]:
    """The actions of the connector named last before the cursor (the step being typed)."""
    found = _CONNECTOR_RE.findall(before_cell)
    if not found:
        return []
    name = found[-1]
    for c in magics.ow.connectors():
        if name in (c.ref, c.name, f"{c.namespace}/{c.name}") or c.ref.startswith(name):
            return [a.name for a in (getattr(c.model, "actions", None) or [])]
    return []


def _value_options(key: str, before_cell: str, body: str, magics: Any) -> list[str] | None:
    ow = magics.ow
    if key == "type":
        from owf_magics.manifest.models import STEP_TYPES

        return sorted(STEP_TYPES)
    if key == "backend":
        return sorted({b.name for b in ow.backends()} | {"langgraph"})
    if key == "provider":
        return list(PROVIDERS)
    if key in ("agent", "manager"):
        return _refs(ow.agents())
    if key == "connector":
        return _refs(ow.connectors())
    if key == "action":
        return _actions(before_cell, magics)
    if key == "workflow":
        return [w.name for w in ow.workflows()]
    if key == "runtime":
        return ["python", "node"]
    if key in STEP_LIST_KEYS:
        return _step_ids(body, magics)
    return None


def _list_options(key: str, body: str, magics: Any) -> list[str] | None:
    if key in STEP_LIST_KEYS:
        return _step_ids(body, magics)
    if key == "participants":
        return [a.name for a in magics.ow.agents()]
    if key == "toolset":
        return _refs(magics.ow.connectors()) + [f"workflow:{w.name}" for w in magics.ow.workflows()]
    return None


def candidates(body: str, before: str, magics: Any, cursor_line: int | None = None) -> tuple[str, list[str]] | None:
    """What the word before the cursor in a ``%%workflow`` body may become.

    Args:
        body: The whole cell.
        before: The text of the cursor's line up to the cursor.
        magics: The `WorkflowMagics` (its registry supplies references, backends and workflows).
        cursor_line: The cursor's line in the cell (0 is the ``%%workflow`` line).

    Returns:
        ``(the word typed so far, the options that complete it)``, or None outside any context.
    """
    lines = body.splitlines()
    row = cursor_line if cursor_line is not None else len(lines) - 1
    before_cell = "\n".join(lines[:row] + [before])
    m = _TEMPLATE_RE.search(before)
    if m and before.rfind("{{", 0, m.start()) > before.rfind("}}", 0, m.start()):
        kind, step, word = m.group(1), m.group(2), m.group(3)
        if kind == "steps" and step:
            return word, list(VIEW_KEYS)
        if kind == "steps":
            return word, _step_ids(body, magics)
        if not step:
            return word, _input_names(body, row, magics)
        return None
    m = _VALUE_RE.search(before)
    if m:
        options = _value_options(m.group(1), before_cell, body, magics)
        return None if options is None else (m.group(2), options)
    m = _LIST_RE.search(before)
    if m:
        options = _list_options(m.group(1), body, magics)
        return None if options is None else (m.group(2), options)
    return None


def matching(word: str, options: Iterable[str]) -> list[str]:
    """The options that complete `word`: those starting with it, else those with a part (after
    ``:`` or ``/``) starting with it, else those containing it, else those containing its
    letters in order; case-insensitive, in the options' order, the word itself left out."""
    opts = [o for o in dict.fromkeys(options) if o != word]
    low = word.lower()
    if not low:
        return opts
    parts = re.compile(r"[:/.@_-]")
    tests = (
        lambda o: o.lower().startswith(low),
        lambda o: any(p.startswith(low) for p in parts.split(o.lower())),
        lambda o: low in o.lower(),
        lambda o: re.search(".*".join(map(re.escape, low)), o.lower()) is not None,
    )
    for test in tests:
        found = [o for o in opts if test(o)]
        if found:
            return found
    return []


# -- the %workflow line -------------------------------------------------------------------------


def _quoted(name: str) -> str:
    return f'"{name}"' if re.search(r"\s", name) else name


def _words(text: str) -> list[str]:
    """`text` split as the magic splits its line (quoted names are one word)."""
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def _run_ids(magics: Any) -> list[str]:
    store = magics.ow.store if magics.ow.state is not False else None
    ids = [r.run_id for r in store.list_runs()][::-1][:50] if store is not None else []
    return _result_names(magics) + ids


def _result_names(magics: Any) -> list[str]:
    ns = getattr(magics.shell, "user_ns", {}) or {}
    return [k for k, v in ns.items() if not k.startswith("_") and hasattr(v, "trace_rows") and hasattr(v, "run_id")]


def _flags(magics: Any) -> list[str]:
    parser = getattr(getattr(magics, "workflow", None), "parser", None)
    actions = getattr(parser, "_actions", []) if parser is not None else []
    return sorted({s for a in actions for s in a.option_strings if s.startswith("--")})


def _last_steps(magics: Any) -> list[str]:
    last = getattr(magics, "last_result", None)
    if last is None:
        return []
    return list(dict.fromkeys([str(r.get("step_id")) for r in last.trace_rows] + list(last.steps)))


def line_candidates(before: str, magics: Any) -> tuple[str, list[str], bool] | None:
    """What the word before the cursor on a ``%workflow`` line may become:
    ``(word, options, ordered)``, or None when the line is not a ``%workflow`` line."""
    m = re.match(r"^\s*(%%?)workflow\s+(.*)$", before)
    if not m:
        return None
    cell, rest = m.group(1) == "%%", m.group(2)
    if rest.count('"') % 2:  # inside a quoted name
        head, word = rest[: rest.rfind('"')], rest[rest.rfind('"') :]
    else:
        head, _, word = rest.rpartition(" ")
    words = head.split()
    if word.startswith("-"):
        return word, _flags(magics), False
    if cell:  # %%workflow [NAME] [flags]: the NAME of a loaded workflow, or a flag
        return (word, [_quoted(w.name) for w in magics.ow.workflows()], False) if not words else None
    if not words:
        return word, list(getattr(magics, "subcommands", ())), False
    sub = words[0]
    if words[-1] == "--from":
        return word, _last_steps(magics), False
    positional = [w for w in words[1:] if not w.startswith("-")]
    names = [_quoted(w.name) for w in magics.ow.workflows()]
    if sub == "publish" and words[-1] == "--version":  # the loaded versions of the NAME given
        named = _words(head)[1:2]
        return word, sorted({w.version for w in magics.ow.workflows() if w.name in named}), False
    if sub in ("run", "show", "validate", "map", "runs", "publish"):
        options, ordered = names, False
    elif sub == "cost":
        options, ordered = names + _run_ids(magics), True
    elif sub in ("resume", "replay", "fork", "diff", "timeline"):
        options, ordered = _run_ids(magics), True
    elif sub == "inspect":
        options, ordered = (_last_steps(magics), False) if not positional else (_run_ids(magics), True)
    elif sub in ("trace", "usage"):
        options, ordered = _result_names(magics), False
    elif sub == "tools":
        options, ordered = [c.name for c in magics.ow.connectors()], False
    else:
        return None
    return word, options, ordered


# -- the IPython matcher ------------------------------------------------------------------------


def _matcher(magics: Any) -> Any:
    from IPython.core.completer import CompletionContext, SimpleCompletion, SimpleMatcherResult

    def workflow_body(context: CompletionContext) -> SimpleMatcherResult:
        text = context.full_text
        before = context.text_until_cursor.splitlines()[-1] if context.text_until_cursor else ""
        if context.text_until_cursor.endswith("\n"):
            before = ""
        ordered = False
        found: tuple[str, list[str]] | None = None
        try:
            if in_body(text, context.cursor_line):
                found = candidates(text, before, magics, context.cursor_line)
            else:
                line = line_candidates(before, magics)
                if line is not None:
                    found, ordered = (line[0], line[1]), line[2]
        except Exception:  # a completer must never raise into the front end
            found = None
        if found is None:
            return {"completions": [], "suppress": False}
        word, options = found
        completions = [SimpleCompletion(o, type="owf") for o in matching(word, options)]
        return {"completions": completions, "suppress": True, "matched_fragment": word, "ordered": ordered}

    workflow_body.matcher_api_version = 2  # type: ignore[attr-defined]
    workflow_body.matcher_identifier = IDENTIFIER  # type: ignore[attr-defined]
    workflow_body.matcher_priority = 10  # type: ignore[attr-defined]
    return workflow_body


def in_body(text: str, cursor_line: int) -> bool:
    """True when the cursor (its 0-based line in `text`) is in the body of a ``%%workflow`` cell."""
    return text.lstrip().startswith("%%workflow") and cursor_line > text.count("\n", 0, text.find("%%"))


def _body_only(completer: Any, original: Any) -> Any:
    """The completer's ``completions``, with every matcher but ours disabled in a ``%%workflow`` body."""

    def completions(text: str, offset: int) -> Iterator[Any]:
        if not in_body(text, text.count("\n", 0, offset)):
            yield from original(text, offset)
            return
        saved = list(completer.disable_matchers)
        others = {getattr(m, "matcher_identifier", None) or m.__qualname__ for m in completer.matchers}
        completer.disable_matchers = saved + sorted(others - {IDENTIFIER} - set(saved))
        try:
            found = list(original(text, offset))  # all of them now: the setting is back before we yield
        finally:
            completer.disable_matchers = saved
        yield from found

    completions.owf_body_only = True  # type: ignore[attr-defined]
    return completions


def install_completer(ip: InteractiveShell, magics: Any) -> None:
    """Add the ``%%workflow`` matcher to the shell's completer, and keep other matchers out of
    ``%%workflow`` bodies."""
    completer = getattr(ip, "Completer", None)
    if completer is None:
        return
    uninstall_completer(ip)
    completer.custom_matchers.append(_matcher(magics))
    completer.completions = _body_only(completer, completer.completions)


def uninstall_completer(ip: InteractiveShell) -> None:
    completer = getattr(ip, "Completer", None)
    if completer is None:
        return
    completer.custom_matchers[:] = [
        m for m in completer.custom_matchers if getattr(m, "matcher_identifier", None) != IDENTIFIER
    ]
    if getattr(vars(completer).get("completions"), "owf_body_only", False):
        del completer.completions  # the class's method again
