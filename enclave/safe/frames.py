"""Accepting researchers' frames: pandas or polars in, polars for computing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import polars as pl

from enclave.errors import InvalidInput


def to_polars(data: Any) -> pl.DataFrame:
    """A polars DataFrame holding ``data`` (pandas or polars); NaN becomes missing."""
    if isinstance(data, pl.LazyFrame):
        data = data.collect()
    if isinstance(data, pl.DataFrame):
        floats = [c for c, t in data.schema.items() if t.is_float()]
        if floats and data.select(pl.any_horizontal(pl.col(floats).is_nan().any())).item():
            data = data.with_columns(pl.col(floats).fill_nan(None))
        return data
    if isinstance(data, pd.DataFrame):
        if isinstance(data.columns, pd.MultiIndex) or not all(isinstance(c, str) for c in data.columns):
            data = data.rename(columns=str)
        frame = data.reset_index(drop=True) if not isinstance(data.index, pd.RangeIndex) else data
        try:
            return pl.from_pandas(frame, nan_to_null=True)
        except (TypeError, ValueError, ImportError) as exc:
            raise InvalidInput(f"cannot read this pandas DataFrame ({exc}); convert odd column types with .astype() first") from None
    raise InvalidInput(f"expected a pandas or polars DataFrame, got {type(data).__name__}; pass the DataFrame itself")


def as_names(value: str | Sequence[str] | None, what: str) -> list[str]:
    """One or several column names as a list; ``what`` names the argument in errors."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    names = list(value)
    if not all(isinstance(v, str) for v in names):
        raise InvalidInput(f"{what} must be a column name or a list of column names, got {value!r}")
    return names


def require_columns(frame: pl.DataFrame, names: Sequence[str]) -> None:
    """Raise one line naming the columns that are not in ``frame``."""
    absent = [n for n in names if n not in frame.columns]
    if absent:
        shown = ", ".join(frame.columns[:20])
        raise InvalidInput(f"no column(s) {', '.join(map(repr, absent))} in the data; its columns are: {shown}")
