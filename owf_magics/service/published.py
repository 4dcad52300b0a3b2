"""Workflows published to the service (``POST /workflows``): checked like ``/workflows/validate``,
stored in the run store under the caller's tenant and each workflow's version, and run by name or
``name@range`` from any worker on the store.

A publication's manifest text is one snapshot (sealed with ``OWF_SECRET_KEY`` when the server has
one; a manifest with a literal credential is refused without a key). Each worker loads a snapshot
once into a registry of its own (with the tenant's sources attached, credentials decrypted) and
keeps it while the sources it uses are unchanged. Published manifests are the callers', not the
server's: they get the same handler switch as inline manifests, no environment and none of the
server's secrets; their runs get the credentials of the sources they use, as secrets.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from owf_magics.api import OpenWorkflow, Workflow
from owf_magics.errors import OWFError
from owf_magics.manifest.refs import check_range, highest_match, parse_version
from owf_magics.runs.crypto import Keyring
from owf_magics.runs.definitions import Definition, DefinitionExists, tenant_key
from owf_magics.service import manifests, sources
from owf_magics.service.auth import Principal
from owf_magics.service.errors import ApiError, diagnostic, jsonable

#: The warning code of a literal credential in a manifest (see `owf_magics.manifest.credentials`).
LITERAL_CREDENTIAL = "LITERAL_CREDENTIAL"
#: Snapshots kept loaded per worker.
CACHE_SIZE = 64


@dataclass
class Loaded:
    """A snapshot loaded in a registry of its own, with the secrets its runs get."""

    ow: OpenWorkflow
    secrets: dict[str, str]
    signature: tuple[Any, ...]
    queues: dict[tuple[str, str], dict[str, Any]]  # (workflow, queue id) -> the queue's spec
    applied: dict[tuple[str, str], dict[str, Any]]  # bandwidth set through the API, as applied
    tenant: str = ""


def split_ref(name: str, version: str | None) -> tuple[str, str | None]:
    """``name@range`` as (name, range); an explicit `version` wins over the one in the name."""
    if "@" in name:
        name, _, rng = name.rpartition("@")
        version = version or rng or None
    if version is not None and version.lower() == "latest":
        version = None
    return name, version


class Published:
    """The published definitions of one worker's store."""

    @dataclass
    class Run:
        """What a run of a published workflow carries: its labels and its secrets."""

        labels: dict[str, str]
        secrets: dict[str, str]

    def __init__(self, store: Any, *, allow_handlers: bool, keyring: Keyring) -> None:
        self.store = store
        self.allow_handlers = allow_handlers
        self.keyring = keyring
        self._cache: OrderedDict[str, Loaded] = OrderedDict()
        self._lock = threading.Lock()

    # -- sources ----------------------------------------------------------------------------------

    def source_configs(self, tenant: str | None, *, decrypt: bool) -> dict[str, tuple[str, dict[str, Any]]]:
        out: dict[str, tuple[str, dict[str, Any]]] = {}
        for src in self.store.get_sources(tenant):
            config = sources.opened(src, self.keyring) if decrypt else sources.public_config(src)
            out[src.source_id] = (src.kind, config)
        return out

    # -- publishing -------------------------------------------------------------------------------

    def publish(self, who: Principal, manifest: str | dict[str, Any] | list[Any]) -> dict[str, Any]:
        """Check and store a manifest's workflows under the caller's tenant.

        Raises:
            ManifestError: The manifest's problems (422).
            ApiError: 409 when a version is already published, 422 for no workflow, a version that
                is not semver, or a literal credential on a server without ``OWF_SECRET_KEY``.
        """
        text = manifests.as_text(manifest)
        ow = manifests.new_registry(False, allow_handlers=self.allow_handlers, safe=manifests.PUBLISHED_HANDLERS)
        try:
            items = manifests.load(ow, sources.attach(text, self.source_configs(who.tenant, decrypt=False)))
            warnings = list(ow.warnings)
        finally:
            manifests.release(ow)
        workflows = [i for i in items if i.kind == "workflow"]
        if not workflows:
            raise ApiError(422, "the manifest has no workflow to publish", code="VALIDATION")
        for wf in workflows:
            if parse_version(wf.version) is None:
                raise ApiError(
                    422,
                    f"workflow '{wf.name}' has version {wf.version!r}, which is not a semantic version",
                    {"name": wf.name, "version": wf.version, "hint": "give it a version such as 1.0.0"},
                    code="VALIDATION",
                )
        literal = [w for w in warnings if w.code == LITERAL_CREDENTIAL]
        if self.keyring.sealed:
            body = self.keyring.seal(text)
        elif literal:
            raise ApiError(
                422,
                "the manifest carries a literal credential and this server has no OWF_SECRET_KEY to encrypt it with",
                {
                    "warnings": [diagnostic(w) for w in literal],
                    "hint": "use a source or a secret, or set OWF_SECRET_KEY",
                },
                code="VALIDATION",
            )
        else:
            body = text
        try:
            snapshot, rows = self.store.publish(
                who.tenant,
                body,
                [(wf.name, wf.version, getattr(wf.model, "description", None)) for wf in workflows],
                published_by=who.sub,
            )
        except DefinitionExists as exc:
            raise ApiError(409, exc.message, exc.details, code="CONFLICT") from None
        return {
            "status": "published",
            "snapshot": snapshot,
            "workflows": [{"name": d.name, "version": d.version} for d in rows],
            "warnings": [jsonable(diagnostic(w)) for w in warnings],
        }

    # -- finding ----------------------------------------------------------------------------------

    def versions(self, who: Principal, name: str) -> list[Definition]:
        """The caller's tenant's versions of `name`, newest first (empty: not published)."""
        rows = self.store.definitions(who.tenant, name)
        return sorted(rows, key=_semver, reverse=True)

    def find(self, who: Principal, name: str, rng: str | None) -> Definition | None:
        """The newest version of `name` in `rng` (None when the tenant never published `name`).

        Raises:
            ApiError: 422 for a range that is not one, 404 when no published version matches.
        """
        if rng is not None and check_range(rng) is not None:
            raise ApiError(
                422, f"'{rng}' is not a version or version range", {"version": rng}, code="INVALID_VERSION_RANGE"
            )
        rows = self.versions(who, name)
        if not rows:
            return None
        best = highest_match([d.version for d in rows], rng)
        if best is None:
            raise ApiError(
                404,
                f"no published version of '{name}' matches {rng!r}",
                {"name": name, "version": rng, "published": [d.version for d in rows]},
            )
        return next(d for d in rows if d.version == best)

    def newest(self, who: Principal) -> list[Workflow]:
        """The newest published version of each of the tenant's workflows (one that no longer
        loads, say because a source it names was deleted, is left out)."""
        best: dict[str, Definition] = {}
        for d in self.store.definitions(who.tenant):
            if d.name not in best or _semver(d) > _semver(best[d.name]):
                best[d.name] = d
        out = []
        for d in sorted(best.values(), key=lambda d: d.name):
            try:
                out.append(self.workflow(d)[0])
            except (OWFError, ApiError):
                continue
        return out

    def delete(self, who: Principal, name: str, version: str) -> None:
        if not self.store.delete_definition(who.tenant, name, version):
            raise ApiError(404, f"no published workflow '{name}' version {version}", {"name": name, "version": version})

    # -- loading ----------------------------------------------------------------------------------

    def loaded(self, snapshot_id: str, tenant: str | None) -> Loaded:
        """The snapshot's registry on this worker (loaded on first use; again when its sources
        or their keys changed)."""
        stored = self.store.get_sources(tenant)
        signature = tuple((s.source_id, s.updated_at) for s in stored)
        with self._lock:
            hit = self._cache.get(snapshot_id)
            if hit is not None and hit.signature == signature:
                self._cache.move_to_end(snapshot_id)
                self._apply_bandwidth(hit, tenant)
                return hit
        found = self.store.snapshot(snapshot_id)
        if found is None or found[0] != tenant_key(tenant):
            raise ApiError(404, f"no published snapshot '{snapshot_id}'", {"snapshot": snapshot_id})
        text = self.keyring.open(found[1])
        configs = {s.source_id: (s.kind, sources.opened(s, self.keyring)) for s in stored}
        secrets: dict[str, str] = {}
        for sid, (_, config) in configs.items():
            for field, value in config.items():
                if sources.is_credential(field) and isinstance(value, str) and value:
                    secrets[f"source.{sid}.{field}"] = value
        ow = manifests.new_registry(self.store, allow_handlers=self.allow_handlers, safe=manifests.PUBLISHED_HANDLERS)
        try:
            manifests.load(ow, sources.attach(text, configs))
        except BaseException:
            manifests.release(ow)
            raise
        entry = Loaded(ow, secrets, signature, _queues(ow), {}, tenant_key(tenant))
        self._apply_bandwidth(entry, tenant)
        with self._lock:
            old = self._cache.pop(snapshot_id, None)
            self._cache[snapshot_id] = entry
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        del old  # runs still using an older registry keep it until they end
        return entry

    def workflow(self, definition: Definition) -> tuple[Workflow, Loaded]:
        entry = self.loaded(definition.snapshot_id, definition.tenant or None)
        try:
            return entry.ow.workflow(definition.name, definition.version), entry
        except OWFError as exc:
            raise ApiError(404, exc.message, exc.details) from None

    # -- queues -----------------------------------------------------------------------------------

    def queues(self, who: Principal) -> list[dict[str, Any]]:
        """The AgentFlow queues of the caller's tenant's newest published versions, with their
        bandwidth (as published, or as set through the API)."""
        newest: dict[str, Definition] = {}
        for d in self.store.definitions(who.tenant):
            best = newest.get(d.name)
            if best is None or _semver(d) > _semver(best):
                newest[d.name] = d
        overrides = self.store.queue_bandwidths(who.tenant)
        out = []
        for d in newest.values():
            entry = self.loaded(d.snapshot_id, who.tenant)
            for (wf, qid), spec in entry.queues.items():
                if wf != d.name:
                    continue
                bw = overrides.get((wf, qid))
                out.append(
                    {
                        "workflow": wf,
                        "version": d.version,
                        "id": qid,
                        "bandwidth": bw if bw is not None else dict(spec.get("bandwidth") or {}),
                        "published_bandwidth": dict(spec.get("bandwidth") or {}),
                        "on_limit": spec.get("on_limit", "wait"),
                        "subqueues": list(spec.get("subqueues") or []),
                        "adjusted": bw is not None,
                        "waiting": entry.ow.rate_limiter.waiting(f"queue:{spec.get('key') or spec.get('id')}"),
                    }
                )
        return out

    def set_bandwidth(
        self, who: Principal, workflow: str, queue_id: str, bandwidth: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Set a queue's bandwidth for every worker (this one at once, the others at their next run)."""
        if not any(q["workflow"] == workflow and q["id"] == queue_id for q in self.queues(who)):
            raise ApiError(
                404, f"no queue '{queue_id}' in workflow '{workflow}'", {"workflow": workflow, "queue": queue_id}
            )
        self.store.set_queue_bandwidth(who.tenant, workflow, queue_id, bandwidth)
        with self._lock:
            entries = list(self._cache.values())
        for entry in entries:
            self._apply_bandwidth(entry, who.tenant)
        return next(q for q in self.queues(who) if q["workflow"] == workflow and q["id"] == queue_id)

    def waiting(self) -> list[tuple[str, str, str, int]]:
        """``(tenant, workflow, queue id, messages waiting)`` for every queue loaded on this worker."""
        with self._lock:
            entries = list(self._cache.items())
        out = []
        for _, entry in entries:
            for (wf, qid), spec in entry.queues.items():
                key = f"queue:{spec.get('key') or spec.get('id')}"
                out.append((entry.tenant, wf, qid, int(entry.ow.rate_limiter.waiting(key))))
        return out

    def _apply_bandwidth(self, entry: Loaded, tenant: str | None) -> None:
        if not entry.queues:
            return
        overrides = self.store.queue_bandwidths(tenant)
        for key, spec in entry.queues.items():
            bw = overrides.get(key)
            if bw is None or entry.applied.get(key) == bw:
                continue
            from owf_magics.connectors.queue import weights

            entry.ow.rate_limiter.set_limit(
                f"queue:{spec.get('key') or spec.get('id')}",
                messages_per_second=bw.get("max_messages_per_second"),
                requests_per_minute=bw.get("max_requests_per_minute"),
                tokens_per_minute=bw.get("tokens_per_minute"),
                burst=bw.get("burst_size"),
                weights=weights(spec.get("subqueues")),
            )
            entry.applied[key] = dict(bw)


def _semver(d: Definition) -> Any:
    """A definition's version for sorting (a version that is not semver sorts first)."""
    return parse_version(d.version) or parse_version("0.0.0")


def _queues(ow: OpenWorkflow) -> dict[tuple[str, str], dict[str, Any]]:
    """The AgentFlow queues of a registry's workflows: their connectors' ``queue`` handlers."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for wf in ow.workflows():
        if (wf.manifest.metadata or {}).get("format") != "agentflow":
            continue
        for step in wf.manifest.steps:
            connector = getattr(step, "connector", None)
            action = getattr(step, "action", None)
            if not connector or not action or not str(action).startswith("queue__"):
                continue
            spec = _queue_handler(ow, str(connector), str(action))
            if spec is not None:
                out[(wf.name, str(spec.get("id") or action))] = spec
    return out


def _queue_handler(ow: OpenWorkflow, connector: str, action: str) -> dict[str, Any] | None:
    for item in ow.connectors():
        if item.name == connector:
            for a in item.model.actions:
                if a.name == action and a.handler is not None and a.handler.queue:
                    return dict(a.handler.queue)
    return None
