"""Safe YAML/JSON loading that keeps the line and column of every node.

Documents are composed by PyYAML's safe composer (libyaml when available) and constructed here
into `LMap`/`LSeq`, which are plain ``dict``/``list`` subclasses that remember where each key and
item came from. Only JSON-like data is built: any tag asking for a Python object is refused, and
duplicate keys are errors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from owf_magics.errors import Diagnostic, DiagnosticBag

try:  # libyaml's composer is several times faster; the pure-Python one is identical otherwise
    _Loader: type[Any] = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
#: Upper bound on constructed nodes per document, counting alias re-use (stops "billion laughs").
MAX_NODES = 2_000_000
#: Upper bound on nesting (lists and mappings inside each other); deeper documents are refused.
MAX_DEPTH = 100
#: Upper bound on a manifest file's size (a path may name a device or a huge file by mistake).
MAX_FILE_BYTES = 16 * 2**20

Pos = tuple[int, int]  # (line, column), both 1-based


class LMap(dict[str, Any]):
    """A dict that knows the position of itself and of each key."""

    __slots__ = ("key_pos", "pos")

    def __init__(self, *args: Any, pos: Pos | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pos: Pos | None = pos
        self.key_pos: dict[str, Pos] = {}


class LSeq(list[Any]):
    """A list that knows the position of itself and of each item."""

    __slots__ = ("item_pos", "pos")

    def __init__(self, *args: Any, pos: Pos | None = None) -> None:
        super().__init__(*args)
        self.pos: Pos | None = pos
        self.item_pos: list[Pos] = []


def position_of(root: Any, path: tuple[str | int, ...]) -> Pos | None:
    """The position of the deepest node along `path` that has one."""
    best: Pos | None = getattr(root, "pos", None)
    node = root
    for part in path:
        if isinstance(node, LMap) and isinstance(part, str) and part in node:
            best = node.key_pos.get(part, best)
            node = node[part]
        elif isinstance(node, LSeq) and isinstance(part, int) and 0 <= part < len(node):
            if part < len(node.item_pos):
                best = node.item_pos[part]
            node = node[part]
        else:
            break
        inner = getattr(node, "pos", None)
        if inner is not None and not isinstance(node, LMap | LSeq):
            best = inner
    return best


@dataclass(slots=True)
class SourceDocument:
    """One YAML/JSON document and where it came from."""

    data: Any
    file: str
    index: int  # position in a multi-document stream
    line: int  # first line of the document


_STR = "tag:yaml.org,2002:str"
_SAFE_SCALARS = {
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    _STR,
    "tag:yaml.org,2002:timestamp",
}
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"


class _Builder:
    """Turns composed YAML nodes into LMap/LSeq/scalars, collecting diagnostics."""

    def __init__(self, file: str, line_offset: int, bag: DiagnosticBag) -> None:
        self.file = file
        self.offset = line_offset
        self.bag = bag
        self.scalars = yaml.constructor.SafeConstructor()
        self.memo: dict[int, tuple[Any, int]] = {}
        self.budget = MAX_NODES
        self.failed = False
        self.refused = False  # an unsafe tag was found: the document is dropped, not validated
        self.active: set[int] = set()  # the collections being built, outermost first

    def pos(self, node: yaml.Node) -> Pos:
        return (node.start_mark.line + 1 + self.offset, node.start_mark.column + 1)

    def error(self, code: str, message: str, node: yaml.Node, hint: str | None = None) -> None:
        line, col = self.pos(node)
        self.bag.add(Diagnostic(code, message, file=self.file, line=line, column=col, hint=hint))
        self.failed = True

    def build(self, node: yaml.Node) -> Any:
        cached = self.memo.get(id(node))
        if cached is not None:  # an alias: re-use the object, but charge its size
            value, size = cached
            self.charge(size, node)
            return value
        before = self.budget
        if isinstance(node, yaml.ScalarNode):
            value = self.scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            self.enter(node)
            value = self.sequence(node)
            self.active.discard(id(node))
        elif isinstance(node, yaml.MappingNode):
            self.enter(node)
            value = self.mapping(node)
            self.active.discard(id(node))
        else:  # pragma: no cover - PyYAML has no other node kinds
            raise TypeError(node)
        self.charge(1, node)
        self.memo[id(node)] = (value, max(1, before - self.budget))
        return value

    def enter(self, node: yaml.Node) -> None:
        """Refuse a collection that contains itself (through an alias) or nests too deep."""
        if id(node) in self.active:
            self.error(
                "YAML_SYNTAX",
                "an alias refers to a collection that contains it (a recursive structure)",
                node,
                "manifests are trees: repeat the data instead of aliasing an enclosing anchor",
            )
            raise _Abort
        if len(self.active) >= MAX_DEPTH:
            self.error(
                "YAML_SYNTAX", f"the document is nested more than {MAX_DEPTH} levels deep", node, "flatten the data"
            )
            raise _Abort
        self.active.add(id(node))

    def charge(self, n: int, node: yaml.Node) -> None:
        self.budget -= n
        if self.budget < 0:
            self.error(
                "YAML_SYNTAX",
                f"the document expands to more than {MAX_NODES:,} nodes",
                node,
                "remove the recursive anchors and aliases (this looks like an alias bomb)",
            )
            raise _Abort

    def unsafe(self, node: yaml.Node) -> None:
        self.refused = True
        self.error(
            "UNSAFE_YAML",
            f"the tag {node.tag!r} is not allowed: manifests are plain data and nothing is constructed",
            node,
            "remove the tag; only strings, numbers, booleans, null, lists and mappings are accepted",
        )

    def scalar(self, node: yaml.ScalarNode) -> Any:
        tag = node.tag
        if tag not in _SAFE_SCALARS:
            self.unsafe(node)
            return None
        if tag in ("tag:yaml.org,2002:timestamp", _STR):
            return node.value  # dates stay text: JSON has no date type
        try:
            return self.scalars.construct_object(node)
        except (ValueError, TypeError, OverflowError, yaml.YAMLError):  # e.g. a 5,000-digit integer
            digits = sum(ch.isdigit() for ch in node.value)
            message = (
                f"the number has {digits:,} digits, more than this process converts"
                if digits > 100
                else f"the value {node.value[:80]!r} cannot be read as a {tag.rsplit(':', 1)[-1]}"
            )
            self.error("INVALID_VALUE", message, node, "write it as a quoted string, or use a smaller number")
            return None

    def sequence(self, node: yaml.SequenceNode) -> LSeq:
        if node.tag != _SEQ:
            self.unsafe(node)
        out = LSeq(pos=self.pos(node))
        for item in node.value:
            out.item_pos.append(self.pos(item))
            out.append(self.build(item))
        return out

    def mapping(self, node: yaml.MappingNode) -> LMap:
        if node.tag != _MAP:
            self.unsafe(node)
        out = LMap(pos=self.pos(node))
        merged: set[str] = set()  # keys that came from '<<' (a key written here overrides them)
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merged |= self.merge(out, value_node)
                continue
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.tag not in _SAFE_SCALARS:
                    self.unsafe(key_node)
                key = key_node.value  # keys are text, whatever they look like (`on`, `1`, `true`)
            elif key_node.tag not in (_MAP, _SEQ):
                self.unsafe(key_node)
                continue
            else:
                self.error("YAML_SYNTAX", "a mapping key must be a plain scalar", key_node)
                continue
            if key in out and key not in merged:
                first = out.key_pos[key][0]
                self.error(
                    "DUPLICATE_KEY",
                    f"the key '{key}' appears twice in one mapping (first on line {first})",
                    key_node,
                    "remove one of them or merge their contents",
                )
                continue
            merged.discard(key)
            out.key_pos[key] = self.pos(key_node)
            out[key] = self.build(value_node)
        return out

    def merge(self, out: LMap, value_node: yaml.Node) -> set[str]:
        """Add the keys of the mapping(s) after '<<' that `out` lacks; returns the keys added."""
        added: set[str] = set()
        if isinstance(value_node, yaml.SequenceNode) and value_node.tag != _SEQ:  # not built as a whole below
            self.unsafe(value_node)
            return added
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for src in sources:
            built = self.build(src)
            if not isinstance(built, LMap):
                self.error("YAML_SYNTAX", "a merge key '<<' needs a mapping or a list of mappings", src)
                continue
            for k, v in built.items():
                if k not in out:  # explicit keys win over merged ones
                    out[k] = v
                    out.key_pos[k] = built.key_pos.get(k, self.pos(src))
                    added.add(k)
        return added


class _Abort(Exception):
    pass


def _could_nest_too_deep(text: str) -> bool:
    """Whether `text` has enough brackets and indicators to nest deeper than `_too_deep` allows.

    Below that, libyaml's composer recurses at most that deep and `_Builder` checks `MAX_DEPTH`
    itself, so ordinary documents are composed without an extra pass over their events.
    """
    return sum(text.count(c) for c in "[{-?:") > 10 * MAX_DEPTH


#: The pure-Python rescan after a C parser error reads at most this many characters (about a
#: second): beyond it, the library's error (or, for libyaml's own nesting limit, ours at its mark)
#: is reported without the slow pass. See `_too_deep`.
RESCAN_LIMIT = 200_000

_OPENERS = "[{-?:"  # every collection start needs one of these at or after it, before its first item


@dataclass(slots=True)
class _Scan:
    mark: Any = None  # where nesting first passes MAX_DEPTH, or None
    error: Exception | None = None  # the error the parser stopped on
    depth: int = 0  # the nesting depth when it stopped
    seen: int = 0  # the text index after the last event the parser produced


def _first_too_deep(loader: type[Any], text: str) -> _Scan:
    """Scan `text`'s parser events for nesting deeper than `MAX_DEPTH` (events do not recurse)."""
    scan = _Scan()
    parser = None
    try:
        parser = loader(text)  # the pure-Python reader checks the characters here already
        while parser.check_event():
            event = parser.get_event()
            scan.seen = event.end_mark.index
            if isinstance(event, yaml.CollectionStartEvent):
                scan.depth += 1
                if scan.depth > MAX_DEPTH:
                    scan.mark = event.start_mark
                    return scan
            elif isinstance(event, yaml.CollectionEndEvent):
                scan.depth -= 1
    except (yaml.YAMLError, ValueError, TypeError) as exc:
        scan.error = exc
    finally:
        if parser is not None:
            parser.dispose()
    return scan


