"""The disclosure rules: one function per rule, one signature, a registry by name.

Every rule reads a frame of *cell statistics* (one row per cell of an output) and returns,
per cell, a verdict rank (0 pass, 1 review, 2 fail) and a short reason. The columns a
rule may read:

========== ==================================================================
``n``        number of records (people) contributing to the cell
``total``    sum of the cell's values (null for a pure count)
``top1``     largest single contribution
``top2``     second largest contribution (null: not computed, bounded below)
``topn``     sum of the ``nk_dominance.n`` largest contributions (null: bounded)
``negatives`` number of negative contributions
``missing``  number of missing contributions
``dof``      residual degrees of freedom of a model
========== ==================================================================

A rule whose input column is absent does not apply and passes every cell. When an exact
top contribution is not given, a rule uses its upper bound (for non-negative values
``top2 <= min(top1, total - top1)`` and ``topn <= min(n_k * top1, total)``), so a
missing figure can only make a verdict stricter. The formulas are in docs/disclosure.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from enclave.disclosure.policy import DisclosurePolicy

N, TOTAL, TOP1, TOP2, TOPN = "n", "total", "top1", "top2", "topn"
NEGATIVES, MISSING, DOF = "negatives", "missing", "dof"
STATUS, REASON = "status", "reason"

RuleFn = Callable[[pl.DataFrame, DisclosurePolicy], pl.DataFrame]


@dataclass(frozen=True)
class Rule:
    """A registered rule: its name, what it checks, and the function."""

    name: str
    summary: str
    fn: RuleFn


RULES: dict[str, Rule] = {}


def register(name: str, summary: str) -> Callable[[RuleFn], RuleFn]:
    """Register ``fn`` under ``name``; the summary heads every finding of the rule."""

    def decorate(fn: RuleFn) -> RuleFn:
        if name in RULES:
            raise ValueError(f"rule {name!r} is registered twice")
        RULES[name] = Rule(name, summary, fn)
        return fn

    return decorate


def _result(stats: pl.DataFrame, status: pl.Expr, reason: pl.Expr) -> pl.DataFrame:
    return stats.select(
        status.fill_null(0).cast(pl.Int8).alias(STATUS),
        pl.when(status.fill_null(0) > 0).then(reason).otherwise(None).cast(pl.String).alias(REASON),
    )


def _not_applicable(stats: pl.DataFrame) -> pl.DataFrame:
    return pl.DataFrame(
        {STATUS: pl.Series([0] * stats.height, dtype=pl.Int8), REASON: pl.Series([None] * stats.height, dtype=pl.String)}
    )


def _has(stats: pl.DataFrame, *columns: str) -> bool:
    return all(c in stats.columns and stats[c].null_count() < stats.height for c in columns)


@register("threshold", "cells with too few contributors")
def threshold(stats: pl.DataFrame, policy: DisclosurePolicy) -> pl.DataFrame:
    """Fail when ``0 < n < threshold`` (zero cells are the ``zeros`` rule's business)."""
    if not _has(stats, N):
        return _not_applicable(stats)
    n = pl.col(N)
    return _result(
        stats,
        pl.when((n > 0) & (n < policy.threshold)).then(2).otherwise(0),
        pl.format("n={} < {}", n, pl.lit(policy.threshold)),
    )


@register("zeros", "empty cells (a zero can reveal that nobody has an attribute)")
def zeros(stats: pl.DataFrame, policy: DisclosurePolicy) -> pl.DataFrame:
    """Fail when ``n == 0`` and the policy holds zeros disclosive."""
    if not _has(stats, N) or not policy.zeros_disclosive:
        return _not_applicable(stats)
    return _result(stats, pl.when(pl.col(N) == 0).then(2).otherwise(0), pl.lit("n=0"))


def _dominance_undefined(policy: DisclosurePolicy) -> tuple[pl.Expr, pl.Expr]:
    """Rank and reason for cells whose dominance is undefined (negatives, missing values)."""
    neg = pl.col(NEGATIVES).fill_null(0) > 0
    miss = pl.col(MISSING).fill_null(0) > 0
    rank = (
        pl.when(neg).then(policy.negative_values.rank).when(miss).then(policy.missing_values.rank).otherwise(None)
    )
    reason = (
        pl.when(neg)
        .then(pl.format("{} negative value(s): dominance undefined", pl.col(NEGATIVES)))
        .otherwise(pl.format("{} missing value(s): dominance undefined", pl.col(MISSING)))
    )
    return rank, reason


def _with_defaults(stats: pl.DataFrame) -> pl.DataFrame:
    missing = [pl.lit(None, dtype=pl.Float64).alias(c) for c in (TOP2, TOPN) if c not in stats.columns]
    missing += [pl.lit(0, dtype=pl.Int64).alias(c) for c in (NEGATIVES, MISSING) if c not in stats.columns]
    return stats.with_columns(missing) if missing else stats


@register("nk_dominance", "cells dominated by their largest contributors")
def nk_dominance(stats: pl.DataFrame, policy: DisclosurePolicy) -> pl.DataFrame:
    """Fail when the ``n`` largest contributions make up ``k`` or more of the total.

    ``topn / total >= k``. A cell whose total is zero has nothing to dominate and passes.
    """
    if not _has(stats, TOTAL, TOP1):
        return _not_applicable(stats)
    stats = _with_defaults(stats)
    nk = policy.nk_dominance
    total = pl.col(TOTAL)
    topn = pl.coalesce(pl.col(TOPN), pl.min_horizontal(pl.col(TOP1) * nk.n, total))
    ratio = pl.when(total > 0).then(topn / total).otherwise(0.0)
    undefined_rank, undefined_reason = _dominance_undefined(policy)
    status = pl.when(undefined_rank.is_not_null()).then(undefined_rank).when(ratio >= nk.k).then(2).otherwise(0)
    reason = (
        pl.when(undefined_rank.is_not_null())
        .then(undefined_reason)
        .otherwise(pl.format("top {} share {} >= {}", pl.lit(nk.n), ratio.round(3), pl.lit(nk.k)))
    )
    return _result(stats, status, reason)


@register("p_percent", "cells whose largest contribution others could estimate too closely")
def p_percent(stats: pl.DataFrame, policy: DisclosurePolicy) -> pl.DataFrame:
    """Fail when ``(total - top1 - top2) / top1 < p``.

    The second largest contributor, knowing their own value, could estimate the largest
    to within p percent. A cell whose largest contribution is zero passes.
    """
    if not _has(stats, TOTAL, TOP1):
        return _not_applicable(stats)
    stats = _with_defaults(stats)
    total, top1 = pl.col(TOTAL), pl.col(TOP1)
    top2 = pl.coalesce(pl.col(TOP2), pl.min_horizontal(top1, (total - top1).clip(lower_bound=0)))
    ratio = pl.when(top1 > 0).then((total - top1 - top2) / top1).otherwise(None)
    undefined_rank, undefined_reason = _dominance_undefined(policy)
    status = (
        pl.when(undefined_rank.is_not_null())
        .then(undefined_rank)
        .when(ratio.is_not_null() & (ratio < policy.p_percent))
        .then(2)
        .otherwise(0)
    )
    reason = (
        pl.when(undefined_rank.is_not_null())
        .then(undefined_reason)
        .otherwise(pl.format("p ratio {} < {}", ratio.round(3), pl.lit(policy.p_percent)))
    )
    return _result(stats, status, reason)


@register("dof", "models with too few residual degrees of freedom")
def dof(stats: pl.DataFrame, policy: DisclosurePolicy) -> pl.DataFrame:
    """Fail when a model's residual degrees of freedom are below ``dof``."""
    if not _has(stats, DOF):
        return _not_applicable(stats)
    d = pl.col(DOF)
    return _result(stats, pl.when(d < policy.dof).then(2).otherwise(0), pl.format("dof={} < {}", d, pl.lit(policy.dof)))


@register("rounding", "counts not rounded to the base the policy requires")
def rounding(stats: pl.DataFrame, policy: DisclosurePolicy) -> pl.DataFrame:
    """Fail when the policy requires rounding and a shown count is not a multiple of ``base``."""
    if not policy.rounding.required or not _has(stats, N):
        return _not_applicable(stats)
    base = policy.rounding.base
    n = pl.col(N)
    return _result(
        stats,
        pl.when(n % base != 0).then(2).otherwise(0),
        pl.format("n={} is not a multiple of {}", n, pl.lit(base)),
    )
