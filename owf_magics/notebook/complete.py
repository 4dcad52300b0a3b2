"""Completion inside a ``%%workflow`` cell body, answered by the kernel.

An IPython matcher (API v2, which sees the whole cell) proposes step types after ``type:``,
backend names after ``backend:``, loaded agent and connector references after ``agent:`` and
``connector:``, providers after ``provider:``, and step ids after ``{{ steps.``. Outside a
``%%workflow`` cell it proposes nothing and lets the other matchers answer.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

IDENTIFIER = "owf_magics.workflow_body"
PROVIDERS = ("echo", "scripted", "openai", "anthropic")
_STEP_ID_RE = re.compile(r"^\s*-?\s*id:\s*['\"]?([^'\"\n#]+?)['\"]?\s*$", re.M)
_STEPS_RE = re.compile(r"steps\.([\w-]*)$")
_KEY_RE = re.compile(r"^\s*(?:-\s+)?([A-Za-z_]+):\s*['\"]?([^\s'\"]*)$")


def candidates(body: str, before: str, magics: Any) -> tuple[str, list[str]] | None:
    """What the word before the cursor may become: (the word typed so far, full candidates).

    Args:
        body: The whole cell.
        before: The text of the cursor's line up to the cursor.
        magics: The `WorkflowMagics` (its registry supplies references and backends).
    """
    m = _STEPS_RE.search(before)
    if m and "{{" in before[: m.start()]:
        ids = [s.strip() for s in _STEP_ID_RE.findall(body)]
        for wf in magics.ow.workflows():
            if wf.graph is not None and wf.name in body:
                ids += list(wf.graph.nodes)
        return m.group(1), sorted(dict.fromkeys(ids))
    m = _KEY_RE.match(before)
    if not m:
        return None
    key, word = m.group(1), m.group(2)
    if key == "type":
        from owf_magics.manifest.models import STEP_TYPES

        return word, sorted(STEP_TYPES)
    if key == "backend":
        return word, sorted({b.name for b in magics.ow.backends()} | {"langgraph"})
    if key == "provider":
        return word, list(PROVIDERS)
    if key == "agent":
        return word, sorted(i.ref for i in magics.ow.agents())
    if key == "connector":
        return word, sorted(i.ref for i in magics.ow.connectors())
    if key == "runtime":
        return word, ["python", "node"]
    return None


def _matcher(magics: Any) -> Any:
    from IPython.core.completer import CompletionContext, SimpleCompletion, SimpleMatcherResult

    def workflow_body(context: CompletionContext) -> SimpleMatcherResult:
        text = context.full_text
        if not text.lstrip().startswith("%%workflow") or context.cursor_line == 0:
            return {"completions": [], "suppress": False}
        found = candidates(text, context.text_until_cursor, magics)
        if found is None:
            return {"completions": [], "suppress": False}
        word, options = found
        # IPython replaces its own token (split at ':' and '/'); our word may be longer
        token = context.token
        fragment = word
        while fragment and not token.endswith(fragment):
            fragment = fragment[1:]
        cut = len(word) - len(fragment)
        completions = [SimpleCompletion(o[cut:], type="owf") for o in options if o.startswith(word) and o != word]
        return {"completions": completions, "suppress": True, "matched_fragment": fragment}

    workflow_body.matcher_api_version = 2  # type: ignore[attr-defined]
    workflow_body.matcher_identifier = IDENTIFIER  # type: ignore[attr-defined]
    workflow_body.matcher_priority = 10  # type: ignore[attr-defined]
    return workflow_body


def install_completer(ip: InteractiveShell, magics: Any) -> None:
    """Add the ``%%workflow`` body matcher to the shell's completer."""
    completer = getattr(ip, "Completer", None)
    if completer is None:
        return
    uninstall_completer(ip)
    completer.custom_matchers.append(_matcher(magics))


def uninstall_completer(ip: InteractiveShell) -> None:
    completer = getattr(ip, "Completer", None)
    if completer is None:
        return
    completer.custom_matchers[:] = [
        m for m in completer.custom_matchers if getattr(m, "matcher_identifier", None) != IDENTIFIER
    ]
