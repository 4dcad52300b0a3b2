"""``%%agent NAME [--backend B] [-o VAR] [--session S]``: chat with one agent in a cell.

The cell's text is the message; the reply, the tool calls, tokens and cost are shown. Cells with
the same ``--session`` continue one conversation, kept in the shell registry's run store (so it
survives a kernel restart with a file store); ``%agent history S`` shows it.
"""

from __future__ import annotations

import html
import json
import shlex
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display

from owf_magics.errors import OWFError
from owf_magics.notebook.errors import short

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell


class Reply:
    """An agent's answer as a cell shows it: the text, then tool calls, tokens and cost."""

    def __init__(self, result: Any) -> None:
        self.result = result

    def summary(self) -> tuple[list[str], str]:
        res = self.result
        calls = [
            f"{c['name']}({json.dumps(c.get('args') or {}, sort_keys=True)})"
            for m in res.messages
            for c in m.get("tool_calls") or []
        ]
        usage = res.usage
        prompt = int(usage["prompt_tokens"].sum()) if len(usage) else 0
        completion = int(usage["completion_tokens"].sum()) if len(usage) else 0
        cost = float(usage["cost_usd"].fillna(0).sum()) if len(usage) else 0.0
        line = f"{res.agent.name}: {prompt}+{completion} tokens, ${cost:.6f}"
        if res.session:
            line += f", session {res.session}"
        return calls, line

    def text(self) -> str:
        out = self.result.output
        return out if isinstance(out, str) else json.dumps(out, indent=2, default=str)

    def __repr__(self) -> str:
        calls, line = self.summary()
        parts = [self.text()]
        parts += [f"  tool: {c}" for c in calls]
        parts.append(f"  [{line}]")
        return "\n".join(parts)

    def _repr_html_(self) -> str:
        calls, line = self.summary()
        tools = "".join(f"<li><code>{html.escape(c)}</code></li>" for c in calls)
        return (
            f"<div class='owf-agent'><div style='white-space:pre-wrap'>{html.escape(self.text())}</div>"
            + (f"<ul style='margin:4px 0'>{tools}</ul>" if tools else "")
            + f"<div style='color:#777;font-size:90%'>{html.escape(line)}</div></div>"
        )


@magics_class
class AgentMagics(Magics):
    """``%%agent`` and ``%agent history S``."""

    def __init__(self, shell: InteractiveShell, registry: Any) -> None:
        super().__init__(shell)
        self._registry = registry  # () -> the shell's OpenWorkflow (the %%workflow magics')

    @magic_arguments()
    @argument("words", nargs="*", help="cell: the agent's name or reference; line: history SESSION")
    @argument("--backend", "-b", metavar="B", help="native, langchain, ... (default: the agent's own)")
    @argument("-o", "--output", dest="output", metavar="VAR", help="bind the AgentResult to VAR")
    @argument("--session", "-s", metavar="S", help="continue this conversation")
    @argument("--agent", metavar="NAME", help="history: only this agent's messages")
    @line_cell_magic
    def agent(self, line: str, cell: str | None = None) -> Any:
        """Chat with an agent: ``%%agent NAME [--backend B] [-o VAR] [--session S]`` then the message.

        ``%agent history S`` prints the conversation kept for session S.
        """
        try:
            args = parse_argstring(self.agent, " ".join(shlex.quote(w) for w in shlex.split(line)))
        except ValueError as exc:
            raise UsageError(f"cannot split the magic's arguments: {exc}") from None
        ow = self._registry()
        if cell is None:
            if len(args.words) == 2 and args.words[0] == "history":
                return self._history(ow, args.words[1], args.agent)
            raise UsageError("usage: %agent history SESSION  (or %%agent NAME as a cell magic)")
        if len(args.words) != 1:
            raise UsageError("usage: %%agent NAME [--backend B] [-o VAR] [--session S], then the message")
        if args.output and not args.output.isidentifier():
            raise UsageError(f"-o needs a Python name, got {args.output!r}")
        message = cell.strip()
        if not message:
            raise UsageError("the cell is empty: write the message to send to the agent")
        try:
            agent = ow.load_agent(args.words[0])
            res = agent.execute(message, backend=args.backend, session=args.session)
        except OWFError as exc:
            raise short(exc) from None
        if args.output:
            self.shell.user_ns[args.output] = res  # type: ignore[union-attr]
        if res.status != "completed":
            err = res.error
            code, message = (err.code, err.message) if err else ("BACKEND_ERROR", f"the agent ended {res.status}")
            raise short(OWFError(message, code=code, details={"step_id": agent.name}))
        display(Reply(res))
        return None

    def _history(self, ow: Any, session: str, agent: str | None) -> None:
        from owf_magics.api.agent import sessions_of

        messages = sessions_of(ow).get_messages(session, agent=agent)
        if not messages:
            print(f"session {session}: no messages")
            return
        for m in messages:
            content = m.get("content")
            text = content if isinstance(content, str) else json.dumps(content, default=str)
            print(f"{m.get('role', '?')}: {text}")
