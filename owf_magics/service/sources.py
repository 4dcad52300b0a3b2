"""AgentFlow sources as service resources: which config fields are credentials (write-only, stored
encrypted, read back as ``***``), and how a stored spec refers to them by id.

An AgentFlow spec published to the service names a source in a node's ``metadata.source`` (or
lists ``{id: ...}`` alone in its ``sources``) without defining it: when the spec is checked or run,
the tenant's stored source of that id is put in its ``sources`` (`attach`). At publication the
credentials are masked; at run time they are decrypted and handed to the run as secrets too, so
the engine redacts them from outputs, events, traces and the store.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from owf_magics.errors import DiagnosticBag
from owf_magics.manifest.loader import LMap, LSeq, parse_text
from owf_magics.runs.crypto import Keyring
from owf_magics.runs.definitions import StoredSource

MASK = "***"
_CREDENTIAL = re.compile(
    r"(^|_)(api_?key|key|token|secret|password|passwd|credentials?|authorization|connection_string|dsn)$", re.I
)


def is_credential(name: str) -> bool:
    """Whether a source config field holds a credential (``api_key``, ``token``, ``password``,
    ``client_secret``, ``connection_string``, ``headers``, anything ending in ``_key`` ...)."""
    return bool(_CREDENTIAL.search(name)) or name.lower() == "headers"


def split(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A source config as (public fields, credential fields)."""
    public = {k: v for k, v in config.items() if not is_credential(k)}
    secret = {k: v for k, v in config.items() if is_credential(k)}
    return public, secret


def masked(source: StoredSource) -> dict[str, Any]:
    """A source as the API shows it: credential fields read ``***``."""
    return {
        "id": source.source_id,
        "kind": source.kind,
        "config": public_config(source),
        "created_at": source.created_at,
        "updated_at": source.updated_at,
    }


def credential_names(source: StoredSource) -> list[str]:
    """The names of a source's credential fields (kept beside the sealed text, never the values)."""
    names = source.config.get("_credential_fields")
    return [str(n) for n in names] if isinstance(names, list) else []


def seal(source_id: str, tenant: str, kind: str, config: Mapping[str, Any], keyring: Keyring) -> StoredSource:
    """A source ready to store: its credential fields sealed (a keyring without a key refuses)."""
    public, secret = split(config)
    sealed = None
    if secret:
        sealed = keyring.seal(json.dumps(secret))
        public["_credential_fields"] = sorted(secret)
    return StoredSource(tenant, source_id, kind, public, sealed)


def opened(source: StoredSource, keyring: Keyring) -> dict[str, Any]:
    """A source's whole config, credentials decrypted (for a run only)."""
    config = {k: v for k, v in source.config.items() if k != "_credential_fields"}
    if source.credentials:
        config.update(json.loads(keyring.open(source.credentials)))
    return config


def public_config(source: StoredSource) -> dict[str, Any]:
    """A source's config with its credentials masked (to check a spec that uses it)."""
    config = {k: v for k, v in source.config.items() if k != "_credential_fields"}
    config.update(dict.fromkeys(credential_names(source), MASK))
    return config


def _referenced(doc: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for node in doc.get("nodes") or ():
        meta = node.get("metadata") if isinstance(node, Mapping) else None
        if isinstance(meta, Mapping):
            sid = meta.get("source", meta.get("source_id"))
            if isinstance(sid, str):
                out.append(sid)
    return out


def is_agentflow(doc: Any) -> bool:
    return isinstance(doc, Mapping) and isinstance(doc.get("nodes"), list) and "edges" in doc and "start_node" in doc


def attach(text: str, configs: Mapping[str, tuple[str, dict[str, Any]]]) -> str | list[Any]:
    """`text` with the stored sources its AgentFlow specs name but do not define put in their
    ``sources`` (positions kept, so diagnostics still point at the text's lines).

    Args:
        text: The manifest text.
        configs: The tenant's sources: id -> (kind, config).

    Returns:
        `text` itself when nothing is attached (or it does not parse: the load reports why),
        else the parsed documents.
    """
    if not configs or "start_node" not in text:
        return text
    bag = DiagnosticBag()
    docs = parse_text(text, file="<request>", bag=bag)
    if bag.errors:
        return text
    changed = False
    for doc in docs:
        data = doc.data
        if not is_agentflow(data) or not isinstance(data, LMap):
            continue
        listed = data.get("sources")
        sources = listed if isinstance(listed, LSeq) else LSeq(pos=data.pos)
        defined = {s.get("id") for s in sources if isinstance(s, Mapping) and s.get("kind") is not None}
        wanted = [s.get("id") for s in sources if isinstance(s, Mapping) and s.get("kind") is None]
        for sid in dict.fromkeys([*wanted, *_referenced(data)]):
            if isinstance(sid, str) and sid not in defined and sid in configs:
                kind, config = configs[sid]
                for i in [i for i, s in enumerate(sources) if isinstance(s, Mapping) and s.get("id") == sid]:
                    del sources[i]
                    if i < len(sources.item_pos):
                        del sources.item_pos[i]
                entry = LMap({"id": sid, "kind": kind, "config": LMap(config, pos=data.pos)}, pos=data.pos)
                sources.append(entry)
                sources.item_pos.append(data.pos)  # type: ignore[arg-type]
                defined.add(sid)
                changed = True
        if changed and listed is not sources:
            data["sources"] = sources
    return [d.data for d in docs] if changed else text
