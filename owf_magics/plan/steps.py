"""Walking a workflow's steps (nested blocks included) and what is in scope for each."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

from pydantic import TypeAdapter

from owf_magics.manifest.models import Step, StepBase, child_blocks
from owf_magics.plan.graph import Graph

Path = tuple[str | int, ...]


def loop_outside(graph: Graph, ref: str, reader: str | None) -> str | None:
    """The forEach step whose body holds `ref` but not `reader` (None when there is none)."""
    holders: set[str] = set()
    node = graph.nodes.get(reader) if reader else None
    while node is not None:
        holders.add(node.id)
        node = graph.nodes.get(node.parent) if node.parent else None
    node = graph.nodes.get(ref)
    node = graph.nodes.get(node.parent) if node is not None and node.parent else None
    while node is not None:
        if node.type == "forEach" and node.id not in holders:
            return node.id
        node = graph.nodes.get(node.parent) if node.parent else None
    return None


@cache
def step_adapter() -> TypeAdapter[Any]:
    return TypeAdapter(Step)


class StepScope:
    """Which names are in scope for each step of one workflow."""

    def __init__(self, graph: Graph, inputs: set[str]) -> None:
        self.graph = graph
        self.inputs = inputs
        self.env: frozenset[str] = frozenset()  # the env.* names its templates may read
        self._loop: dict[str, bool] = {}
        self._catch: dict[str, bool] = {}

    def _ancestors(self, sid: str) -> list[tuple[str, str]]:
        out = []
        node = self.graph.nodes.get(sid)
        while node is not None and node.parent is not None:
            out.append((node.parent, node.block))
            node = self.graph.nodes.get(node.parent)
        return out

    def in_loop(self, sid: str) -> bool:
        if sid not in self._loop:
            self._loop[sid] = any(
                self.graph.nodes[p].type == "forEach" and block == "steps" for p, block in self._ancestors(sid)
            ) or any(self._has_modifier(p) for p, _ in self._ancestors(sid))
        return self._loop[sid]

    def _has_modifier(self, sid: str) -> bool:
        return False

    def in_catch(self, sid: str) -> bool:
        if sid not in self._catch:
            self._catch[sid] = any(block in ("catch", "finally") for _, block in self._ancestors(sid))
        return self._catch[sid]


def walk_steps_at(steps: list[Any], path: Path) -> Iterable[tuple[StepBase, Path]]:
    for i, step in enumerate(steps):
        spath = path + (i,)
        yield step, spath
        for fname, key, block in child_blocks(step):
            bpath = spath + ((fname, key) if key is not None else (fname,))
            yield from walk_steps_at(block, bpath)


def walk_steps(steps: list[Any]) -> Iterable[tuple[StepBase, Path]]:
    """Every step of a workflow, nested ones included, with its path."""
    return walk_steps_at(steps, ("steps",))
