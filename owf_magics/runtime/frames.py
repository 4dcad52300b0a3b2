"""Rows as plain pandas DataFrames with one dtype per column, so nulls read the same in every run.

pandas 3 infers a text column holding a None as its ``str`` dtype (the None becomes NaN) but keeps
an all-None column as ``object`` (the None stays): `error_code` was None in one run and NaN in
another. Here text columns are always ``object`` with None for a missing value, counts are
``int64`` (a missing count is 0), amounts ``float64`` (a missing amount is NaN) and flags ``bool``.
The frames carry ``attrs["owf"]`` (what they are, the run) for the notebook's display; they are
plain `pandas.DataFrame`s, so they pickle, go through joblib and write to parquet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

#: Columns that hold counts (int64, a missing count is 0).
INT_COLUMNS = frozenset(
    {"attempt", "prompt_tokens", "completion_tokens", "total_tokens", "tokens", "index", "steps", "pending"}
)
#: Columns that hold text (object, None when missing); a column in no set here (a batch's outputs)
#: keeps the dtype pandas infers when that is a number or a flag, else it is text.
TEXT_COLUMNS = frozenset(
    {
        "run_id",
        "step_id",
        "type",
        "backend",
        "backend_source",
        "status",
        "iteration",
        "parent",
        "fragment",
        "started_at",
        "finished_at",
        "error_code",
        "provider",
        "model",
        "workflow",
        "workflow_version",
    }
)
#: Columns that hold amounts (float64, NaN when missing).
FLOAT_COLUMNS = frozenset({"duration_ms", "cost_usd"})
#: Columns that hold flags (bool, a missing flag is False).
BOOL_COLUMNS = frozenset({"estimated"})
#: Text columns that are empty, not null, when a row has nothing to say (a step with no parent).
EMPTY_TEXT = frozenset({"iteration", "parent", "fragment"})


def typed_frame(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None, *, kind: str = "", run_id: str = ""
) -> pd.DataFrame:
    """`rows` as a DataFrame whose every column has one dtype (see the module docstring).

    Args:
        rows: The rows (dicts); keys a row lacks are missing values.
        columns: The columns in order (default: every key, in first-seen order).
        kind: What the frame is (``trace``, ``usage``...), kept in ``attrs["owf"]`` for displays.
        run_id: The run the rows belong to, kept the same way (a display shows it once).
    """
    import pandas as pd

    listed = [dict(r) for r in rows]
    if columns is None:
        seen: dict[str, None] = {}
        for r in listed:
            seen.update(dict.fromkeys(r))
        columns = list(seen)
    # object first: pandas keeps Python strings and None as they are, then numbers get their dtype
    df = pd.DataFrame(listed, columns=list(columns), dtype=object)
    for col in df.columns:
        name = str(col)
        series = df[col]
        if name in INT_COLUMNS:
            df[col] = pd.to_numeric(series.where(series.notna(), 0)).astype("int64")
        elif name in FLOAT_COLUMNS:
            df[col] = pd.to_numeric(series, errors="coerce").astype("float64")
        elif name in BOOL_COLUMNS:
            df[col] = series.where(series.notna(), False).astype(bool)
        else:
            if name not in TEXT_COLUMNS:
                inferred = series.infer_objects()
                if inferred.dtype.kind in "biuf":  # numbers or flags: pandas' dtype (NaN when missing)
                    df[col] = inferred
                    continue
            empty = "" if name in EMPTY_TEXT else None
            missing = series.isna()
            if missing.any():
                df[col] = series.astype(object).where(~missing, empty)
    if kind:
        df.attrs["owf"] = {"kind": kind, "run_id": run_id}
    return df
