"""Checked summaries: ``describe`` (summary statistics) and ``histogram`` (bin counts)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from enclave.disclosure.findings import Finding, evaluate
from enclave.disclosure.policy import DisclosurePolicy, load_disclosure_policy
from enclave.disclosure.rules import STATUS, TOP1, TOP2, TOPN, TOTAL, N
from enclave.disclosure.verdict import Verdict, worst
from enclave.errors import InvalidInput
from enclave.safe.frames import as_names, require_columns, to_polars
from enclave.safe.result import SafeResult
from enclave.safe.stats import cell_stats
from enclave.safe.tables import COUNT_RULES, VALUE_RULES

# Minimum and maximum are single people's values, so describe never shows them.
STATISTICS = ("count", "mean", "std", "25%", "50%", "75%")


def describe(data: Any, columns: str | Sequence[str] | None = None, *, policy: DisclosurePolicy | None = None) -> SafeResult:
    """Checked summary statistics of numeric columns: one row per column.

    Shows count, mean, std and quartiles (never min or max: each is one person's value).
    A column failing a rule has all its statistics suppressed; its count alone is held
    to the count rules.
    """
    policy = policy or load_disclosure_policy()
    frame = to_polars(data)
    names = as_names(columns, "columns") or [c for c, t in frame.schema.items() if t.is_numeric()]
    if not names:
        raise InvalidInput("no numeric columns to describe; name them with columns=[...]")
    require_columns(frame, names)
    rows, cells, shown = [], [], []
    for name in names:
        if not frame.schema[name].is_numeric():
            raise InvalidInput(f"column {name!r} is not numeric ({frame.schema[name]}); describe numeric columns only")
        base = cell_stats(frame.select(name), [], name, "mean", policy)
        figures = frame.select(
            pl.col(name).count().alias("count"), pl.col(name).mean().alias("mean"), pl.col(name).std().alias("std"),
            *(pl.col(name).quantile(q, "linear").alias(f"{int(q * 100)}%") for q in (0.25, 0.5, 0.75)),
        ).row(0, named=True)
        for statistic in STATISTICS:
            row = base
            if statistic == "count":  # a count reveals no one's value: only the count rules apply
                row = base.with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in (TOTAL, TOP1, TOP2, TOPN))
            rows.append(row)
            cells.append((name, statistic))
            shown.append(figures[statistic])
    stats = pl.concat(rows, how="diagonal_relaxed")
    evaluation = evaluate(stats, policy, VALUE_RULES, cells)
    failing_columns = {cells[i][0] for i, rank in enumerate(evaluation.ranks[STATUS]) if rank >= Verdict.FAIL.rank}
    hidden = [cell[0] in failing_columns for cell in cells]
    values = np.array([np.nan if h or v is None else v for v, h in zip(shown, hidden)], dtype=float)
    table = pd.DataFrame(values.reshape(len(names), len(STATISTICS)), index=pd.Index(names, name="column"),
                         columns=list(STATISTICS))
    return SafeResult(
        table=table, status=evaluation.status, findings=evaluation.findings,
        suppressed=[c for c, h in zip(cells, hidden) if h], secondary=[],
        cell_stats=stats, cells=cells, margin_flags=[False] * len(cells), cell_ranks=evaluation.ranks,
        hidden=hidden, policy=policy, rules=list(VALUE_RULES),
        analysis={"kind": "describe", "columns": names},
    )


def histogram(
    data: Any,
    column: str,
    bins: int = 10,
    range: tuple[float, float] | None = None,  # noqa: A002 - the name numpy and matplotlib use
    *,
    policy: DisclosurePolicy | None = None,
) -> SafeResult:
    """Checked histogram data: counts of ``column`` in equal-width bins.

    Give ``range=`` (rounded, outside the data): edges taken from the data's own minimum
    and maximum reveal those two people's values, so the result then needs review. Values
    outside ``range`` are left out. Bins failing the count rules are suppressed.
    """
    policy = policy or load_disclosure_policy()
    if not isinstance(bins, int) or bins < 1:
        raise InvalidInput(f"bins must be a whole number of at least 1, got {bins!r}")
    frame = to_polars(data)
    require_columns(frame, [column])
    if not frame.schema[column].is_numeric():
        raise InvalidInput(f"column {column!r} is not numeric ({frame.schema[column]}); histograms need numbers")
    v = frame.get_column(column).drop_nulls().cast(pl.Float64)
    if v.len() == 0:
        raise InvalidInput(f"column {column!r} has no values")
    extra_findings = []
    if range is None:
        lo, hi = float(v.min()), float(v.max())
        extra_findings.append(Finding("bin_edges", Verdict.REVIEW,
                                      "the outer bin edges are the data's minimum and maximum (two people's values); give range=(low, high) rounded outside the data"))
    else:
        lo, hi = float(range[0]), float(range[1])
        if not hi > lo:
            raise InvalidInput(f"range must be (low, high) with high > low, got {range!r}")
    edges = np.linspace(lo, hi, bins + 1)
    width = (hi - lo) / bins if hi > lo else 1.0
    binned = (
        pl.DataFrame({"x": v})
        .filter((pl.col("x") >= lo) & (pl.col("x") <= hi))
        .select(((pl.col("x") - lo) / width).floor().clip(0, bins - 1).cast(pl.Int64).alias("bin"))
        .group_by("bin").agg(pl.len().cast(pl.Int64).alias(N))
    )
    stats = pl.DataFrame({"bin": list(np.arange(bins))}, schema={"bin": pl.Int64}).join(binned, on="bin", how="left").sort("bin")
    stats = stats.with_columns(pl.col(N).fill_null(0)).drop("bin")
    labels = [f"[{edges[i]:g}, {edges[i + 1]:g}{']' if i == bins - 1 else ')'}" for i in np.arange(bins)]
    cells = [(label, "count") for label in labels]
    evaluation = evaluate(stats, policy, COUNT_RULES, cells)
    hidden = [rank >= Verdict.FAIL.rank for rank in evaluation.ranks[STATUS]]
    counts = [None if h else n for n, h in zip(stats[N].to_list(), hidden)]
    if policy.rounding.required:
        base = policy.rounding.base
        counts = [None if c is None else int(np.floor(c / base + 0.5) * base) for c in counts]
    table = pd.DataFrame({"bin_left": edges[:-1], "bin_right": edges[1:], "count": pd.array(counts, dtype="Int64")},
                         index=pd.Index(labels, name="bin"))
    findings = evaluation.findings + extra_findings
    return SafeResult(
        table=table, status=worst(f.status for f in findings), findings=findings,
        suppressed=[c for c, h in zip(cells, hidden) if h], secondary=[],
        cell_stats=stats, cells=cells, margin_flags=[False] * bins, cell_ranks=evaluation.ranks,
        hidden=hidden, policy=policy, rules=list(COUNT_RULES),
        analysis={"kind": "histogram", "column": column, "bins": bins, "range": [lo, hi], "range_given": range is not None},
    )