def _libyaml_nest_limit() -> int | None:
    """libyaml's own nesting limit when this PyYAML can tell it (it may be set process-wide)."""
    getter = getattr(getattr(yaml, "_yaml", None), "_get_max_nest_level", None)
    try:
        limit = getter() if getter is not None else None
    except Exception:  # pragma: no cover - an older binding
        return None
    return limit if isinstance(limit, int) and limit > 0 else None


def _too_deep(text: str, file: str, line_offset: int) -> Diagnostic | None:
    """A diagnostic when `text` nests deeper than `MAX_DEPTH`, found from parser events.

    libyaml's composer recurses in C once per level and overflows the stack on very deep input
    (a crash, not an exception), so deep text must be refused before it is composed. Events do
    not recurse.

    The limit, its message and its position are ours whatever the YAML library's own limits are.
    libyaml 0.2.6 (in PyYAML 6.0.4's wheels) refuses nesting deeper than its own maximum (1,000
    by default, settable process-wide), and its scanner reads up to 1,024 characters ahead of the
    events, so on ``[[[[...`` it stops with its own error before the events reach our limit. So
    when the C parser stops on an error that could hide nesting past our limit, the text is scanned
    again with PyYAML's pure-Python parser, which has no nesting limit and stops at the same syntax
    errors. "Could hide" is bounded cheaply: every collection start needs one of ``[{-?:`` in the
    text, so the depth the events had reached plus those characters between the last event and the
    error bounds the depth at the error. The pure-Python pass is slow (about 5 s a megabyte), so it
    runs only when the error is within `RESCAN_LIMIT` characters; past that, libyaml's own nesting
    limit is reported in our words at its mark, and any other error is left to the library.
    """
    scan = _first_too_deep(_Loader, text)
    mark = scan.mark
    if mark is None and scan.error is not None and _Loader is not yaml.SafeLoader:
        problem = getattr(scan.error, "problem_mark", None)
        at = problem.index if problem is not None and isinstance(problem.index, int) else len(text)
        window = text[scan.seen : at + 16]
        bound = scan.depth + sum(window.count(c) for c in _OPENERS)
        lib_limit = _libyaml_nest_limit()
        limit = MAX_DEPTH if lib_limit is None else min(MAX_DEPTH, lib_limit)
        if bound > limit:
            if at <= RESCAN_LIMIT:
                mark = _first_too_deep(yaml.SafeLoader, text).mark
            elif lib_limit is not None and MAX_DEPTH <= lib_limit < bound and problem is not None:
                mark = problem  # libyaml's own nesting limit, past ours: reported as ours
    if mark is None:
        return None
    return Diagnostic(
        "YAML_SYNTAX",
        f"the document is nested more than {MAX_DEPTH} levels deep",
        file=file,
        line=mark.line + 1 + line_offset,
        column=mark.column + 1,
        hint="flatten the data",
    )


