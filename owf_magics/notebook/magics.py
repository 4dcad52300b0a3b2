"""The ``%%workflow`` cell magic and the ``%workflow`` line magic.

Thin by design: parse the arguments, call the registry, display views, bind results. Each shell
gets its own `OpenWorkflow`; a cell that is run again replaces what it defined before.
"""

from __future__ import annotations

import html
import json
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display

from owf_magics.errors import ManifestError, OWFError, did_you_mean
from owf_magics.notebook.cells import CellTracker
from owf_magics.notebook.config import OWF, apply_pyproject, find_pyproject, parse_show
from owf_magics.notebook.errors import CellManifestError, WorkflowRunError, read_source, short
from owf_magics.notebook.files_magic import graph_scope, load_line, show_format, warm, write_cell_file
from owf_magics.notebook.history_magic import HISTORY_SUBCOMMANDS, HISTORY_USAGE, history_line
from owf_magics.notebook.publish_magic import publish_line
from owf_magics.notebook.views import GraphView, ResolutionView, shown_frame
from owf_magics.notebook.views.tables import html_table, register_frames, text_table
from owf_magics.runtime.results import plural

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from owf_magics.api import OpenWorkflow, Workflow
    from owf_magics.manifest.catalog import Loaded
    from owf_magics.runtime.results import RunResult

SUBCOMMANDS: tuple[str, ...] = ("list", "show", "run", "map", "resume", "validate", "backends", "tools", "trace")
SUBCOMMANDS += ("usage", "help", "load", "publish", *HISTORY_SUBCOMMANDS)

USAGE = f"""\
%%workflow [NAME] [--run] [-o VAR] [--input KEY=VALUE ...] [--inputs VAR] [--secrets VAR]
           [--prefer-backend B] [--show graph,resolution,yaml] [--quiet]
<YAML: one or more agent, connector and workflow documents>

    Validates and registers the manifests for later cells, then shows the graph and the
    backend-resolution table of the workflow NAME (default: the cell's only or first workflow).
    With --run it also executes it and shows the result; -o VAR binds the RunResult.
    Running the cell again replaces what it defined before. --file PATH also writes it to PATH;
    --xray [DEPTH] opens sub-workflows in the graph, --reasons says why each step's backend.

%workflow list                     loaded agents, connectors and workflows
%workflow show [NAME] [--show ...] graph and resolution table of a loaded workflow (default: the last one)
%workflow show NAME --format F     the graph as mermaid, dot, svg, png or text (-o VAR binds it)
%workflow load PATH                load a manifest file, or every .yaml/.yml/.json file in a directory
%workflow run [NAME] [--input K=V] [--inputs VAR] [--secrets VAR] [-o VAR] [--prefer-backend B] [--quiet]
%workflow map NAME --inputs VAR [--client ADDRESS|VAR] [-o VAR] [--secrets VAR]
                                   run NAME once per inputs dict in VAR (a list or DataFrame), here or on Dask
%workflow resume [RUN_ID] [--approve ID] [--reject ID] [--event JSON]
                                   continue a waiting run (default: the last one) with these answers
%workflow validate [NAME]          check a workflow (all of them without NAME) against what is loaded
%workflow backends                 which backends are installed, their versions, what is missing
%workflow tools NAME [--secrets VAR] an MCP connector's tools with their input schemas
%workflow trace [VAR]              the trace of a run (default: the last run)
%workflow usage [VAR]              token usage and cost of a run (default: the last run)
%workflow publish NAME [--version V] --url URL [-o VAR]
                                   publish a loaded workflow to a running owf serve (token: OWF_TOKEN)
%workflow help                     this text
{HISTORY_USAGE}
Settings: %config OWF (deterministic, prefer_backend, state, show, max_rows, widgets, svg, direction, quiet),
or [tool.owf_magics] in pyproject.toml.
"""


@dataclass
class _CellRecord:
    """What one named cell defined last time it ran (so running it again replaces it)."""

    items: list[Loaded[Any]] = field(default_factory=list)


