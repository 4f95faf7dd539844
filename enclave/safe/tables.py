"""Checked tables: ``crosstab`` and ``pivot_table`` that suppress what may not leave."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from enclave.disclosure.findings import evaluate
from enclave.disclosure.policy import DisclosurePolicy, load_disclosure_policy
from enclave.disclosure.rules import STATUS, N
from enclave.disclosure.verdict import Verdict
from enclave.errors import InvalidInput
from enclave.safe.frames import as_names, require_columns, to_polars
from enclave.safe.query import Query
from enclave.safe.result import SafeResult
from enclave.safe.stats import AGGFUNCS, STAT, cell_stats
from enclave.safe.suppression import protect

MARGIN_LABEL = "All"
COUNT_RULES = ("threshold", "zeros")
VALUE_RULES = ("threshold", "zeros", "nk_dominance", "p_percent")


def crosstab(
    data: Any,
    index: str | Sequence[str],
    columns: str | Sequence[str],
    values: str | None = None,
    aggfunc: str | None = None,
    *,
    margins: bool = False,
    policy: DisclosurePolicy | None = None,
) -> SafeResult:
    """A checked cross-tabulation of ``data`` (pandas or polars), like ``pandas.crosstab``.

    Give ``data`` as an :func:`enclave.safe.query` to make the table reproducible: its
    evidence then records the query, and the enclave re-runs it on submit.

    Counts by default; with ``values`` and ``aggfunc`` (mean, sum, median, std, count, min,
    max) the statistic of ``values`` per cell. Every cell is checked (threshold, zeros, and
    for statistics of values nk_dominance and p_percent); ``.table`` shows failing cells
    suppressed, plus enough further cells when ``margins`` are shown that none can be
    worked out from the rest. ``policy`` defaults to the site's (``load_disclosure_policy``).
    """
    if (values is None) != (aggfunc is None):
        raise InvalidInput("give values and aggfunc together (e.g. values='income', aggfunc='mean'), or neither for counts")
    return _table("crosstab", data, as_names(index, "index"), as_names(columns, "columns"), values, aggfunc, margins, policy)


def pivot_table(
    data: Any,
    values: str | None = None,
    index: str | Sequence[str] | None = None,
    columns: str | Sequence[str] | None = None,
    aggfunc: str = "mean",
    *,
    margins: bool = False,
    policy: DisclosurePolicy | None = None,
) -> SafeResult:
    """A checked pivot table, like ``pandas.pivot_table``: several index (and column) keys.

    Without ``values`` it counts rows. One ``values`` column and one ``aggfunc`` per call.
    """
    index_names = as_names(index, "index")
    if not index_names:
        raise InvalidInput("pivot_table needs index=: the column(s) whose values label the rows")
    return _table("pivot_table", data, index_names, as_names(columns, "columns"), values,
                  aggfunc if values is not None else None, margins, policy)


def _label(row: Sequence[Any]) -> Any:
    return row[0] if len(row) == 1 else tuple(row)


def _table(
    kind: str,
    data: Any,
    index: list[str],
    columns: list[str],
    values: str | None,
    aggfunc: str | None,
    margins: bool,
    policy: DisclosurePolicy | None,
) -> SafeResult:
    policy = policy or load_disclosure_policy()
    recorded = data.record() if isinstance(data, Query) else None
    if isinstance(data, Query):
        data = data.collect()
    if aggfunc is not None and aggfunc not in AGGFUNCS:
        raise InvalidInput(f"aggfunc {aggfunc!r} is not supported; choose one of: {', '.join(AGGFUNCS)}")
    if not index:
        raise InvalidInput(f"{kind} needs index=: the column(s) whose values label the rows")
    frame = to_polars(data)
    require_columns(frame, index + columns + ([values] if values else []))
    overlap = set(index) & set(columns)
    if overlap:
        raise InvalidInput(f"column(s) {sorted(overlap)} are both index and columns; use each once")
    if values is not None and values in index + columns:
        raise InvalidInput(f"values column {values!r} is also a label column; values must be a separate, numeric column")
    if values is not None and not frame.schema[values].is_numeric():
        raise InvalidInput(f"values column {values!r} is not numeric ({frame.schema[values]}); cast it first")
    frame = frame.lazy().select(index + columns + ([values] if values else [])).drop_nulls(index + columns)
    synthetic = not columns
    if synthetic:  # one column of results, named after the statistic
        columns = ["__stat__"]
        frame = frame.with_columns(pl.lit(f"{aggfunc}({values})" if values else "count").alias("__stat__"))
    counts_only = values is None or aggfunc == "count"
    rules = COUNT_RULES if counts_only else VALUE_RULES

    stats = cell_stats(frame, index + columns, values, aggfunc, policy)
    if stats.height == 0:
        raise InvalidInput("no rows left once rows with missing labels are dropped; nothing to tabulate")
    row_keys = stats.select(index).unique().sort(index, nulls_last=True)
    col_keys = stats.select(columns).unique().sort(columns, nulls_last=True)
    grid = row_keys.join(col_keys, how="cross").join(stats, on=index + columns, how="left", nulls_equal=True)
    grid = grid.with_columns(pl.col(N).fill_null(0))
    if counts_only:
        grid = grid.with_columns(pl.col(STAT).fill_null(0))
    row_labels = [_label(r) for r in row_keys.rows()]
    col_labels = [_label(c) for c in col_keys.rows()]
    cells = [(_label(r[: len(index)]), _label(r[len(index):])) for r in grid.select(index + columns).rows()]

    parts = [(grid.drop(index + columns), cells, False)]
    if margins:
        row_m = row_keys.join(cell_stats(frame, index, values, aggfunc, policy), on=index, how="left", nulls_equal=True)
        col_m = col_keys.join(cell_stats(frame, columns, values, aggfunc, policy), on=columns, how="left", nulls_equal=True)
        grand = cell_stats(frame, [], values, aggfunc, policy)
        parts += [
            (row_m.drop(index), [(r, MARGIN_LABEL) for r in row_labels], True),
            (col_m.drop(columns), [(MARGIN_LABEL, c) for c in col_labels], True),
            (grand, [(MARGIN_LABEL, MARGIN_LABEL)], True),
        ]
    all_stats = pl.concat([p[0] for p in parts], how="diagonal_relaxed")
    all_cells = [c for p in parts for c in p[1]]
    is_margin = [p[2] for p in parts for _ in p[1]]
    evaluation = evaluate(all_stats, policy, rules, all_cells)

    shape = (len(row_labels) + margins, len(col_labels) + margins)
    position = {label: i for i, label in enumerate(row_labels)} | {MARGIN_LABEL: len(row_labels)}
    col_position = {label: j for j, label in enumerate(col_labels)} | {MARGIN_LABEL: len(col_labels)}
    where = [(position[r], col_position[c]) for r, c in all_cells]
    ranks = np.zeros(shape, dtype=np.int8)
    shown = np.full(shape, np.nan)
    counts = np.zeros(shape)
    for (i, j), rank, stat, n in zip(where, evaluation.ranks[STATUS], all_stats[STAT], all_stats[N]):
        ranks[i, j] = rank
        shown[i, j] = np.nan if stat is None else stat
        counts[i, j] = n or 0
    primary = ranks >= Verdict.FAIL.rank
    hidden = protect(counts, primary) if margins else primary
    if counts_only and policy.rounding.required:
        base = policy.rounding.base
        shown = np.floor(shown / base + 0.5) * base
    shown = np.where(hidden, np.nan, shown)

    table = _to_pandas(shown, row_labels, col_labels, index, [] if synthetic else columns, margins, counts_only, synthetic, values, aggfunc)
    secondary = [cell for cell, (i, j) in zip(all_cells, where) if hidden[i, j] and not primary[i, j]]
    return SafeResult(
        table=table,
        status=evaluation.status,
        findings=evaluation.findings,
        suppressed=[cell for cell, (i, j) in zip(all_cells, where) if hidden[i, j]],
        secondary=secondary,
        cell_stats=all_stats,
        cells=all_cells,
        margin_flags=is_margin,
        cell_ranks=evaluation.ranks,
        hidden=[bool(hidden[i, j]) for i, j in where],
        policy=policy,
        rules=list(rules),
        analysis={"kind": kind, "index": index, "columns": [] if synthetic else columns,
                  "values": values, "aggfunc": aggfunc or "count", "margins": margins},
        query=recorded,
    )


def tabulate(analysis: dict[str, Any], data: Any, policy: DisclosurePolicy) -> SafeResult:
    """Re-run a table from its evidence's ``analysis`` record (what the enclave's replay does)."""
    kind = analysis.get("kind")
    if kind not in ("crosstab", "pivot_table"):
        raise InvalidInput(f"only crosstab and pivot_table tables can be re-run, not {kind!r}")
    values = analysis.get("values")
    aggfunc = analysis.get("aggfunc") if values is not None else None
    index = as_names(analysis.get("index"), "index")
    columns = as_names(analysis.get("columns"), "columns")
    margins = analysis.get("margins")
    if not isinstance(margins, bool) or (values is not None and not isinstance(values, str)):
        raise InvalidInput("the analysis record is malformed (margins must be true/false, values a column name)")
    return _table(kind, data, index, columns, values, aggfunc, margins, policy)


def _to_pandas(shown, row_labels, col_labels, index, columns, margins, counts_only, synthetic, values, aggfunc) -> pd.DataFrame:
    rows = list(row_labels) + ([_margin_label(len(index))] if margins else [])
    cols = list(col_labels) + ([_margin_label(max(len(columns), 1))] if margins else [])
    row_index = pd.MultiIndex.from_tuples(rows, names=index) if len(index) > 1 else pd.Index(rows, name=index[0])
    if len(columns) > 1:
        col_index = pd.MultiIndex.from_tuples(cols, names=columns)
    else:
        col_index = pd.Index(cols, name=columns[0] if columns else None)
    table = pd.DataFrame(shown, index=row_index, columns=col_index)
    if synthetic and margins:  # with one column of results each row total repeats its cell
        table = table.iloc[:, :-1]
    if counts_only:
        table = table.astype("Int64")
    return table


def _margin_label(levels: int) -> Any:
    return MARGIN_LABEL if levels == 1 else (MARGIN_LABEL,) + ("",) * (levels - 1)
