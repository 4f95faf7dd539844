"""Rules for tables found in output files (CSV, TSV, markdown, HTML, JSON records).

Every column arrives as text. Work is vectorised with polars so a large CSV is checked at
disk speed: coarse patterns run over whole columns and only their hits are looked at in
Python. Without evidence, counts are recognised by their column names; other numbers can
only be judged by a person.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import polars as pl

from enclave.disclosure.checker.identifiers import BIRTH_COLUMN, COMBINED, FULL_DATE, find_identifiers, mask
from enclave.disclosure.evidence import Evidence, stats_of
from enclave.disclosure.findings import Finding, evaluate
from enclave.disclosure.policy import DisclosurePolicy
from enclave.disclosure.rules import RULES, TOPN
from enclave.disclosure.verdict import Verdict

Where = Callable[[int, str], str]  # (data row index, column) -> location in words

NUMBER = r"^\s*[+\-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+\-]?\d+)?\s*%?\s*$"
FORMULA = r"^[\t\r ]*[=@+\-]"
LABEL_WORDS = frozenset({
    "year", "years", "age", "month", "week", "day", "quarter", "code", "id", "band", "group", "decade",
    "period", "rank", "order", "level", "stage", "category", "class", "region", "site", "index", "bin",
    "lower", "upper", "from", "to", "start", "end", "date",
})
PERSON_ID_WORDS = frozenset({"id", "patient", "person", "subject", "mrn", "nhs", "chi", "participant", "pseudo", "pid"})
QUASI_WORDS = frozenset({"age", "sex", "gender", "ethnicity", "ethnic", "postcode", "lsoa", "dob", "birth",
                         "death", "imd", "deprivation", "occupation", "religion"})
MAX_LOCATIONS = 20


def words(name: str) -> set[str]:
    return set(re.findall(r"[a-z]+", name.lower()))


def _finding(rule: str, status: Verdict, message: str, locations: list[str], total: int | None = None) -> Finding:
    total = len(locations) if total is None else total
    more = f" (+{total - MAX_LOCATIONS} more)" if total > MAX_LOCATIONS else ""
    return Finding(rule, status, message + more, locations=locations[:MAX_LOCATIONS])


def _rows_with(frame: pl.DataFrame, column: str, values: list[str], limit: int = MAX_LOCATIONS) -> list[int]:
    """Indices of the first ``limit`` rows whose ``column`` holds one of ``values``."""
    if not values:
        return []
    return (
        frame.select(pl.int_range(pl.len()).alias("_row"), _text(frame, column).is_in(values).alias("_hit"))
        .filter("_hit")["_row"].head(limit).to_list()
    )


def _text(frame: pl.DataFrame, column: str) -> pl.Expr:
    """The column as text, however the reader typed it."""
    return pl.col(column).cast(pl.String)


def classify(values: pl.Series, markers: list[str]) -> str:
    """'integer', 'number' or 'text', judged over values that are not blank or markers."""
    stripped = values.str.strip_chars()
    filled = stripped.filter((stripped != "") & ~stripped.str.to_lowercase().is_in(markers))
    if filled.len() == 0:
        return "text"
    if filled.cast(pl.Int64, strict=False).null_count() == 0:
        return "integer"
    if filled.str.strip_suffix("%").str.strip_chars().cast(pl.Float64, strict=False).null_count() == 0:
        return "number"
    return "text"


def profile(frame: pl.DataFrame, policy: DisclosurePolicy) -> dict[str, tuple[str, pl.Series]]:
    """Per column: its kind and its distinct values (per-value tests then run once per value).

    Columns the CSV reader already parsed as numbers skip the text tests; for them the
    distinct values are those long enough to be an NHS or phone number, as text.
    """
    markers = [m.lower() for m in policy.suppressed_markers]
    result = {}
    for column, dtype in frame.schema.items():
        series = frame.get_column(column)
        if dtype.is_integer():
            long = series.filter(series.abs() >= 10**8).unique().cast(pl.String)
            result[column] = ("integer", pl.concat([long, "0" + long]))
        elif dtype.is_float():
            result[column] = ("number", pl.Series([], dtype=pl.String))
        else:
            values = series.cast(pl.String).drop_nulls().unique()
            result[column] = (classify(values, markers), values)
    return result


def as_int(frame: pl.DataFrame, column: str) -> pl.Expr:
    """A column as whole numbers, whether read as text or as numbers (markers become null)."""
    if frame.schema[column].is_integer():
        return pl.col(column).cast(pl.Int64)
    return pl.col(column).cast(pl.String).str.strip_chars().cast(pl.Int64, strict=False)


def check_cells(frame: pl.DataFrame, policy: DisclosurePolicy, where: Where,
                columns: dict[str, tuple[str, pl.Series]] | None = None) -> list[Finding]:
    """Formula cells and direct identifiers, anywhere in the table (headers included)."""
    columns = columns if columns is not None else profile(frame, policy)
    findings: list[Finding] = []
    markers = [m.lower() for m in policy.suppressed_markers]
    formula_locations: list[str] = []
    formula_total = 0
    identifier_hits: dict[str, list[str]] = {}
    for kind, _ in find_identifiers("\n".join(frame.columns)):
        identifier_hits.setdefault(kind, []).append("header")
    for column, (kind, values) in columns.items():
        if re.match(FORMULA, column) and not re.match(NUMBER, column):
            formula_locations.append(f"header {column!r}")
            formula_total += 1
        if kind == "number":
            continue  # plain numbers are neither formulas nor identifiers
        if kind == "text":
            lowered = values.str.strip_chars().str.to_lowercase()
            formulas = values.filter(values.str.contains(FORMULA) & ~values.str.contains(NUMBER) & ~lowered.is_in(markers)).to_list()
            if formulas:
                formula_total += frame.select(_text(frame, column).is_in(formulas).sum()).item()
                formula_locations += [where(r, column) for r in _rows_with(frame, column, formulas)]
            candidates = values.filter(values.str.contains(COMBINED))
        else:  # whole numbers can still be NHS or phone numbers
            candidates = values.filter(values.str.strip_chars().str.len_bytes().is_between(10, 13))
        by_kind: dict[str, list[str]] = {}
        for value in candidates.to_list():
            for found, _ in find_identifiers(value):
                by_kind.setdefault(found, []).append(value)
        if BIRTH_COLUMN.search(column):
            dates = values.filter(values.str.contains(FULL_DATE)).to_list()
            if dates:
                by_kind.setdefault("date of birth", []).extend(dates)
        for found, hits in by_kind.items():
            if frame.schema[column].is_integer():  # read as a number: its leading zero is gone
                hits = [h[1:] if h.startswith("0") and len(h) > 1 else h for h in hits]
            rows = _rows_with(frame, column, hits)
            total = frame.select(_text(frame, column).is_in(hits).sum()).item()
            located = [f"{where(r, column)} ({mask(str(frame.item(r, column)))})" for r in rows]
            identifier_hits.setdefault(found, []).extend(located + [""] * (total - len(located)))
    if formula_total:
        findings.append(_finding("formula", Verdict.FAIL,
                                 f"{formula_total} cell(s) start with =, +, -, @ and would run as spreadsheet formulas; remove them or quote them as text",
                                 formula_locations, formula_total))
    for kind, locations in identifier_hits.items():
        shown = [loc for loc in locations if loc]
        findings.append(_finding("direct_identifier", Verdict.FAIL,
                                 f"{len(locations)} {kind}(s) found; remove every direct identifier", shown, len(locations)))
    return findings


def _has_whole_numbers(values: pl.Series) -> bool:
    return values.str.strip_chars().cast(pl.Int64, strict=False).drop_nulls().len() > 0


def check_values(frame: pl.DataFrame, policy: DisclosurePolicy, where: Where,
                 columns: dict[str, tuple[str, pl.Series]] | None = None) -> list[Finding]:
    """Microdata, counts and other statistics, for a table that came without evidence.

    A text column holding some whole numbers (``12``, ``NA``, ``3``) is judged on those
    numbers: one stray word must not hide a small count.
    """
    columns = columns if columns is not None else profile(frame, policy)
    count_words = set(policy.checker.count_column_words)
    kinds = {}
    for column, (kind, values) in columns.items():
        kinds[column] = "integer" if kind == "text" and _has_whole_numbers(values) else kind
    counts = [c for c in frame.columns if kinds[c] == "integer" and words(c) & count_words]
    findings = _microdata(frame, policy, kinds, counts)
    first = frame.columns[0] if frame.columns else None
    for column in frame.columns:
        if kinds[column] == "text" or column in counts:
            continue
        label = bool(words(column) & LABEL_WORDS) or (
            column == first and frame.get_column(column).n_unique() == frame.height
        )
        if label:
            continue
        if kinds[column] == "integer":
            findings += _count_rules(frame, column, policy, where, Verdict.REVIEW,
                                     f"column {column!r} looks like counts (name count columns e.g. 'n' or 'count')")
        else:
            findings.append(Finding("unchecked_values", Verdict.REVIEW,
                                    f"column {column!r} holds statistics other than counts; without evidence a reviewer must check them (build the table with enclave.safe to pass automatically)",
                                    locations=[f"column {column!r}"]))
    for column in counts:
        findings += _count_rules(frame, column, policy, where, Verdict.FAIL, f"count column {column!r}")
    return findings


def _count_rules(frame: pl.DataFrame, column: str, policy: DisclosurePolicy, where: Where, cap: Verdict, what: str) -> list[Finding]:
    n = pl.col("n")
    suspicious = n < policy.threshold
    if policy.rounding.required:
        suspicious = suspicious | (n % policy.rounding.base != 0)
    candidates = frame.select(
        pl.int_range(pl.len()).alias("_row"), as_int(frame, column).alias("n")
    ).filter(suspicious.fill_null(False))
    if candidates.height == 0:
        return []
    rows = candidates["_row"].to_list()
    evaluation = evaluate(candidates.select("n"), policy, ["threshold", "zeros", "rounding"], rows,
                          [where(r, column) for r in rows])
    capped = []
    for f in evaluation.findings:
        status = min(f.status, cap)
        capped.append(_finding(f.rule, status, f"{what}: {f.message}", f.locations))
    return capped


def _microdata(frame: pl.DataFrame, policy: DisclosurePolicy, kinds: dict[str, str], counts: list[str]) -> list[Finding]:
    if frame.height < policy.checker.microdata_min_rows:
        return []
    reasons = []
    for column in counts:
        values = frame.select(as_int(frame, column)).to_series().drop_nulls()
        if values.len() and values.max() == 1:
            reasons.append(f"count column {column!r} is 1 in every row")
    if not counts:
        for column in frame.columns:
            tokens = words(column)
            if tokens & PERSON_ID_WORDS and frame.get_column(column).n_unique() == frame.height:
                reasons.append(f"column {column!r} is a unique identifier per row")
        quasi = [c for c in frame.columns if words(c) & QUASI_WORDS]
        if len(quasi) >= 2:
            reasons.append(f"columns {quasi} describe individuals")
    if not reasons:
        return []
    return [Finding("microdata", Verdict.FAIL,
                    f"{frame.height} rows look like one person each ({'; '.join(reasons)}); only aggregate results may leave",
                    locations=[f"{frame.height} rows"])]


def check_evidence(evidence: Evidence, policy: DisclosurePolicy) -> list[Finding]:
    """Re-run the rules over the evidence's figures under ``policy``; every failing cell must be hidden."""
    stats = stats_of(evidence)
    if evidence.policy.get("nk_dominance", {}).get("n") != policy.nk_dominance.n:
        stats = stats.with_columns(pl.lit(None, dtype=pl.Float64).alias(TOPN))  # computed for another n: use the bound
    rules = [r for r in evidence.rules if r != "dof"] or ["threshold", "zeros"]
    if "dof" in evidence.rules:
        stats = stats.with_columns(pl.lit(evidence.analysis.get("dof"), dtype=pl.Int64).alias("dof"))
        rules.append("dof")
    labels = [f"cell ({', '.join(map(str, c.row))} / {', '.join(map(str, c.column))})" for c in evidence.cells]
    evaluation = evaluate(stats, policy, rules, list(range(len(labels))), labels)
    findings = []
    for f in evaluation.findings:
        exposed = [labels[i] for i in f.cells if not evidence.cells[i].suppressed]
        if f.status is Verdict.FAIL and not exposed:
            continue  # every failing cell is suppressed in the output
        if f.status is Verdict.FAIL:
            findings.append(_finding(f.rule, Verdict.FAIL,
                                     f"{len(exposed)} cell(s) shown although they fail '{f.rule}' under policy {policy.version}; rebuild the output with enclave.safe",
                                     exposed))
        else:
            findings.append(_finding(f.rule, f.status, f.message, f.locations))
    # Findings of the library's own checks (e.g. histogram bin edges) stand as recorded.
    for recorded in evidence.findings:
        if recorded.get("rule") not in RULES:
            findings.append(Finding(str(recorded.get("rule")), Verdict(recorded.get("status", "review")),
                                    str(recorded.get("message", "")), locations=list(recorded.get("locations", []))))
    return findings
