"""Text to the dictionary's types: one definition shared by the fast path and diagnosis.

Accepted forms: integers and floats as polars reads them; booleans true/false/1/0 (any
case); dates ``YYYY-MM-DD``; date-times ``YYYY-MM-DD HH:MM:SS[.ffffff]`` (or with ``T``),
no time zone (FHIR ingest converts to UTC first).
"""

from __future__ import annotations

import polars as pl

from enclave.catalog.dictionary import ColumnType

_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S%.f"  # after a "T" separator is read as a space
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


def parse_expr(name: str, ctype: ColumnType, *, strict: bool = False) -> pl.Expr:
    """Text -> declared type. Not strict: a value that does not parse becomes null;
    strict: it raises (the fast path, which then falls back to :func:`diagnose`)."""
    col = pl.col(name).str.strip_chars()
    match ctype:
        case ColumnType.STRING:
            return pl.col(name)
        # Numbers are not trimmed: polars' CSV reader, the fast path, does not trim them either.
        case ColumnType.INTEGER:
            return pl.col(name).cast(pl.Int64, strict=strict)
        case ColumnType.FLOAT:
            return pl.col(name).cast(pl.Float64, strict=strict)
        case ColumnType.BOOLEAN:
            lowered = col.str.to_lowercase()
            if strict:
                return lowered.replace_strict(_BOOLEANS, return_dtype=pl.Boolean)
            return lowered.replace_strict(_BOOLEANS, default=None, return_dtype=pl.Boolean)
        case ColumnType.DATE:
            return col.str.to_date("%Y-%m-%d", strict=strict)
        case ColumnType.DATETIME:
            return col.str.replace("T", " ", literal=True).str.to_datetime(_DATETIME_FORMAT, time_unit="us", strict=strict)
    raise AssertionError(ctype)