@magics_class
class WorkflowMagics(Magics):
    """``%%workflow`` / ``%workflow``: define, look at and run OpenWorkflow manifests."""

    subcommands = SUBCOMMANDS  # what the completer offers after %workflow

    def __init__(self, shell: InteractiveShell, settings: OWF) -> None:
        super().__init__(shell)
        self.settings = settings
        self._ow: OpenWorkflow | None = None
        self.sources: dict[str, str] = {}
        # the text of the cell that defined each manifest: unnamed cells share the name "<cell>",
        # so a run error of an earlier cell's workflow must not quote a later cell's lines
        self.item_sources: dict[tuple[str, str, str, str], str] = {}
        self.cells: dict[str, _CellRecord] = {}
        self.last_result: RunResult | None = None
        self.last_workflow: Workflow | None = None
        self.tracker = CellTracker(shell)

    @property
    def ow(self) -> OpenWorkflow:
        """The shell's registry, created on first use (so %load_ext stays cheap)."""
        if self._ow is None:
            from owf_magics.api import OpenWorkflow

            state = self.settings.state
            self._ow = OpenWorkflow(state=False if state == "none" else state)
        return self._ow

    # -- the magic ------------------------------------------------------------------------------

    @magic_arguments()
    @argument("words", nargs="*", help="cell: [NAME]; line: a subcommand and its arguments")
    @argument("--run", action="store_true", help="execute the workflow after defining it")
    @argument("-o", "--output", dest="output", metavar="VAR", help="bind the RunResult to VAR")
    @argument("--input", action="append", metavar="KEY=VALUE", help="an input value (YAML scalar); repeatable")
    @argument("--inputs", metavar="VAR", help="a dict of inputs from the user namespace")
    @argument("--prefer-backend", dest="prefer_backend", metavar="B", help="the backend for steps that name none")
    @argument("--secrets", metavar="VAR", help="a dict of secrets from the namespace (never displayed)")
    @argument("--show", metavar="WHAT", help="comma-separated: graph, resolution, yaml")
    @argument("--quiet", action="store_true", help="show nothing but errors")
    @argument("--approve", action="append", metavar="ID", help="resume: approve this pending request")
    @argument("--reject", action="append", metavar="ID", help="resume: reject this pending request")
    @argument("--event", metavar="JSON", help="resume: the payload of the event the run waits for")
    @argument("--client", metavar="ADDRESS", help="map: a Dask scheduler address, or a Client variable")
    @argument("--from", dest="from_step", metavar="STEP", help="fork: the first step to run again")
    @argument("--file", metavar="PATH", help="cell: also write the cell to this .yaml file and load it from there")
    @argument("--format", metavar="F", help="show: the graph as mermaid, dot, svg, png or text")
    @argument("--xray", nargs="?", const="all", metavar="DEPTH", help="graphs: open sub-workflows (DEPTH levels)")
    @argument("--reasons", action="store_true", help="graphs: say why each step's backend was chosen")
    @argument("--url", "--server", dest="url", metavar="URL", help="publish: the running owf serve to publish to")
    @argument("--version", metavar="V", help="publish: this loaded version of the workflow (default: the highest)")
    @line_cell_magic
    def workflow(self, line: str, cell: str | None = None) -> Any:
        """Define, inspect and run OpenWorkflow manifests.

        As a cell magic, ``%%workflow [NAME] [options]`` followed by YAML (agents, connectors,
        workflows) validates and registers the manifests and shows the graph and the
        backend-resolution table; ``--run`` also executes the workflow. As a line magic,
        ``%workflow list | show [NAME] | run [NAME] | validate [NAME] | backends | trace [VAR] |
        usage [VAR] | publish NAME --url URL | help``. ``%workflow help`` prints examples of each.
        """
        # POSIX-style splitting, so --input topic="two words" is one argument without its quotes
        try:
            argv = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"cannot split the magic's arguments: {exc}") from None
        args = self.workflow.parser.parse_args(argv)
        with graph_scope(args):
            if cell is None:
                return self._line(args, line)
            return self._cell(args, line, cell)

    # -- %%workflow -----------------------------------------------------------------------------

    def _cell(self, args: Any, line: str, cell: str) -> Any:
        if len(args.words) > 1:
            raise UsageError(
                f"%%workflow takes at most one NAME, got {' '.join(args.words)!r} (quote a name with spaces)"
            )
        wanted = args.words[0] if args.words else None
        show = self._show(args)
        source_name = self.tracker.source_name()
        self.sources[source_name] = f"%%workflow {line}\n{cell}"
        load_name, offset = source_name, 1
        if args.file:  # the cell is that file now: diagnostics say flow.yaml:LINE and quote the file
            load_name, offset = write_cell_file(args.file, cell), 0
        saved = self.ow._catalog, self.ow.warnings  # a cell that fails registers nothing
        try:
            items = self.ow.load(cell, name=load_name, line_offset=offset)
        except ManifestError as exc:
            raise CellManifestError(exc, read_source(self.sources)) from None
        workflows = [i for i in items if i.kind == "workflow"]
        problem = None
        if not workflows and args.run:
            problem = "--run needs a workflow in the cell"
        elif (
            wanted is not None
            and workflows
            and not any(i.name == wanted for i in workflows)
            and not self._has_workflow(wanted)
        ):
            names = [i.name for i in workflows]
            best = did_you_mean(wanted, names)
            hint = f" Did you mean '{best}'?" if best else ""
            problem = f"the cell defines no workflow named {wanted!r} (it defines {names}).{hint}"
        if problem is not None:
            self.ow._catalog, self.ow.warnings = saved
            raise UsageError(problem)
        for i in items:
            self.item_sources[_item_key(i)] = self.sources[source_name]
        self._replace(self._cell_key(wanted, items, workflows), items)
        if self.ow.warnings and not (args.quiet or self.settings.quiet):
            for w in self.ow.warnings:
                print(f"warning: {w.format()}")
        if not workflows:
            if not (args.quiet or self.settings.quiet):
                print(f"loaded {_describe(items)}")
            if args.run:
                raise UsageError("--run needs a workflow in the cell")
            return None
        item = next((i for i in workflows if i.name == wanted), None) if wanted else workflows[0]
        if item is None:
            if wanted is not None and self._has_workflow(wanted):
                wf = self._workflow(wanted)
            else:
                names = [i.name for i in workflows]
                best = did_you_mean(wanted or "", names)
                hint = f" Did you mean '{best}'?" if best else ""
                raise UsageError(f"the cell defines no workflow named {wanted!r} (it defines {names}).{hint}")
        else:
            from owf_magics.api import Workflow

            wf = Workflow(self.ow, item)
        self.last_workflow = wf
        prefer = args.prefer_backend or self.settings.prefer_backend
        quiet = args.quiet or self.settings.quiet
        plan = self._plan(wf, prefer)
        if not quiet and not args.run:
            self._display_plan(wf, plan, show)
        if args.run:
            if not quiet and "yaml" in show:
                self._display_yaml(wf)
            return self._run(wf, args, prefer, quiet)
        return None

    def _cell_key(self, wanted: str | None, items: list[Loaded[Any]], workflows: list[Loaded[Any]]) -> str:
        """Which earlier cell this one replaces: the front end's cell id (JupyterLab, Notebook 7 and
        VS Code send one, IPython hands it to `CellTracker`), so an edited cell replaces its renamed
        workflow; else its NAME; else the workflows it defines; else everything it defines."""
        if self.tracker.cell_id:
            return f"cell-id:{self.tracker.cell_id}"
        if wanted:
            return wanted
        header = getattr(self.shell, "parent_header", None) or {}
        cell_id = (header.get("metadata") or {}).get("cellId") if isinstance(header, dict) else None
        if cell_id:
            return f"cell-id:{cell_id}"
        if workflows:
            return ",".join(sorted(i.name for i in workflows))
        return ",".join(sorted(f"{i.kind}:{i.name}" for i in items)) or "<cell>"

    def _replace(self, key: str, items: list[Loaded[Any]]) -> None:
        """Forget manifests this cell defined before and no longer defines (a renamed version, say)."""
        before = self.cells.get(key)
        now = {_item_key(i) for i in items}
        if before is not None:
            elsewhere = {_item_key(i) for k, rec in self.cells.items() if k != key for i in rec.items}
            stale = [i for i in before.items if _item_key(i) not in now | elsewhere]
            if stale:
                self.ow.unload(stale)
        self.cells[key] = _CellRecord(list(items))

    # -- %workflow ------------------------------------------------------------------------------

    def _line(self, args: Any, line: str) -> Any:
        if not args.words:
            print(USAGE)
            return None
        sub, rest = args.words[0], args.words[1:]
        if sub not in SUBCOMMANDS:
            best = did_you_mean(sub, SUBCOMMANDS)
            hint = f" Did you mean '{best}'?" if best else ""
            raise UsageError(f"unknown subcommand {sub!r}; use one of {', '.join(SUBCOMMANDS)}.{hint}")
        if sub == "help":
            print(USAGE)
            return None
        if sub == "list":
            return self._list()
        if sub == "backends":
            return self._backends()
        if sub == "tools":
            return self._tools(args, rest)
        if sub in ("trace", "usage"):
            return self._frame(sub, rest)
        if sub == "validate":
            return self._validate(rest)
        if sub == "resume":
            return self._resume(args, rest)
        if sub in HISTORY_SUBCOMMANDS:
            return history_line(self, args, sub, rest)
        if sub == "load":
            return load_line(self, rest)
        if sub == "publish":
            return publish_line(self.ow, self._ns(), args, rest)
        if sub == "map":
            from owf_magics.notebook.batch_magic import map_line

            return map_line(self.ow, self._ns(), args, rest, self._secrets(args))
        if len(rest) > 1:
            raise UsageError(f"%workflow {sub} takes one workflow NAME (quote names with spaces)")
        wf = self._workflow(rest[0]) if rest else self._default_workflow(sub)
        self.last_workflow = wf
        prefer = args.prefer_backend or self.settings.prefer_backend
        if sub == "show":
            plan = self._plan(wf, prefer)
            if args.format:
                return show_format(self, plan, args.format, args)
            self._display_plan(wf, plan, self._show(args))
            return None
        return self._run(wf, args, prefer, args.quiet or self.settings.quiet)

    def _list(self) -> None:
        rows = []
        for kind, items in (
            ("agent", self.ow.agents()),
            ("connector", self.ow.connectors()),
            ("workflow", [w.item for w in self.ow.workflows()]),
        ):
            for i in items:
                steps = str(len(i.graph.nodes)) if kind == "workflow" and i.graph is not None else ""
                rows.append({"kind": kind, "name": i.name, "ref": i.ref, "steps": steps, "source": i.file})
        columns = ("kind", "name", "ref", "steps", "source")
        if not rows:
            print("nothing is loaded yet: define manifests in a %%workflow cell")
            return
        display(_Table(rows, columns, "owf-list"))

    def _backends(self) -> None:
        rows = []
        for info in self.ow.backends():
            rows.append(
                {
                    "backend": info.name,
                    "installed": "yes" if info.installed else "no",
                    "version": info.version,
                    "runtime": info.runtime or "",
                    "missing": ", ".join(info.missing),
                    "install": "" if info.installed else (info.install_hint or ""),
                    "description": info.description,
                }
            )
        columns = ("backend", "installed", "version", "runtime", "missing", "install", "description")
        display(_Table(rows, columns, "owf-backends"))

    def _tools(self, args: Any, rest: list[str]) -> None:
        from owf_magics.connectors.mcp import describe_tools

        if len(rest) != 1:
            raise UsageError("%workflow tools takes one MCP connector NAME")
        tools = describe_tools(self.ow, rest[0], self._secrets(args))
        rows = [{**t, "input": json.dumps(t["input"], sort_keys=True)} for t in tools]
        display(_Table(rows, ("name", "description", "input"), "owf-tools"))

    def _frame(self, which: str, rest: list[str]) -> Any:
        if len(rest) > 1:
            raise UsageError(f"%workflow {which} takes at most one VAR")
        if rest:
            result = self._ns().get(rest[0])
            if result is None or not hasattr(result, "trace_rows"):
                raise UsageError(f"{rest[0]!r} is not a RunResult in the namespace (bind one with -o VAR)")
            name = rest[0]
        else:
            if self.last_result is None:
                raise UsageError(f"no run yet: run a workflow first, then %workflow {which}")
            result, name = self.last_result, "_owf_last"
        df = result.trace if which == "trace" else result.usage
        frame = shown_frame(df, f"{name}.{which}")
        display(frame)
        return None

    def _validate(self, rest: list[str]) -> None:
        targets = [self._workflow(n) for n in rest] if rest else self.ow.workflows()
        if not targets:
            raise UsageError("no workflow is loaded")
        for wf in targets:
            try:
                plan = wf.plan(prefer_backend=self.settings.prefer_backend)
            except ManifestError as exc:
                raise CellManifestError(exc, self._lookup_for(wf)) from None
            missing = [sid for sid in plan.order if not plan[sid].available]
            text = (
                f"ok: {wf.name} v{wf.version}: {plural(len(plan), 'step')}, backends {', '.join(plan.backends_used())}"
            )
            if missing:
                text += f"; not installed for: {', '.join(missing)}"
            if wf.warnings:
                text += f"; {len(wf.warnings)} warning(s)"
            print(text)
            for w in wf.warnings:
                print(f"  warning: {w.format()}")

    # -- shared ---------------------------------------------------------------------------------

    def _ns(self) -> dict[str, Any]:
        ns: dict[str, Any] = self.shell.user_ns  # type: ignore[union-attr]
        return ns

    def _show(self, args: Any) -> list[str]:
        try:
            return parse_show(args.show) if args.show is not None else self.settings.show_list()
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def _has_workflow(self, name: str) -> bool:
        return any(w.name == name for w in self.ow.workflows())

    def _default_workflow(self, sub: str) -> Workflow:
        """Without a NAME: the workflow of the last cell or command, else the only one loaded."""
        if self.last_workflow is not None and self._has_workflow(self.last_workflow.name):
            return self._workflow(self.last_workflow.name)
        workflows = self.ow.workflows()
        if len(workflows) == 1:
            return workflows[0]
        names = ", ".join(sorted(w.name for w in workflows)) or "none"
        raise UsageError(f"%workflow {sub} NAME: which workflow? (loaded: {names})")

    def _workflow(self, name: str) -> Workflow:
        try:
            return self.ow.workflow(name)
        except OWFError as exc:
            raise UsageError(exc.message) from None

    def _plan(self, wf: Workflow, prefer: str | None) -> Any:
        try:
            plan = wf.plan(prefer_backend=prefer)
            warm(self, plan)  # sub-workflows planned, so every graph view of this plan draws them
            return plan
        except ManifestError as exc:
            raise CellManifestError(exc, self._lookup_for(wf)) from None
        except OWFError as exc:
            raise UsageError(f"{exc.code}: {exc.message}") from None

    def _display_plan(self, wf: Workflow, plan: Any, show: list[str]) -> None:
        if "graph" in show:
            display(GraphView(plan, direction=self.settings.direction))
        if "resolution" in show:
            display(ResolutionView(plan))
        if "yaml" in show:
            self._display_yaml(wf)

    def _display_yaml(self, wf: Workflow) -> None:
        display(_Yaml(wf, self._cell_text(wf)))

    def _cell_text(self, wf: Workflow) -> str | None:
        """The text of the cell that defined `wf`, as written (comments and all), without its
        ``%%workflow`` line; None for a workflow that did not come from a cell."""
        text = self.item_sources.get(_item_key(wf.item))
        return text.split("\n", 1)[1] if text is not None and "\n" in text else text

    def _inputs(self, args: Any, wf: Workflow) -> dict[str, Any]:
        from owf_magics.api import input_pairs

        inputs: dict[str, Any] = {}
        if args.inputs:
            value = self._ns().get(args.inputs)
            if not isinstance(value, dict):
                raise UsageError(
                    f"--inputs {args.inputs}: expected a dict in the namespace, got {type(value).__name__}"
                )
            inputs.update(value)
        try:
            inputs.update(input_pairs(args.input, wf.manifest.inputs))
        except OWFError as exc:
            raise UsageError(exc.message) from None
        return inputs

    def _lookup_for(self, wf: Workflow) -> Any:
        text = self.item_sources.get(_item_key(wf.item))
        if text is not None and wf.item.file.startswith("<"):  # else a file (--file): read from disk
            return read_source({**self.sources, wf.item.file: text})
        return read_source(self.sources)

    def _secrets(self, args: Any) -> dict[str, str] | None:
        if not args.secrets:
            return None
        value = self._ns().get(args.secrets)
        if not isinstance(value, dict):
            kind = type(value).__name__
            raise UsageError(f"--secrets {args.secrets}: expected a dict in the namespace, got {kind}")
        return {str(k): str(v) for k, v in value.items()}

    def _run(self, wf: Workflow, args: Any, prefer: str | None, quiet: bool) -> Any:
        _check_output_name(args)
        from owf_magics.notebook.live import run_with_view

        inputs = self._inputs(args, wf)
        plan = self._plan(wf, prefer)
        try:
            result = run_with_view(
                wf,
                plan,
                inputs,
                prefer,
                settings=self.settings,
                quiet=quiet,
                secrets=self._secrets(args),
                name=args.output,
                bind=lambda continued: self._bind(continued, args.output),
                source=self._cell_text(wf),
            )
        except ManifestError as exc:
            raise CellManifestError(exc, self._lookup_for(wf)) from None
        except OWFError as exc:  # a backend not installed, inputs that do not match...
            raise short(exc) from None
        self._bind(result, args.output)
        if result.status not in ("completed", "waiting_approval"):
            raise WorkflowRunError(result, wf, self._lookup_for(wf), args.output)
        return None

    def _bind(self, result: RunResult, output: str | None) -> None:
        """The last run, and -o VAR: bound after a run, and again when the live view continues it."""
        self.last_result = result
        self._ns()["_owf_last"] = result
        if output:
            self._ns()[output] = result

    def _resume(self, args: Any, rest: list[str]) -> Any:
        from IPython.display import display

        from owf_magics.api import resume_answers

        _check_output_name(args)
        from owf_magics.notebook.views.display import RunView, still_waiting

        if len(rest) > 1:
            raise UsageError("%workflow resume takes one RUN_ID")
        last = getattr(self, "last_result", None)
        run_id = rest[0] if rest else (last.run_id if last is not None else None)
        if run_id is None:
            raise UsageError("%workflow resume needs a RUN_ID (no run yet in this kernel)")
        approvals, event = resume_answers(args.approve, args.reject, args.event)
        try:
            if not approvals and event is None and still_waiting(self.ow, run_id):
                return None  # without answers: what it waits for is printed, nothing changes
            result = self.ow.resume(run_id, approvals=approvals, event=event, secrets=self._secrets(args))
        except OWFError as exc:
            raise short(exc) from None
        self._bind(result, args.output)
        wf = self.ow.workflow(result.workflow)
        if not (args.quiet or self.settings.quiet):
            display(RunView(result, wf.plan(), name=args.output))
        if result.status not in ("completed", "waiting_approval"):
            raise WorkflowRunError(result, wf, self._lookup_for(wf), args.output)
        return None


