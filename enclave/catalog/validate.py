"""Checking a table against its dictionary: types, missing values, codes, keys, sizes.

Two halves that must agree:

- :func:`check_exprs` are cheap aggregates computed on the fast path, in the same pass
  that writes the Parquet; any non-zero count means "something is wrong";
- :func:`diagnose` reads the input as text and lists the bad rows and columns (slow,
  only run when the fast path failed or a check counted a problem).
"""

from __future__ import annotations

import polars as pl

from enclave.catalog.dictionary import ColumnSpec, ColumnType, IdentifierKind, TableSpec
from enclave.catalog.parsing import parse_expr
from enclave.catalog.readers import ROW, WHERE
from enclave.catalog.report import MAX_DETAILED, Problem, ValidationReport

# A longer value is refused: it is almost surely a broken file (a missing quote, a
# binary blob), and free text that long does not belong in a curated dataset.
DEFAULT_MAX_FIELD_BYTES = 64 * 1024

def _problems(name: str, spec: ColumnSpec, max_bytes: int) -> dict[str, pl.Expr]:
    """message -> boolean expression over a text frame, true where the value is bad."""
    raw = pl.col(name)
    out: dict[str, pl.Expr] = {}
    if not spec.nullable:
        out["missing value"] = raw.is_null()
    if spec.type is not ColumnType.STRING:
        out[f"not a valid {spec.type.value}"] = raw.is_not_null() & parse_expr(name, spec.type).is_null()
    if spec.values is not None:
        out["not one of the declared values"] = raw.is_not_null() & ~raw.is_in(spec.values)
    out[f"value longer than {max_bytes} bytes"] = raw.str.len_bytes() > max_bytes
    return out


def check_exprs(spec: TableSpec, max_bytes: int) -> list[pl.Expr]:
    """Aggregates over a typed frame; each is named ``check:...`` and must come out 0."""
    exprs: list[pl.Expr] = []
    for name, col in spec.columns.items():
        if not col.nullable:
            exprs.append(pl.col(name).null_count().alias(f"check:{name}:missing"))
        if col.values is not None:
            exprs.append((~pl.col(name).is_in(col.values)).sum().alias(f"check:{name}:values"))
        if col.type is ColumnType.STRING:
            exprs.append(
                (pl.col(name).str.len_bytes() > max_bytes).sum().alias(f"check:{name}:length")
            )
    if len(spec.primary_key) == 1:
        # Keys usually arrive in increasing order, which proves them unique at almost no
        # cost; otherwise the caller counts duplicates exactly (see duplicate_count).
        key = pl.col(spec.primary_key[0])
        exprs.append((key <= key.shift(1)).sum().alias(UNORDERED))
    elif spec.primary_key:
        exprs.append((pl.len() - pl.struct(spec.primary_key).n_unique()).alias("check:*:duplicates"))
    return exprs


UNORDERED = "order:unordered_keys"


def duplicate_count(frame: pl.LazyFrame, spec: TableSpec) -> int:
    """Rows whose primary key repeats an earlier row's (exact; reads the key only)."""
    key = pl.struct(spec.primary_key) if len(spec.primary_key) > 1 else pl.col(spec.primary_key[0])
    return int(frame.select(pl.len() - key.n_unique()).collect().item())


def failed_checks(row: dict[str, object]) -> list[str]:
    """The names of the checks in a collected aggregate row that found problems."""
    return [k for k, v in row.items() if k.startswith("check:") and v]


def diagnose(
    table: str,
    frame: pl.LazyFrame,
    spec: TableSpec,
    report: ValidationReport,
    max_bytes: int = DEFAULT_MAX_FIELD_BYTES,
) -> None:
    """List the bad rows of a text frame (with ``__row``, maybe ``__where``) in ``report``."""
    has_where = WHERE in frame.collect_schema().names()
    flags: list[pl.Expr] = []
    labels: list[tuple[str, str, str]] = []  # (flag column, column, message)
    for name, col in spec.columns.items():
        for i, (message, expr) in enumerate(_problems(name, col, max_bytes).items()):
            flag = f"__bad_{name}_{i}"
            flags.append(expr.fill_null(False).alias(flag))
            labels.append((flag, name, message))
    if spec.primary_key:
        flags.append(pl.struct(spec.primary_key).is_duplicated().alias("__bad_duplicate"))
        labels.append(("__bad_duplicate", ",".join(spec.primary_key), "duplicate primary key"))
    flagged = frame.with_columns(flags)
    counts = flagged.select([pl.col(f).sum() for f, _, _ in labels]).collect().row(0, named=True)
    if not any(counts.values()):
        return
    any_bad = pl.any_horizontal([pl.col(f) for f, _, _ in labels])
    shown = [pl.col(ROW)] + ([pl.col(WHERE)] if has_where else []) + [pl.col(f) for f, _, _ in labels]
    keep = list(spec.columns)
    rows = flagged.filter(any_bad).select(shown + [pl.col(c) for c in keep]).head(MAX_DETAILED).collect()
    for row in rows.iter_rows(named=True):
        where = row[WHERE] if has_where else f"row {row[ROW]}"
        for flag, name, message in labels:
            if row[flag]:
                shown_value = _show(spec, name, row.get(name))
                report.add(Problem(table, where, name, f"{message}{shown_value}"), count=0)
    for flag, name, _ in labels:
        report.count(table, name, int(counts[flag]))


def _show(spec: TableSpec, name: str, value: object) -> str:
    # Never echo a direct identifier (or a huge value) into a report.
    col = spec.columns.get(name)
    if value is None or col is None or col.identifier is IdentifierKind.DIRECT:
        return ""
    text = str(value)
    return f" ({text[:40]!r}{'...' if len(text) > 40 else ''})"
