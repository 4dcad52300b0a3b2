"""Runtime helpers of the DOCUMENT_SPLITTER and CONVERSATION_MEMORY nodes, called as ``function``
handlers of the converted flow's ``openflow/ops`` connector.

Pure functions of plain JSON values (plus reading the document file), importing nothing from the
package, like ``ops.py``.

- DOCUMENT_SPLITTER: the protocol does not define it and the SDK renders PDF pages to images; we
  split text (a file path or inline ``text``) into chunks of at most ``chunk_size`` characters,
  consecutive chunks sharing up to ``chunk_overlap`` characters, cutting at the first of
  ``separators`` (default paragraph, line, space, character) that makes pieces small enough.
- CONVERSATION_MEMORY: the SDK's six operations (``append, load, clear, slice, serialize,
  deserialize``) on a message list kept in a flow variable, with ``max_messages``.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

DEFAULT_SEPARATORS = ("\n\n", "\n", " ", "")
MEMORY_OPERATIONS = ("append", "load", "clear", "slice", "serialize", "deserialize")


def _int(config: dict[str, Any], key: str, default: int) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"config.{key} must be a number, got {value!r}")
    return int(value)


def _pieces(text: str, size: int, separators: list[str]) -> list[str]:
    """`text` cut into pieces of at most `size` characters at the coarsest separator that works;
    separators are kept at the end of the piece before them."""
    if len(text) <= size:
        return [text] if text else []
    for i, sep in enumerate(separators):
        if sep == "":
            return [text[j : j + size] for j in range(0, len(text), size)]
        if sep not in text:
            continue
        parts = text.split(sep)
        out: list[str] = []
        for k, part in enumerate(parts):
            piece = part + (sep if k < len(parts) - 1 else "")
            if len(piece) <= size:
                if piece:
                    out.append(piece)
            else:
                out.extend(_pieces(piece, size, separators[i + 1 :] or [""]))
        return out
    return [text[j : j + size] for j in range(0, len(text), size)]


def split_text(text: str, chunk_size: int = 1000, chunk_overlap: int = 200, separators: Any = None) -> list[str]:
    """Chunks of `text` (see the module docstring); whitespace at chunk ends is trimmed."""
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if chunk_overlap < 0 or chunk_overlap >= chunk_size:
        raise ValueError(f"chunk_overlap must be at least 0 and less than chunk_size, got {chunk_overlap}")
    seps = [str(s) for s in separators] if isinstance(separators, list) else list(DEFAULT_SEPARATORS)
    chunks: list[str] = []
    current: list[str] = []
    length = 0
    for piece in _pieces(text, chunk_size, seps):
        if current and length + len(piece) > chunk_size:
            chunk = "".join(current).strip()
            if chunk:
                chunks.append(chunk)
            while current and (length > chunk_overlap or length + len(piece) > chunk_size):
                length -= len(current.pop(0))
        current.append(piece)
        length += len(piece)
    chunk = "".join(current).strip()
    if chunk:
        chunks.append(chunk)
    return chunks


def document_splitter(document: Any = None, text: Any = None, config: Any = None) -> dict[str, Any]:
    """The DOCUMENT_SPLITTER node: ``{type, filename, size, chunk_count, chunks: [{index, text}]}``."""
    config = config if isinstance(config, dict) else {}
    filename = None
    if text is None:
        if not isinstance(document, str) or not document:
            raise ValueError("DOCUMENT_SPLITTER needs 'document' (a file path) or input 'text'")
        path = Path(document)
        if not path.is_file():
            raise ValueError(f"document file not found: {document}")
        if path.suffix.lower() == ".pdf":
            raise ValueError("PDF documents are not split by this engine (the SDK renders pages to images)")
        text = path.read_text(encoding="utf-8", errors="replace")
        filename = path.name
    text = str(text)
    size = _int(config, "chunk_size", 1000)
    overlap = _int(config, "chunk_overlap", min(200, size // 5))  # the default never exceeds the size
    chunks = split_text(text, size, overlap, config.get("separators"))
    return {
        "type": "text",
        "filename": filename,
        "size": len(text),
        "chunk_count": len(chunks),
        "chunks": [{"index": i, "text": c} for i, c in enumerate(chunks)],
    }


class _Sessions:
    """Sessions in this process, when the run has no store that keeps them."""

    def __init__(self) -> None:
        self.messages: dict[str, list[dict[str, Any]]] = {}

    def get_messages(self, session_id: str) -> list[dict[str, Any]]:
        return list(self.messages.get(session_id, []))

    def append_messages(self, session_id: str, messages: list[dict[str, Any]], **_: Any) -> None:
        self.messages.setdefault(session_id, []).extend(messages)

    def clear_session(self, session_id: str) -> None:
        self.messages.pop(session_id, None)


_PROCESS_SESSIONS = _Sessions()
_SESSION_LOCK = threading.Lock()


def conversation_memory(
    operation: str = "append", current: Any = None, input: Any = None, config: Any = None, context: Any = None
) -> dict[str, Any]:
    """The CONVERSATION_MEMORY node: the SDK's output for the operation plus ``messages``, the
    variable's new value. With ``config.session_id`` the list is the session's in the run store
    (``context.metadata["sessions"]``, else this process) and outlives the run."""
    config = config if isinstance(config, dict) else {}
    session = config.get("session_id")
    if session in (None, ""):
        return _memory(operation, current, input, config)
    store = (getattr(context, "metadata", None) or {}).get("sessions") or _PROCESS_SESSIONS
    sid = f"openflow:{session}"
    with _SESSION_LOCK:
        before = [dict(m) for m in store.get_messages(sid)]
        out = _memory(operation, before, input, config)
        after = out["messages"]
        if after[: len(before)] == before:
            store.append_messages(sid, after[len(before) :], agent=None, run_id=getattr(context, "run_id", None))
        else:
            store.clear_session(sid)
            store.append_messages(sid, after, agent=None, run_id=getattr(context, "run_id", None))
    return {**out, "session_id": str(session)}


def _memory(operation: str, current: Any, input: Any, config: dict[str, Any]) -> dict[str, Any]:
    data = input if isinstance(input, dict) else {}
    messages = list(current) if isinstance(current, list) else []
    out: dict[str, Any]
    if operation == "append":
        message = {"role": str(data.get("role") or "user"), "content": data.get("content") or ""}
        messages.append(message)
        limit = config.get("max_messages")
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            messages = messages[-limit:]
        out = {"last_message": message}
    elif operation == "load":
        loaded = data.get("messages") or []
        if not isinstance(loaded, list):
            raise ValueError("CONVERSATION_MEMORY load needs input.messages to be an array")
        messages, out = list(loaded), {"loaded": True}
    elif operation == "clear":
        messages, out = [], {"cleared": True}
    elif operation == "slice":
        start = config.get("slice_start") or 0
        end = config.get("slice_end") or len(messages)
        messages, out = messages[int(start) : int(end)], {"sliced": True}
    elif operation == "serialize":
        out = {"serialized": json.dumps(messages, separators=(",", ":"))}
    elif operation == "deserialize":
        try:
            loaded = json.loads(str(data.get("serialized") or "[]"))
        except ValueError as exc:
            raise ValueError(f"CONVERSATION_MEMORY deserialize: input.serialized is not JSON ({exc})") from None
        if not isinstance(loaded, list):
            raise ValueError("CONVERSATION_MEMORY deserialize needs a JSON array")
        messages, out = loaded, {"deserialized": True}
    else:
        raise ValueError(f"unknown CONVERSATION_MEMORY operation '{operation}' (one of {', '.join(MEMORY_OPERATIONS)})")
    return {**out, "message_count": len(messages), "messages": messages}


# -- the LLM node's builtin tools set_variable / get_variable --------------------------------------
# The SDK declares them (never runs them). Here the flow's variables are copied into a table for
# the LLM step before it runs (`seed_variables`), the tools read and write that table (keyed by run
# and step), and `collect_variables` hands the result to the nodes after it.

_TABLES: dict[tuple[str, str], dict[str, Any]] = {}
_LOCK = threading.Lock()


def _key(context: Any, node: str | None = None) -> tuple[str, str]:
    """The table of one LLM node in one run and loop iteration: the step key's iterations (``[2]``
    in ``think__seed[2]``, ``outer.think[1][2]``, from ``context.metadata["step_key"]``) keep
    parallel iterations apart."""
    step_key = str((getattr(context, "metadata", None) or {}).get("step_key") or "")
    head, _, last = step_key.rpartition(".")
    at = last.find("[")
    where = (head + "." if head else "", last[at:] if at >= 0 else "")
    return (str(getattr(context, "run_id", "")), where[0] + str(node or getattr(context, "node_id", "")) + where[1])


def seed_variables(node: str = "", values: Any = None, context: Any = None) -> dict[str, Any]:
    with _LOCK:
        _TABLES[_key(context, node)] = dict(values) if isinstance(values, dict) else {}
    return {"variables": dict(values) if isinstance(values, dict) else {}}


def set_variable(name: str = "", value: Any = None, context: Any = None) -> dict[str, Any]:
    """Set a flow variable (the LLM node's builtin tool)."""
    with _LOCK:
        _TABLES.setdefault(_key(context), {})[str(name)] = value
    return {"success": True, "name": name, "value": value}


def get_variable(name: str = "", context: Any = None) -> dict[str, Any]:
    """Read a flow variable (the LLM node's builtin tool)."""
    with _LOCK:
        table = _TABLES.get(_key(context), {})
        found = str(name) in table
        return {"name": name, "value": table.get(str(name)), "found": found}


def collect_variables(node: str = "", context: Any = None) -> dict[str, Any]:
    with _LOCK:
        return {"variables": _TABLES.pop(_key(context, node), {})}


# -- what a FOR_EACH's iterations did, folded after the loop (as `ops.fold` does for UPDATE_VARIABLE)


def _iterations(loop: Any) -> list[dict[str, Any]]:
    """Each iteration's collected row (``{item, index, results, variables?}``), in item order;
    iterations that did not finish give nothing."""
    rows = loop.get("results") if isinstance(loop, dict) else None
    out: list[dict[str, Any]] = []
    for row in rows or []:
        output = row.get("output") if isinstance(row, dict) else None
        result = output.get("result") if isinstance(output, dict) else None
        if isinstance(result, dict):
            out.append(result)
    return out


def fold_memory(
    operation: str = "append",
    current: Any = None,
    loop: Any = None,
    update: str = "",
    config: Any = None,
    context: Any = None,
) -> dict[str, Any]:
    """A memory variable after a FOR_EACH: the node ``update``'s operation of each iteration applied
    in item order to the value before the loop (an append appends each iteration's message, a load
    or deserialize takes the list it gave, a clear empties, a slice slices). A memory kept in a
    session (``config.session_id``) is the session's list, which the iterations already wrote."""
    config = dict(config) if isinstance(config, dict) else {}
    session = config.get("session_id")
    if session not in (None, ""):
        store = (getattr(context, "metadata", None) or {}).get("sessions") or _PROCESS_SESSIONS
        with _SESSION_LOCK:
            kept = [dict(m) for m in store.get_messages(f"openflow:{session}")]
        return {"messages": kept, "message_count": len(kept), "session_id": str(session)}
    messages = list(current) if isinstance(current, list) else []
    for row in _iterations(loop):
        out = (row.get("results") or {}).get(update)
        if not isinstance(out, dict):
            continue  # the node did not run in that iteration (a branch not taken)
        if operation == "append" and isinstance(out.get("last_message"), dict):
            messages = _memory("append", messages, out["last_message"], config)["messages"]
        elif operation in ("load", "deserialize"):
            messages = list(out.get("messages") or [])
        elif operation == "clear":
            messages = []
        elif operation == "slice":
            messages = _memory("slice", messages, None, config)["messages"]
    return {"messages": messages, "message_count": len(messages)}


def fold_variables(current: Any = None, loop: Any = None, node: str = "") -> dict[str, Any]:
    """The flow's variables after a FOR_EACH whose LLM node ``node`` has ``set_variable``: what each
    iteration's calls changed (its table against the values it was seeded with) applied in item
    order to `current`, the values after the loop otherwise (the last iteration that set a
    variable wins)."""
    values = dict(current) if isinstance(current, dict) else {}
    for row in _iterations(loop):
        tables = (row.get("variables") or {}).get(node)
        if not isinstance(tables, dict):
            continue
        seed, table = tables.get("seed") or {}, tables.get("set") or {}
        for name, value in table.items() if isinstance(table, dict) else ():
            if not isinstance(seed, dict) or name not in seed or value != seed[name]:
                values[name] = value
    return {"variables": values}
