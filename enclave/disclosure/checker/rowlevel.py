"""The row-level check: tables with one row per person, whatever their columns are called.

Per-person dates (any format, off any regular calendar), identifier-shaped keys, labels that
repeat (a table of groups has one row per group), quasi-identifiers with no count or
statistic beside them, labels filling little of their grid, unlabelled numeric rows.
"""

from __future__ import annotations

import re

import polars as pl

from enclave.disclosure.checker.dates import DATE_PATTERN, find_dates, on_calendar, parse_date
from enclave.disclosure.checker.registry import Part, PartKind, check
from enclave.disclosure.checker.tables import (
    AREA,
    KEY,
    MAX_LOCATIONS,
    PERSON_ID_WORDS,
    QUASI_WORDS,
    SAMPLE,
    SEX_VALUES,
    _count_columns,
    _label_column,
    _markers,
    _numeric,
    _rows_with,
    _where,
    as_int,
    profile,
    words,
)
from enclave.disclosure.findings import Finding, excerpt
from enclave.disclosure.policy import DisclosurePolicy
from enclave.disclosure.verdict import Verdict


def _date_column(values: pl.Series, frame: pl.DataFrame, column: str) -> list[tuple[str, object]]:
    """Distinct values of a column that are full dates (text, or YYYYMMDD whole numbers)."""
    dtype = frame.schema[column]
    if dtype.is_integer():
        series = frame.get_column(column)
        if series.len() == 0 or series.min() < 18000101 or series.max() > 22001231:  # type: ignore[operator]
            return []
        sample = series.unique().head(SAMPLE).cast(pl.String).to_list()
    elif dtype.is_float():
        return []
    else:
        sample = values.filter(values.str.contains(DATE_PATTERN)).head(SAMPLE).to_list()
    parsed = [(v, parse_date(v)) for v in sample]
    return [(v, d) for v, d in parsed if d is not None]


def _person_dates(part: Part, policy: DisclosurePolicy) -> dict[str, list[tuple[str, object]]]:
    if "dates" in part.cache:
        return part.cache["dates"]
    frame = part.frame
    assert frame is not None
    found = {}
    for column, (_, values) in profile(part, policy).items():
        dates = _date_column(values, frame, column)
        if len({d for _, d in dates}) >= policy.row_level.min_dates and not on_calendar(d for _, d in dates):
            found[column] = dates
    part.cache["dates"] = found
    return found


def _key_like(part: Part, policy: DisclosurePolicy) -> list[str]:
    """Text columns of identifier-shaped values (P0001234, hashes, UUIDs) with many distinct values."""
    if "keys" in part.cache:
        return part.cache["keys"]
    frame = part.frame
    assert frame is not None
    keys = []
    for column, (kind, values) in profile(part, policy).items():
        if kind != "text" or frame.height < policy.row_level.min_rows:
            continue
        filled = values.filter(~values.str.strip_chars().str.to_lowercase().is_in(_markers(policy)))
        if filled.len() < policy.row_level.min_rows or filled.len() < 0.5 * frame.height:
            continue  # few distinct values: labels of groups, not keys
        sample = filled.head(SAMPLE)
        shaped = (sample.str.contains(KEY) & ~sample.str.contains(AREA)).mean() or 0.0  # area codes are places
        if shaped >= 0.8:
            keys.append(column)
    part.cache["keys"] = keys
    return keys


def _distinct(part: Part, policy: DisclosurePolicy, column: str) -> int:
    kind, values = profile(part, policy)[column]
    assert part.frame is not None
    if part.frame.schema[column] == pl.String:
        return max(values.len(), 1)
    return max(part.frame.get_column(column).head(100_000).n_unique(), 1)  # a lower bound suffices


def _quasi_columns(part: Part, policy: DisclosurePolicy) -> list[str]:
    """Columns that describe a person: by name, by their values (sex codes, areas, dates, keys)."""
    frame = part.frame
    assert frame is not None
    quasi = []
    dates = _person_dates(part, policy)
    for column, (kind, values) in profile(part, policy).items():
        if words(column) & QUASI_WORDS or column in dates:
            quasi.append(column)
        elif kind == "text" and values.len():
            lowered = set(values.str.strip_chars().str.to_lowercase().head(50).to_list()) - {""}
            if 2 <= len(lowered) <= 4 and lowered <= SEX_VALUES:
                quasi.append(column)
            elif (values.head(SAMPLE).str.contains(AREA).mean() or 0.0) >= 0.8:
                quasi.append(column)
    return quasi + [k for k in _key_like(part, policy) if k not in quasi]


