"""``Workflow.to_langgraph()`` compiles once per plan: the compiled graph is kept per plan object
(a plan is replaced when the catalog or the backends change), checkpointer and name.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from owf_magics.backends.langgraph import compile_workflow
from owf_magics.backends.langgraph_state import plan_of
from owf_magics.runtime.context import Host

if TYPE_CHECKING:
    from owf_magics.manifest.catalog import Loaded

__all__ = ["compiled_workflow"]

#: How many compiled graphs are kept (least recently used first out).
CACHE_SIZE = 32

_graphs: OrderedDict[tuple[int, Any, str | None], tuple[Any, Any, Any]] = OrderedDict()


def compiled_workflow(ow: Host, item: Loaded[Any], *, checkpointer: Any = None, name: str | None = None) -> Any:
    """The workflow compiled to LangGraph (see `compile_workflow`), reused while its plan stands."""
    plan = plan_of(ow, item)
    if checkpointer is None or checkpointer is True or isinstance(checkpointer, str | os.PathLike):
        saver_key: Any = ("path", None if checkpointer is None else str(checkpointer))
    else:
        saver_key = ("object", id(checkpointer))
    key = (id(plan), saver_key, name)
    hit = _graphs.get(key)
    if hit is not None and hit[0] is plan and (saver_key[0] == "path" or hit[1] is checkpointer):
        _graphs.move_to_end(key)
        return hit[2]
    graph = compile_workflow(ow, item, checkpointer=checkpointer, name=name)
    _graphs[key] = (plan, checkpointer, graph)
    while len(_graphs) > CACHE_SIZE:
        _graphs.popitem(last=False)
    return graph
