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
from enclave.disclosure.rules import TOPN
from enclave.disclosure.verdict import Verdict

Where = Callable[[int, str], str]  # (data row index, column) -> location in words

INTEGER = r"^\s*[+\-]?\d+\s*$"
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


def _hits(frame: pl.DataFrame, column: str, expr: pl.Expr, limit: int = 1000) -> tuple[list[int], list[str], int]:
    """Row indices and values of ``column`` where ``expr`` holds (first ``limit``), and how many."""
    flagged = frame.select(pl.int_range(pl.len()).alias("_row"), pl.col(column).alias("_v"), expr.alias("_hit")).filter("_hit")
    return flagged["_row"].head(limit).to_list(), flagged["_v"].head(limit).to_list(), flagged.height


def check_cells(frame: pl.DataFrame, policy: DisclosurePolicy, where: Where) -> list[Finding]:
    """Formula cells and direct identifiers, anywhere in the table (headers included)."""
    findings: list[Finding] = []
    markers = [m.lower() for m in policy.suppressed_markers]
    formula_locations: list[str] = []
    formula_total = 0
    identifier_hits: dict[str, list[str]] = {}
    header_text = "\n".join(frame.columns)
    for kind, _ in find_identifiers(header_text):
        identifier_hits.setdefault(kind, []).append("header")
    for column in frame.columns:
        if re.match(FORMULA, column) and not re.match(NUMBER, column):
            formula_locations.append(f"header {column!r}")
            formula_total += 1
        s = pl.col(column)
        looks_formula = s.str.contains(FORMULA) & ~s.str.contains(NUMBER) & ~s.str.strip_chars().str.to_lowercase().is_in(markers)
        rows, _, total = _hits(frame, column, looks_formula, MAX_LOCATIONS)
        formula_locations += [where(r, column) for r in rows]
        formula_total += total
        rows, values, _ = _hits(frame, column, s.str.contains(COMBINED))
        for row, value in zip(rows, values):
            for kind, match in find_identifiers(value):
                identifier_hits.setdefault(kind, []).append(f"{where(row, column)} ({mask(match)})")
        if BIRTH_COLUMN.search(column):
            rows, _, total = _hits(frame, column, s.str.contains(FULL_DATE))
            if total:
                identifier_hits.setdefault("date of birth", []).extend(where(r, column) for r in rows)
    if formula_total:
        findings.append(_finding("formula", Verdict.FAIL,
                                 f"{formula_total} cell(s) start with =, +, -, @ and would run as spreadsheet formulas; remove them or quote them as text",
                                 formula_locations, formula_total))
    for kind, locations in identifier_hits.items():
        findings.append(_finding("direct_identifier", Verdict.FAIL,
                                 f"{len(locations)} {kind}(s) found; remove every direct identifier", locations))
    return findings


def _classify(frame: pl.DataFrame, column: str, markers: list[str]) -> str:
    """'integer', 'number' or 'text', judged over cells that are not blank or markers."""
    s = pl.col(column)
    filled = ~(s.is_null() | (s.str.strip_chars() == "") | s.str.strip_chars().str.to_lowercase().is_in(markers))
    counts = frame.select(
        filled.sum().alias("filled"),
        (filled & s.str.contains(INTEGER)).sum().alias("integer"),
        (filled & s.str.contains(NUMBER)).sum().alias("number"),
    ).row(0, named=True)
    if counts["filled"] == 0:
        return "text"
    if counts["integer"] == counts["filled"]:
        return "integer"
    if counts["number"] == counts["filled"]:
        return "number"
    return "text"


def check_values(frame: pl.DataFrame, policy: DisclosurePolicy, where: Where) -> list[Finding]:
    """Microdata, counts and other statistics, for a table that came without evidence."""
    markers = [m.lower() for m in policy.suppressed_markers]
    limits = policy.checker
    kinds = {c: _classify(frame, c, markers) for c in frame.columns}
    count_words = set(limits.count_column_words)
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
        pl.int_range(pl.len()).alias("_row"), pl.col(column).str.strip_chars().cast(pl.Int64, strict=False).alias("n")
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
        values = frame.get_column(column).str.strip_chars().cast(pl.Int64, strict=False).drop_nulls()
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
    if evidence.analysis.get("aggfunc") in (None, "count"):
        stats = stats.select("n")
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
    return findings