def _yaml_error(exc: yaml.YAMLError, file: str, offset: int, is_json: bool, text: str) -> Diagnostic:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    context_mark = getattr(exc, "context_mark", None)
    if mark is not None and context_mark is not None and mark.line >= len(text.rstrip().splitlines()):
        mark = context_mark  # ran off the end (an unclosed quote or bracket): point where it opens
    line = mark.line + 1 + offset if mark is not None else None
    col = mark.column + 1 if mark is not None else None
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    if context and context_mark is not None and mark is not None and context_mark.line != mark.line:
        context = f"{context} (line {context_mark.line + 1 + offset})"
    message = f"{context}, {problem}" if context else str(problem)
    hint = "check the indentation and quoting around this line"
    if isinstance(exc, yaml.reader.ReaderError) and isinstance(exc.character, int):
        at = text.find(chr(exc.character))  # the reader stops at the first one (its position may count bytes)
        if at >= 0:
            line, col = text.count("\n", 0, at) + 1 + offset, at - text.rfind("\n", 0, at)
        message = f"unacceptable character #x{exc.character:04x}: {exc.reason}"
        hint = "remove the character, or write it as an escape in a double-quoted string"
    bad_line = text.splitlines()[mark.line] if mark is not None and mark.line < len(text.splitlines()) else ""
    if is_json:
        try:
            json.loads(text)
        except json.JSONDecodeError as jerr:
            message = jerr.msg
            line, col = jerr.lineno + offset, jerr.colno
        except (RecursionError, ValueError, MemoryError):  # json's own limits: keep the YAML parser's message
            pass
        if "//" in text or "/*" in text:
            hint = "JSON does not allow comments: remove them, or write the manifest as YAML"
    elif "\t" in text and ("\t" in (problem or "") + message or "\t" in bad_line[: (mark.column if mark else 0) + 1]):
        hint = "YAML does not allow tabs for indentation: use spaces"
    return Diagnostic("YAML_SYNTAX", message, file=file, line=line, column=col, hint=hint)


