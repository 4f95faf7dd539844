"""Cell statistics: one polars pass computes, per cell, everything the rules read.

The exact second (and n-th) largest contribution is expensive per group, and the rules only
need it when the cheap bounds cannot decide (see ``enclave.disclosure.rules``); a second
pass computes it for those cells alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from enclave.disclosure.policy import DisclosurePolicy
from enclave.disclosure.rules import MISSING, NEGATIVES, TOP1, TOP2, TOPN, TOTAL, N
from enclave.errors import InvalidInput

STAT = "stat"  # the statistic shown in the cell

AGGFUNCS = ("mean", "sum", "median", "std", "count", "min", "max")


def _agg(value: pl.Expr, aggfunc: str) -> pl.Expr:
    match aggfunc:
        case "mean":
            return value.mean()
        case "sum":
            return value.sum()
        case "median":
            return value.median()
        case "std":
            return value.std()
        case "count":
            return value.count()
        case "min":
            return value.min()
        case "max":
            return value.max()
    raise InvalidInput(f"aggfunc {aggfunc!r} is not supported; choose one of: {', '.join(AGGFUNCS)}")


def cell_stats(
    frame: pl.DataFrame | pl.LazyFrame,
    keys: Sequence[str],
    value: str | None,
    aggfunc: str | None,
    policy: DisclosurePolicy,
) -> pl.DataFrame:
    """Per group of ``keys``: the shown statistic and the rules' figures.

    Counts only (``value`` None): ``n`` and ``stat`` (= n). With a value column: ``n`` is
    the number of non-missing values, plus total, top1, top2, topn, negatives, missing.
    """
    keys = list(keys)
    frame = frame.lazy()
    if not keys:  # the whole frame is one cell
        stats = cell_stats(frame.with_columns(pl.lit(0).alias("_all")), ["_all"], value, aggfunc, policy)
        return stats.drop("_all")
    if value is None:
        grouped = _collect(frame.group_by(keys).agg(pl.len().cast(pl.Int64).alias(N)))
        return grouped.with_columns(pl.col(N).alias(STAT))
    v = pl.col(value)
    if not frame.collect_schema()[value].is_numeric():
        raise InvalidInput(f"values column {value!r} is not numeric ({frame.schema[value]}); cast it first")
    aggs = [
        v.count().cast(pl.Int64).alias(N),
        (pl.len() - v.count()).cast(pl.Int64).alias(MISSING),
        v.sum().cast(pl.Float64).alias(TOTAL),
        v.max().cast(pl.Float64).alias(TOP1),
        (v.min() < 0).cast(pl.Int64).fill_null(0).alias(NEGATIVES),
        _agg(v, aggfunc or "mean").cast(pl.Float64).alias(STAT),
    ]
    grouped = _collect(frame.group_by(keys).agg(aggs))
    return _exact_tops(frame, grouped, keys, value, policy)


def _collect(query: pl.LazyFrame) -> pl.DataFrame:
    # The streaming engine computes many aggregates in one pass at about the cost of one.
    return query.collect(engine="streaming")


def _exact_tops(
    frame: pl.LazyFrame, grouped: pl.DataFrame, keys: list[str], value: str, policy: DisclosurePolicy
) -> pl.DataFrame:
    """Fill top2/topn exactly for the cells the bounds cannot clear."""
    k_n = policy.nk_dominance.n
    total, top1 = pl.col(TOTAL), pl.col(TOP1)
    nk_bound = pl.min_horizontal(top1 * k_n, total) >= policy.nk_dominance.k * total
    p_bound = (total - top1 - pl.min_horizontal(top1, (total - top1).clip(lower_bound=0))) < policy.p_percent * top1
    undecided = (pl.col(NEGATIVES) == 0) & (pl.col(MISSING) == 0) & (total > 0) & (nk_bound | p_bound)
    grouped = grouped.with_columns(pl.lit(None, dtype=pl.Float64).alias(TOP2), pl.lit(None, dtype=pl.Float64).alias(TOPN))
    todo = grouped.filter(undecided)
    if todo.height == 0:
        return grouped
    depth = max(2, k_n)
    rows = frame.join(todo.select(keys).lazy(), on=keys, how="semi", nulls_equal=True)
    exact = _collect(rows.group_by(keys).agg(pl.col(value).top_k(depth).sort(descending=True).alias("_top"))).with_columns(
        pl.col("_top").list.get(1, null_on_oob=True).fill_null(0.0).cast(pl.Float64).alias("_top2"),
        pl.col("_top").list.head(k_n).list.sum().cast(pl.Float64).alias("_topn"),
    ).drop("_top")
    grouped = grouped.drop(TOP2, TOPN).join(exact, on=keys, how="left", nulls_equal=True)
    return grouped.with_columns(pl.col("_top2").alias(TOP2), pl.col("_topn").alias(TOPN)).drop("_top2", "_topn")
