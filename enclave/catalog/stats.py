"""Per-column statistics of a stored table, computed in the pass that writes it.

Statistics go into the catalogue, which admins and project approvers read; they never
include values of direct identifiers (no minimum of a name, no NHS number).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from enclave.catalog.dictionary import ColumnType, IdentifierKind, TableSpec

_PREFIX = "stat:"


def stat_exprs(spec: TableSpec) -> list[pl.Expr]:
    """Aggregates named ``stat:<column>:<statistic>`` over a typed frame."""
    exprs = [pl.len().alias(f"{_PREFIX}*:rows")]
    for name, col in spec.columns.items():
        c = pl.col(name)

        def stat(expr: pl.Expr, what: str, name: str = name) -> None:
            exprs.append(expr.alias(f"{_PREFIX}{name}:{what}"))

        stat(c.null_count(), "nulls")
        if col.type is ColumnType.STRING:
            stat(c.approx_n_unique(), "distinct")
            stat(c.str.len_bytes().min(), "min_bytes")
            stat(c.str.len_bytes().max(), "max_bytes")
            for value in col.values or []:
                stat((c == value).sum(), f"count={value}")
        elif col.identifier is IdentifierKind.DIRECT:
            stat(c.approx_n_unique(), "distinct")
        elif col.type is ColumnType.BOOLEAN:
            stat(c.sum(), "true")
        else:
            stat(c.min(), "min")
            stat(c.max(), "max")
            if col.type in (ColumnType.INTEGER, ColumnType.FLOAT):
                stat(c.mean(), "mean")
                stat(c.std(), "std")
    return exprs


def collect_stats(row: dict[str, Any]) -> tuple[int, dict[str, dict[str, Any]]]:
    """(row count, {column: {statistic: value}}) from a collected aggregate row."""
    rows = int(row[f"{_PREFIX}*:rows"])
    out: dict[str, dict[str, Any]] = {}
    for key, value in row.items():
        if not key.startswith(_PREFIX) or key == f"{_PREFIX}*:rows":
            continue
        column, what = key[len(_PREFIX):].split(":", 1)
        if what.startswith("count="):
            out.setdefault(column, {}).setdefault("counts", {})[what[6:]] = value
        else:
            out.setdefault(column, {})[what] = value.isoformat() if hasattr(value, "isoformat") else value
    return rows, out
