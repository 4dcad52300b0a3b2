"""``%workflow map NAME --inputs VAR [--client ADDRESS|VAR] [-o VAR]``: `OpenWorkflow.map` in a cell.

``--inputs`` names a list of dicts (or a pandas DataFrame: one run per row) in the namespace;
``--client`` a Dask scheduler address (``tcp://...``), ``local`` for a LocalCluster for the call,
or a variable holding a ``distributed.Client``. The BatchResult is returned (shown by its summary;
``-o VAR`` binds it); progress is a widget in the notebook.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from IPython.core.error import UsageError


def batch_inputs(value: Any, name: str) -> list[dict[str, Any]]:
    """The inputs of a batch from a namespace value: a list of dicts or a DataFrame's rows."""
    records = getattr(value, "to_dict", None)
    if callable(records) and hasattr(value, "columns"):
        value = records(orient="records")
    if not isinstance(value, list | tuple) or not all(isinstance(v, Mapping) for v in value):
        raise UsageError(f"--inputs {name}: expected a list of dicts or a DataFrame, got {type(value).__name__}")
    return [dict(v) for v in value]


def map_line(ow: Any, ns: dict[str, Any], args: Any, rest: list[str], secrets: dict[str, str] | None) -> Any:
    if len(rest) != 1:
        raise UsageError("%workflow map takes one workflow NAME, and --inputs VAR")
    if not args.inputs:
        raise UsageError("%workflow map NAME --inputs VAR: VAR holds a list of input dicts (or a DataFrame)")
    if args.inputs not in ns:
        raise UsageError(f"--inputs {args.inputs}: no such variable in the namespace")
    inputs = batch_inputs(ns[args.inputs], args.inputs)
    client: Any = None
    cluster = None
    if args.client == "local":
        cluster = "local"
    elif args.client:
        client = ns.get(args.client, args.client)  # a Client variable, or an address
    batch = ow.map(rest[0], inputs, client=client, cluster=cluster, prefer_backend=args.prefer_backend, secrets=secrets)
    if args.output:
        ns[args.output] = batch
    return batch