def _check_output_name(args: Any) -> None:
    if args.output and not str(args.output).isidentifier():
        raise UsageError(f"-o takes a Python variable name, got {args.output!r}")


def _item_key(item: Loaded[Any]) -> tuple[str, str, str, str]:
    return (item.kind, item.namespace, item.name, item.version)


def _describe(items: list[Loaded[Any]]) -> str:
    counts: dict[str, int] = {}
    for i in items:
        counts[i.kind] = counts.get(i.kind, 0) + 1
    return ", ".join(f"{n} {k}{'s' if n != 1 else ''}" for k, n in counts.items()) or "nothing"


class _Table:
    """A small table display object (HTML and text)."""

    def __init__(self, rows: list[dict[str, Any]], columns: tuple[str, ...], css: str) -> None:
        self.rows, self.columns, self.css = rows, columns, css

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {
            "text/plain": text_table(self.rows, self.columns),
            "text/html": html_table(self.rows, self.columns, css_class=self.css),
        }


class _Yaml:
    """A workflow's YAML: its cell's own text when it came from one, else its canonical manifest."""

    def __init__(self, wf: Workflow, text: str | None = None) -> None:
        self.text = text or yaml.safe_dump(
            wf.manifest.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True),
            sort_keys=False,
            allow_unicode=True,
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {
            "text/plain": self.text,
            "text/html": f'<pre class="owf-yaml">{html.escape(self.text)}</pre>',
        }


