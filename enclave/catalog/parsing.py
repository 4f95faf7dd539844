"""Text to the dictionary's types: one definition shared by the fast path and diagnosis.

Accepted forms: integers and floats as polars reads them; booleans true/false/1/0 (any
case); dates ``YYYY-MM-DD``; date-times ``YYYY-MM-DD HH:MM:SS[.ffffff]`` (or with ``T``),
no time zone (FHIR ingest converts to UTC first).
"""

from __future__ import annotations

import polars as pl

from enclave.catalog.dictionary import ColumnType

_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S%.f"  # after a "T" separator is read as a space
# Exact forms tried on a sample of a CSV column; a fixed format parses about twice as fast
# as the general one (which allows fractions and trims spaces).
DATETIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f")
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


def parse_expr(name: str, ctype: ColumnType, *, strict: bool = False, exact: str | None = None) -> pl.Expr:
    """Text -> declared type. Not strict: a value that does not parse becomes null;
    strict: it raises (the fast path, which then falls back to :func:`diagnose`).
    ``exact``: a date-time format every value is expected to have (no trimming)."""
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
            return (pl.col(name) if exact else col).str.to_date("%Y-%m-%d", strict=strict)
        case ColumnType.DATETIME:
            if exact:
                return pl.col(name).str.to_datetime(exact, time_unit="us", strict=strict)
            return col.str.replace("T", " ", literal=True).str.to_datetime(_DATETIME_FORMAT, time_unit="us", strict=strict)
    raise AssertionError(ctype)


def exact_format(sample: pl.Series, ctype: ColumnType) -> str | None:
    """The one fixed format all sampled values of a date/date-time column have, if any."""
    values = sample.drop_nulls()
    if ctype is ColumnType.DATE:
        return "%Y-%m-%d"
    if ctype is not ColumnType.DATETIME or values.is_empty():
        return None
    for fmt in DATETIME_FORMATS:
        if values.str.to_datetime(fmt, time_unit="us", strict=False).null_count() == 0:
            return fmt
    return None