def parse_text(
    text: str,
    *,
    file: str = "<string>",
    line_offset: int = 0,
    bag: DiagnosticBag,
    is_json: bool | None = None,
) -> list[SourceDocument]:
    """Parse YAML (multi-document) or JSON text into positioned documents.

    Args:
        text: The manifest text.
        file: A name for diagnostics (a path, ``<string>`` or ``<cell>``).
        line_offset: Added to every line, for text that starts inside a larger file or cell.
        bag: Receives every problem; nothing is raised.
        is_json: Treat the text as JSON (better messages for JSON mistakes); guessed when None.
    """
    if is_json is None:
        is_json = file.endswith(".json") or text.lstrip().startswith("{")
    docs: list[SourceDocument] = []
    builder = _Builder(file, line_offset, bag)
    scanned = _could_nest_too_deep(text)
    deep = _too_deep(text, file, line_offset) if scanned else None
    if deep is not None:
        bag.add(deep)
        return docs
    try:
        loader = _Loader(text)
        try:
            index = 0
            while loader.check_node():
                node = loader.get_node()
                if node is None:  # an empty document
                    continue
                line = node.start_mark.line + 1 + line_offset
                try:
                    data = builder.build(node)
                except _Abort:
                    return []
                builder.memo.clear()
                builder.budget = MAX_NODES
                if builder.refused:  # nothing of a document with an unsafe tag is used
                    builder.refused = False
                    index += 1
                    continue
                docs.append(SourceDocument(data, file, index, line))
                index += 1
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        # the library may have stopped on a nesting limit of its own (lower than ours, or set
        # process-wide): when the text nests deeper than ours before its error, ours is reported
        deep = None if scanned else _too_deep(text, file, line_offset)
        bag.add(deep or _yaml_error(exc, file, line_offset, is_json, text))
        return []
    except (ValueError, TypeError) as exc:  # e.g. libyaml rejecting control characters
        at = exc.start if isinstance(exc, UnicodeEncodeError) else None
        line = text.count("\n", 0, at) + 1 + line_offset if at is not None else None
        bag.add(Diagnostic("YAML_SYNTAX", str(exc), file=file, line=line, hint="remove control characters"))
        return []
    return docs