@check("row_level", PartKind.TABLE, "tables with one row per person, whatever their column names")
def row_level(part: Part, policy: DisclosurePolicy) -> list[Finding]:
    frame, where = part.frame, _where(part)
    assert frame is not None
    reasons: list[str] = []
    doubts: list[str] = []
    examples: list[str] = []
    person_dates = _person_dates(part, policy)
    for column, dates in person_dates.items():
        reasons.append(f"column {column!r} holds {len({d for _, d in dates})}+ dates off any calendar (dates of birth or events)")
        rows = _rows_with(frame, column, [v for v, _ in dates], 3)
        examples += [f"{where(r, column)}: {excerpt(frame.item(r, column))}" for r in rows]
    if not person_dates:  # dates spread over a row (a transposed table) count as well
        spread = [(v, d) for column, (_, values) in profile(part, policy).items() for v, d in _date_column(values, frame, column)]
        if len({d for _, d in spread}) > policy.row_level.max_dates_in_text and not on_calendar(d for _, d in spread):
            reasons.append(f"{len({d for _, d in spread})} dates off any calendar across the table")
            examples += [f"{part.where}: {excerpt(v)}" for v, _ in spread[:3]]
    header_dates = [d for _, d in find_dates("\n".join(frame.columns))]
    if len(set(header_dates)) > policy.row_level.max_dates_in_text and not on_calendar(header_dates):
        reasons.append(f"{len(set(header_dates))} dates off any calendar in the column names")
        examples.append(f"{part.where} header: {excerpt(', '.join(frame.columns[:6]))}")
    shaped_header = sum(bool(re.match(KEY, c)) for c in frame.columns)
    if shaped_header >= policy.row_level.min_rows:
        reasons.append(f"{shaped_header} column names are identifier-like keys (one column per person)")
        examples.append(f"{part.where} header: {excerpt(', '.join(frame.columns[:6]))}")
    counts = _count_columns(part, policy)
    for column in _key_like(part, policy):
        (doubts if counts else reasons).append(f"column {column!r} holds identifier-like keys ({frame.get_column(column).n_unique()} distinct)")
        examples.append(f"{where(0, column)}: {excerpt(frame.item(0, column))}")
    if frame.height >= policy.row_level.min_rows:
        quasi = _quasi_columns(part, policy)
        numeric = _numeric(part, policy)
        labels = [c for c in frame.columns if c not in numeric or c in quasi or _label_column(part, policy, c)]
        measures = [c for c in numeric if c not in labels]
        if labels and measures and quasi and _labels_repeat(frame, labels):
            reasons.append(f"rows repeat the same labels {labels[:5]} (a table of groups has one row per group)")
        if len(quasi) >= 2 and not measures:
            unique = frame.select(pl.struct(quasi).is_unique().mean()).item() or 0.0
            reasons.append(f"columns {quasi[:5]} describe people and there is no count or statistic ({unique:.0%} of rows unique)")
        if len(labels) >= 2 and quasi and measures:
            grid = _grid(part, policy, labels)
            if frame.height < 0.25 * grid:
                doubts.append(f"the labels {labels[:5]} fill {frame.height} of {grid} combinations: rows may be people, not groups")
        if not labels and not person_dates:
            doubts.append(f"{frame.height} rows of numbers with no label column: rows may be people, not groups")
    for column in counts:
        values = frame.select(as_int(frame, column)).to_series().drop_nulls()
        if frame.height >= policy.row_level.min_rows and values.len() and values.max() == 1:
            reasons.append(f"count column {column!r} is 1 in every row")
    if frame.height >= policy.checker.microdata_min_rows and not counts:
        for column in frame.columns:
            if words(column) & PERSON_ID_WORDS and frame.get_column(column).n_unique() == frame.height:
                reasons.append(f"column {column!r} is a unique identifier per row")
        named = [c for c in frame.columns if words(c) & QUASI_WORDS]
        if len(named) >= 2:
            reasons.append(f"columns {named[:5]} describe individuals")
    findings = []
    if reasons:
        findings.append(Finding("microdata", Verdict.FAIL,
                                f"{part.where}: {frame.height} rows look like one person each ({'; '.join(dict.fromkeys(reasons))}); only aggregate results may leave",
                                locations=(examples or [f"{part.where}: {frame.height} rows"])[:MAX_LOCATIONS]))
    elif doubts:
        findings.append(Finding("microdata", Verdict.REVIEW,
                                f"{part.where}: {frame.height} rows may be one person each ({'; '.join(dict.fromkeys(doubts))}); a reviewer must check",
                                locations=(examples or [f"{part.where}: {frame.height} rows"])[:MAX_LOCATIONS]))
    return findings


def _grid(part: Part, policy: DisclosurePolicy, labels: list[str]) -> int:
    """How many combinations the labels could form; a label fixed by another (a code and its
    description) adds none."""
    assert part.frame is not None
    head = part.frame.head(100_000)
    kept: list[str] = []
    grid = 1
    for column in labels[:8]:
        if any(head.select(pl.struct(k, column).n_unique()).item() == head.get_column(k).n_unique() for k in kept):
            continue
        kept.append(column)
        grid *= _distinct(part, policy, column)
    return grid


def _labels_repeat(frame: pl.DataFrame, labels: list[str]) -> bool:
    head = frame.head(100_000).select(labels)
    if head.is_duplicated().any():
        return True
    return frame.height > head.height and frame.select(labels).is_duplicated().any()