# -- extension entry points ---------------------------------------------------------------------


def load_ipython_extension(ip: InteractiveShell) -> None:
    """Register the magics, the ``OWF`` configurable and the ``%%workflow`` body completer."""
    from owf_magics.notebook.complete import install_completer

    if getattr(ip, "_owf_magics", None) is not None:
        return
    settings = OWF(parent=ip)
    apply_pyproject(settings, find_pyproject())
    magics = WorkflowMagics(ip, settings)
    ip.register_magics(magics)
    from owf_magics.notebook.agent_magic import AgentMagics

    ip.register_magics(AgentMagics(ip, lambda: magics.ow))  # %%agent, sharing the shell's registry
    configurables: list[Any] = ip.configurables
    configurables.append(settings)
    install_completer(ip, magics)
    magics.tracker.install()
    register_frames(ip)  # the project's DataFrames display truncated (head and tail), others as pandas does
    setattr(ip, "_owf_magics", magics)  # noqa: B010 - the shell has no such attribute to type


def unload_ipython_extension(ip: InteractiveShell) -> None:
    """Remove what `load_ipython_extension` added (the registry is dropped)."""
    from owf_magics.notebook.complete import uninstall_completer

    magics = getattr(ip, "_owf_magics", None)
    if magics is None:
        return
    for kind in ("line", "cell"):
        ip.magics_manager.magics[kind].pop("workflow", None)
        ip.magics_manager.magics[kind].pop("agent", None)
    configurables: list[Any] = ip.configurables
    if magics.settings in configurables:
        configurables.remove(magics.settings)
    uninstall_completer(ip)
    magics.tracker.uninstall()
    if magics._ow is not None:  # its run store and threads go with it
        magics._ow.close()
    setattr(ip, "_owf_magics", None)  # noqa: B010 - see load_ipython_extension


def registry(ip: InteractiveShell | None = None) -> OpenWorkflow:
    """The `OpenWorkflow` that ``%%workflow`` cells of this shell load into."""
    if ip is None:
        from IPython import get_ipython

        ip = get_ipython()
    magics = getattr(ip, "_owf_magics", None)
    if magics is None:
        raise UsageError("owf_magics is not loaded: run %load_ext owf_magics first")
    ow: OpenWorkflow = magics.ow
    return ow