def iter_manifest_files(path: Path) -> Iterator[Path]:
    """Manifest files under a directory (sorted, hidden folders skipped), or the file itself."""
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
            for name in sorted(files):
                if name.endswith(MANIFEST_SUFFIXES):
                    yield Path(root) / name
    else:
        yield path


def parse_path(path: str | os.PathLike[str], *, bag: DiagnosticBag) -> list[SourceDocument]:
    """Parse a manifest file, or every manifest file under a directory."""
    p = Path(path)
    docs: list[SourceDocument] = []
    if not p.exists():
        bag.add(Diagnostic("YAML_SYNTAX", f"no such file or directory: {p}", file=str(p)))
        return docs
    for f in iter_manifest_files(p):
        try:
            with f.open("rb") as handle:  # bounded: a path may name /dev/zero or a huge file
                raw = handle.read(MAX_FILE_BYTES + 1)
            if len(raw) > MAX_FILE_BYTES:
                bag.add(
                    Diagnostic(
                        "YAML_SYNTAX",
                        f"the file is larger than {MAX_FILE_BYTES // 2**20} MB; manifests are not that big",
                        file=str(f),
                        hint="split it into several files, or check the path",
                    )
                )
                continue
            text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # as text mode reads it
        except (OSError, UnicodeDecodeError) as exc:
            bag.add(Diagnostic("YAML_SYNTAX", f"cannot read the file: {exc}", file=str(f)))
            continue
        docs.extend(parse_text(text, file=str(f), bag=bag, is_json=f.suffix == ".json"))
    return docs


def looks_like_path(source: str) -> bool:
    """True when a string names a manifest file or directory rather than holding manifest text."""
    if "\n" in source or len(source) > 4096:
        return False
    stripped = source.strip()
    if not stripped or stripped[0] in "{[":
        return False
    if stripped.endswith(MANIFEST_SUFFIXES):
        return True
    try:
        return Path(stripped).exists()
    except OSError:
        return False
