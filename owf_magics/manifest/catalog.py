"""The catalog: every loaded manifest, by kind, namespace, name and version.

References resolve here, to the highest loaded version that matches. A load works on a copy
(`Catalog.fork`) and replaces the registry's catalog only when validation passes, so a failed
load leaves the registry exactly as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from owf_magics.manifest.models import Agent, Bundle, Connector, Workflow
from owf_magics.manifest.normalize import RawManifest
from owf_magics.manifest.refs import Ref, highest_match, parse_version

M = TypeVar("M", bound=BaseModel)
DEFAULT_NAMESPACE = "local"


@dataclass(eq=False)
class Loaded(Generic[M]):
    """One validated manifest and where it came from."""

    kind: str
    model: M
    raw: RawManifest
    warnings: list[Any] = field(default_factory=list)
    graph: Any = None  # the step graph, for workflows
    checked_against: Any = None  # the catalog its references were last checked against
    plans: dict[Any, Any] = field(default_factory=dict)  # frozen plans, by (prefer_backend, backends generation)

    @property
    def name(self) -> str:
        return str(getattr(self.model, "name"))  # noqa: B009 - M is any manifest model

    @property
    def namespace(self) -> str:
        return getattr(self.model, "namespace", None) or DEFAULT_NAMESPACE

    @property
    def version(self) -> str:
        return str(getattr(self.model, "version", "1.0.0"))

    @property
    def ref(self) -> str:
        """The canonical reference, e.g. ``connector:community/weather@1.0.0``."""
        return f"{self.kind}:{self.namespace}/{self.name}@{self.version}"

    @property
    def file(self) -> str:
        return self.raw.file

    def __repr__(self) -> str:
        return f"<{type(self.model).__name__} {self.ref} from {self.file}>"


Key = tuple[str, str]  # (namespace, name)


class Catalog:
    """Manifests by kind → (namespace, name) → version."""

    def __init__(self) -> None:
        self._items: dict[str, dict[Key, dict[str, Loaded[Any]]]] = {
            "agent": {},
            "connector": {},
            "workflow": {},
            "bundle": {},
        }
        self._resolved: dict[tuple[str, Ref], Loaded[Any] | None] = {}

    def fork(self) -> Catalog:
        """A copy that can be changed without touching this one (manifests are shared)."""
        other = Catalog()
        for kind, by_key in self._items.items():
            other._items[kind] = {k: dict(v) for k, v in by_key.items()}
        return other

    def add(self, item: Loaded[Any]) -> Loaded[Any] | None:
        """Add (or replace) a manifest; returns the one it replaced."""
        versions = self._items[item.kind].setdefault((item.namespace, item.name), {})
        old = versions.get(item.version)
        versions[item.version] = item
        self._resolved.clear()
        return old

    def remove(self, item: Loaded[Any]) -> None:
        versions = self._items[item.kind].get((item.namespace, item.name), {})
        if versions.get(item.version) is item:
            del versions[item.version]
            self._resolved.clear()
            if not versions:
                del self._items[item.kind][(item.namespace, item.name)]

    def all(self, kind: str) -> list[Loaded[Any]]:
        out: list[Loaded[Any]] = []
        for versions in self._items[kind].values():
            out.extend(versions.values())
        return out

    def names(self, kind: str) -> list[str]:
        """Every name and ``namespace/name`` of a kind (for did-you-mean)."""
        out: list[str] = []
        for ns, name in self._items[kind]:
            out.extend((name, f"{ns}/{name}"))
        return out

    def candidates(self, kind: str, ref: Ref) -> list[Key]:
        keys = self._items[kind]
        if ref.namespace is not None:
            return [(ref.namespace, ref.name)] if (ref.namespace, ref.name) in keys else []
        return [k for k in keys if k[1] == ref.name]

    def resolve(self, kind: str, ref: Ref) -> Loaded[Any] | None:
        """The highest loaded version matching `ref` (None when nothing matches)."""
        cache_key = (kind, ref)
        if cache_key in self._resolved:
            return self._resolved[cache_key]
        keys = self.candidates(kind, ref)
        best: Loaded[Any] | None = None
        for key in keys:
            versions = self._items[kind][key]
            chosen = highest_match(list(versions), ref.range)
            if chosen is None:
                continue
            item = versions[chosen]
            if best is None or _newer(item.version, best.version):
                best = item
        self._resolved[cache_key] = best
        return best

    def versions(self, kind: str, ref: Ref) -> list[str]:
        out: list[str] = []
        for key in self.candidates(kind, ref):
            out.extend(self._items[kind][key])
        return out

    def agent(self, ref: Ref) -> Loaded[Agent] | None:
        return self.resolve("agent", ref)

    def connector(self, ref: Ref) -> Loaded[Connector] | None:
        return self.resolve("connector", ref)

    def workflow(self, ref: Ref) -> Loaded[Workflow] | None:
        return self.resolve("workflow", ref)

    def bundle(self, ref: Ref) -> Loaded[Bundle] | None:
        return self.resolve("bundle", ref)


def _newer(a: str, b: str) -> bool:
    va, vb = parse_version(a), parse_version(b)
    if va is None or vb is None:
        return bool(a > b)
    return bool(va > vb)
