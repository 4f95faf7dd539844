"""Checks on tables, wherever they were found (CSV, TSV, text, markdown, HTML, JSON, code).

Every table goes through the same checks. Work is vectorised with polars so a large CSV is
checked at disk speed: coarse patterns run over each column's *distinct* values and only
their hits are looked at in Python (the row-level check lives in ``rowlevel``). Numbers are judged wherever they sit: a whole number in
any column can be a count; a number inside a string (``3 (1.5%)``, ``n=4``, ``4/120``) is a
count. Row-level data is recognised by content (identifier-shaped keys, per-person dates,
labels that repeat, quasi-identifiers that single people out), not by column names alone.
"""

from __future__ import annotations

import re

import polars as pl

from enclave.disclosure.checker.dates import DATE_PATTERN
from enclave.disclosure.checker.identifiers import BIRTH_COLUMN, COMBINED, FULL_DATE, find_identifiers, mask
from enclave.disclosure.checker.registry import Part, PartKind, Where, check
from enclave.disclosure.evidence import Evidence, stats_of
from enclave.disclosure.findings import Finding, evaluate, excerpt
from enclave.disclosure.policy import DisclosurePolicy
from enclave.disclosure.rules import RULES, TOPN
from enclave.disclosure.verdict import Verdict

NUMBER = r"^\s*[+\-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+\-]?\d+)?\s*%?\s*$"
FORMULA = r"^[\t\r ]*[=@+\-]"
# A count written inside a string: "3 (1.5%)", "n=4", "4/120", "4 of 120".
COUNT_IN_STRING = (
    r"(?i)^\s*(?:(\d+)\s*\(\s*[<>]?\s*\d+(?:\.\d+)?\s*%?\s*\)"
    r"|n\s*[=:]\s*(\d+)"
    r"|(\d+)\s*(?:/|of|out of)\s*(\d+)"
    r"|(\d+)\s*%?\s*\[\s*\d+(?:\.\d+)?\s*%?\s*\])\s*$"
)
LABEL_WORDS = frozenset({
    "year", "years", "age", "month", "week", "day", "quarter", "code", "id", "band", "group", "decade",
    "period", "rank", "order", "level", "stage", "category", "class", "region", "site", "index", "bin",
    "lower", "upper", "from", "to", "start", "end", "date", "decile", "quintile", "tertile", "position",
})
# Statistics of values (not counts, not rates): their dominance needs evidence.
VALUE_WORDS = frozenset({"mean", "average", "avg", "median", "sum", "sd", "std", "min", "max", "iqr",
                         "variance", "var", "mode", "q1", "q3", "quartile", "cost", "income"})
PERSON_ID_WORDS = frozenset({"id", "patient", "person", "subject", "mrn", "nhs", "chi", "participant", "pseudo", "pid"})
QUASI_WORDS = frozenset({"age", "sex", "gender", "ethnicity", "ethnic", "postcode", "lsoa", "dob", "birth",
                         "death", "imd", "deprivation", "occupation", "religion"})
SEX_VALUES = frozenset({"m", "f", "u", "male", "female", "unknown", "other", "x", "i", "indeterminate"})
AREA = r"^\s*(?:[A-Z]{1,2}\d[A-Z\d]?|[EWSN]0\d{7})\s*$"
KEY = r"^\s*(?:[A-Za-z]{0,4}[-_ ]?\d{6,}[A-Za-z]?|[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}|[0-9a-f]{12,}|[A-Z]{1,3}\d{2,}[A-Z]{1,3}\d*)\s*$"
MISSING = ["nan", "<na>", "none", "null", "nat", "na", "n/a", ""]
MAX_LOCATIONS = 20
SAMPLE = 2000
_BOUND = re.compile(r"^\s*[\[(]?\s*\d*\.?\d+\s*%?\s*[\])]?\s*$")


def words(name: str) -> set[str]:
    return set(re.findall(r"[a-z]+|\d+", name.lower()))


def _finding(rule: str, status: Verdict, message: str, locations: list[str], total: int | None = None) -> Finding:
    total = len(locations) if total is None else total
    more = f" (+{total - MAX_LOCATIONS} more)" if total > MAX_LOCATIONS else ""
    return Finding(rule, status, message + more, locations=locations[:MAX_LOCATIONS])


def _rows_with(frame: pl.DataFrame, column: str, values: list[str], limit: int = MAX_LOCATIONS) -> list[int]:
    """Indices of the first ``limit`` rows whose ``column`` holds one of ``values``."""
    if not values:
        return []
    return (
        frame.select(pl.int_range(pl.len()).alias("_row"), _text(column).is_in(values).alias("_hit"))
        .filter("_hit")["_row"].head(limit).to_list()
    )


def _text(column: str) -> pl.Expr:
    """The column as text, however the reader typed it."""
    return pl.col(column).cast(pl.String)


def _markers(policy: DisclosurePolicy) -> list[str]:
    return [m.lower() for m in policy.suppressed_markers] + MISSING


def classify(values: pl.Series, markers: list[str]) -> str:
    """'integer', 'number' or 'text', judged over values that are not blank or markers."""
    stripped = values.str.strip_chars()
    filled = stripped.filter(~stripped.str.to_lowercase().is_in(markers))
    if filled.len() == 0:
        return "text"
    if filled.cast(pl.Int64, strict=False).null_count() == 0:
        return "integer"
    if filled.str.strip_suffix("%").str.strip_chars().cast(pl.Float64, strict=False).null_count() == 0:
        return "number"
    return "text"


def profile(part: Part, policy: DisclosurePolicy) -> dict[str, tuple[str, pl.Series]]:
    """Per column: its kind and its distinct values as text (cached on the part).

    Columns the CSV reader already parsed as numbers skip the text tests; for them the
    distinct values are those long enough to be an NHS or phone number.
    """
    if "profile" in part.cache:
        return part.cache["profile"]
    frame = part.frame
    assert frame is not None
    markers = _markers(policy)
    result = {}
    for column, dtype in frame.schema.items():
        series = frame.get_column(column)
        if dtype.is_integer():
            long = series.filter(series.abs() >= 10**7).unique().cast(pl.String)
            result[column] = ("integer", pl.concat([long, "0" + long]))
        elif dtype.is_float():
            result[column] = ("number", pl.Series([], dtype=pl.String))
        else:
            values = series.cast(pl.String).drop_nulls().unique()
            result[column] = (classify(values, markers), values)
    part.cache["profile"] = result
    return result


def as_int(frame: pl.DataFrame, column: str) -> pl.Expr:
    """A column as whole numbers, whether read as text or as numbers (markers become null)."""
    if frame.schema[column].is_integer():
        return pl.col(column).cast(pl.Int64)
    return pl.col(column).cast(pl.String).str.strip_chars().cast(pl.Int64, strict=False)


def _where(part: Part) -> Where:
    return part.locate or (lambda row, column: f"{part.where} row {row + 1}, column {column!r}")


# --- cell content -----------------------------------------------------------------------


@check("formula", PartKind.TABLE, "cells that would run as spreadsheet formulas")
def formula_cells(part: Part, policy: DisclosurePolicy) -> list[Finding]:
    frame, where = part.frame, _where(part)
    assert frame is not None
    markers = _markers(policy)
    locations: list[str] = []
    total = 0
    for column, (kind, values) in profile(part, policy).items():
        if re.match(FORMULA, column) and not re.match(NUMBER, column):
            locations.append(f"{part.where} header {excerpt(column)}")
            total += 1
        if kind != "text":
            continue
        lowered = values.str.strip_chars().str.to_lowercase()
        hits = values.filter(values.str.contains(FORMULA) & ~values.str.contains(NUMBER) & ~lowered.is_in(markers)).to_list()
        if hits:
            total += frame.select(_text(column).is_in(hits).sum()).item()
            locations += [f"{where(r, column)}: {excerpt(frame.item(r, column))}" for r in _rows_with(frame, column, hits)]
    if not total:
        return []
    return [_finding("formula", Verdict.FAIL,
                     f"{total} cell(s) start with =, +, -, @ and would run as spreadsheet formulas; remove them or quote them as text",
                     locations, total)]


@check("direct_identifier", PartKind.TABLE, "NHS numbers, emails, phone numbers, postcodes, SSNs, dates of birth in cells")
def identifier_cells(part: Part, policy: DisclosurePolicy) -> list[Finding]:
    frame, where = part.frame, _where(part)
    assert frame is not None
    hits_by_kind: dict[str, list[str]] = {}
    for kind, _ in find_identifiers("\n".join(frame.columns)):
        hits_by_kind.setdefault(kind, []).append(f"{part.where} header")
    for column, (kind, values) in profile(part, policy).items():
        if kind == "number":
            continue  # plain decimals are not identifiers
        if kind == "text":
            candidates = values.filter(values.str.contains(COMBINED))
        else:  # whole numbers can still be NHS or phone numbers
            candidates = values.filter(values.str.strip_chars().str.len_bytes().is_between(10, 13))
        by_kind: dict[str, list[str]] = {}
        for value in candidates.head(SAMPLE * 5).to_list():
            for found, _ in find_identifiers(value):
                by_kind.setdefault(found, []).append(value)
        if BIRTH_COLUMN.search(column) and kind == "text":
            dates = values.filter(values.str.contains(FULL_DATE) | values.str.contains(DATE_PATTERN)).to_list()
            if dates:
                by_kind.setdefault("date of birth", []).extend(dates)
        for found, hits in by_kind.items():
            if frame.schema[column].is_integer():  # read as a number: its leading zero is gone
                hits = [h[1:] if h.startswith("0") and len(h) > 1 else h for h in hits]
            rows = _rows_with(frame, column, hits)
            total = frame.select(_text(column).is_in(hits).sum()).item()
            located = [f"{where(r, column)} ({mask(str(frame.item(r, column)))})" for r in rows]
            hits_by_kind.setdefault(found, []).extend(located + [""] * (total - len(located)))
    return [_finding("direct_identifier", Verdict.FAIL, f"{len(locs)} {kind}(s) found; remove every direct identifier",
                     [loc for loc in locs if loc], len(locs))
            for kind, locs in hits_by_kind.items()]


# --- helpers shared with the row-level check (rowlevel.py) ---------------------------


def _is_index(frame: pl.DataFrame, column: str) -> bool:
    """0..n-1 or 1..n in order: row numbers, not data."""
    if frame.schema[column].is_float() or not frame.height:
        return False
    first = frame.head(1).select(as_int(frame, column)).item()
    if first not in (0, 1):
        return False  # the cheap test first: most columns are no index
    values = frame.select(as_int(frame, column)).to_series()
    return values.null_count() == 0 and bool(values.diff().drop_nulls().eq(1).all())


def _numeric(part: Part, policy: DisclosurePolicy) -> list[str]:
    kinds = _kinds(part, policy)
    return [c for c, k in kinds.items() if k in ("integer", "number")]


# --- counts and other statistics (tables without verified evidence) ---------------------


def _kinds(part: Part, policy: DisclosurePolicy) -> dict[str, str]:
    """Column kinds; a text column holding some whole numbers (``12``, ``NA``, ``3``) counts
    as whole numbers, so one stray word cannot hide a small count."""
    if "kinds" in part.cache:
        return part.cache["kinds"]
    kinds = {}
    for column, (kind, values) in profile(part, policy).items():
        if kind == "text" and values.str.strip_chars().cast(pl.Int64, strict=False).drop_nulls().len() > 0:
            kind = "integer"
        kinds[column] = kind
    part.cache["kinds"] = kinds
    return kinds


def _count_columns(part: Part, policy: DisclosurePolicy) -> list[str]:
    count_words = set(policy.checker.count_column_words)
    return [c for c, k in _kinds(part, policy).items() if k == "integer" and words(c) & count_words]


def _label_column(part: Part, policy: DisclosurePolicy, column: str) -> bool:
    """A whole-number column that labels rows (a year, an age band, row numbers)."""
    frame = part.frame
    assert frame is not None
    cached = part.cache.setdefault("labels", {})
    if column not in cached:
        if _is_index(frame, column):
            cached[column] = True
        elif not words(column) & LABEL_WORDS:
            cached[column] = False
        else:  # a label needs something to label: when its numbers are the only ones, they are the data
            cached[column] = any(c != column and not words(c) & LABEL_WORDS for c in _numeric(part, policy))
    return cached[column]


@check("counts", PartKind.TABLE, "small counts and zeros in any column, and counts written inside strings")
def counts(part: Part, policy: DisclosurePolicy) -> list[Finding]:
    if part.evidence is not None:
        return []  # the verified evidence carries the exact counts (check "evidence")
    frame, where = part.frame, _where(part)
    assert frame is not None
    findings: list[Finding] = []
    kinds = _kinds(part, policy)
    named = set(_count_columns(part, policy))
    keyvalue = part.origin == "keyvalue" or _listing(part, policy)
    for column in frame.columns:
        if kinds[column] != "integer":
            continue
        if column in named:
            findings += _count_rules(frame, as_int(frame, column), column, policy, where, Verdict.FAIL, f"count column {column!r}")
        elif not keyvalue and not _label_column(part, policy, column) and not words(column) & (VALUE_WORDS | set(policy.row_level.derived_words)):
            findings += _count_rules(frame, as_int(frame, column), column, policy, where, Verdict.REVIEW,
                                     f"column {column!r} looks like counts (name count columns e.g. 'n' or 'count')")
    if _listing(part, policy):
        findings += _listed_counts(part, policy)
    for column, (kind, values) in profile(part, policy).items():
        if kind != "text":
            continue
        hits = values.filter(values.str.contains(COUNT_IN_STRING))
        if hits.len() == 0:
            continue
        parts = hits.str.extract_groups(COUNT_IN_STRING)
        numbers = pl.concat([parts.struct.field(f).cast(pl.Int64, strict=False) for f in parts.struct.fields])
        small = numbers.drop_nulls()
        bad = small.filter((small < policy.threshold) & ((small > 0) | policy.zeros_disclosive))
        if bad.len() == 0 and not policy.rounding.required:
            continue
        # Each string's numbers as rows, then the count rules over them.
        exploded = (frame.select(pl.int_range(pl.len()).alias("_row"), _text(column).alias("_v"))
                    .filter(pl.col("_v").is_in(hits.to_list()))
                    .with_columns(pl.col("_v").str.extract_groups(COUNT_IN_STRING).alias("_g"))
                    .unnest("_g"))
        groups = [c for c in exploded.columns if c not in ("_row", "_v")]
        long = exploded.unpivot(index=["_row", "_v"], on=groups, value_name="n").with_columns(
            pl.col("n").cast(pl.Int64, strict=False)).drop_nulls("n")
        if long.height == 0:
            continue
        rows = long["_row"].to_list()
        shown = [f"{where(r, column)}: {excerpt(v)}" for r, v in zip(rows, long["_v"].to_list(), strict=True)]
        evaluation = evaluate(long.select("n"), policy, ["threshold", "zeros", "rounding"], list(range(long.height)), shown)
        findings += [_finding(f.rule, f.status, f"counts written in column {column!r}: {f.message}", f.locations)
                     for f in evaluation.findings]
    return findings


def _listing(part: Part, policy: DisclosurePolicy) -> bool:
    """A "key: value" listing (a model summary's header as an HTML table), not a table of groups."""
    if "listing" in part.cache:
        return part.cache["listing"]
    frame = part.frame
    assert frame is not None
    result = False
    if frame.width >= 2 and frame.height:
        column = frame.columns[0]
        kind, values = profile(part, policy)[column]
        if kind == "text" and values.str.strip_chars().str.ends_with(":").any():  # distinct values first: cheap
            first = frame.get_column(column).cast(pl.String).str.strip_chars()
            result = bool((first.str.ends_with(":").sum() or 0) * 2 >= frame.height)
        result = result or column.strip().endswith(":")
    part.cache["listing"] = result
    return result


def _listed_counts(part: Part, policy: DisclosurePolicy) -> list[Finding]:
    """In a "key: value" listing, a value whose key names a count ("Deaths:") is a count."""
    frame, where = part.frame, _where(part)
    assert frame is not None
    count_words = set(policy.checker.count_column_words)
    cells = []
    for r, row in enumerate(frame.head(1000).rows()):
        for k in range(0, len(row) - 1):
            key, value = str(row[k] or ""), str(row[k + 1] or "").strip()
            if key.strip().endswith(":") and words(key) & count_words and re.fullmatch(r"\d+", value):
                cells.append((int(value), f"{where(r, frame.columns[k + 1])}: {excerpt(key + ' ' + value)}"))
    if not cells:
        return []
    evaluation = evaluate(pl.DataFrame({"n": [n for n, _ in cells]}), policy, ["threshold", "zeros", "rounding"],
                          list(range(len(cells))), [loc for _, loc in cells])
    return [_finding(f.rule, f.status, f"counts listed by name: {f.message}", f.locations) for f in evaluation.findings]


def _count_rules(frame: pl.DataFrame, values: pl.Expr, column: str, policy: DisclosurePolicy, where: Where,
                 cap: Verdict, what: str) -> list[Finding]:
    n = pl.col("n")
    suspicious = n < policy.threshold
    if policy.rounding.required:
        suspicious = suspicious | (n % policy.rounding.base != 0)
    candidates = frame.select(pl.int_range(pl.len()).alias("_row"), values.alias("n")).filter(suspicious.fill_null(False))
    if candidates.height == 0:
        return []
    rows = candidates["_row"].to_list()
    evaluation = evaluate(candidates.select("n"), policy, ["threshold", "zeros", "rounding"], rows,
                          [where(r, column) for r in rows])
    return [_finding(f.rule, min(f.status, cap), f"{what}: {f.message}", f.locations) for f in evaluation.findings]


@check("unchecked_values", PartKind.TABLE, "statistics of values (means, sums) whose dominance needs evidence")
def unchecked_values(part: Part, policy: DisclosurePolicy) -> list[Finding]:
    if part.evidence is not None or part.origin in ("fixed-width", "keyvalue") or _listing(part, policy):
        return []
    derived = set(policy.row_level.derived_words)
    findings = []
    context = part.cache.get("context_words", set())
    for column, kind in _kinds(part, policy).items():
        tokens = words(column) | {column.strip().lower()}
        if kind != "number" and not (kind == "integer" and tokens & VALUE_WORDS):
            continue
        tokens |= context
        if _BOUND.match(column):
            continue  # a quantile or confidence bound ("[0.025", "97.5%") of a model or summary
        if tokens & {"err", "error", "se"}:
            tokens -= {"std", "sd"}  # a standard error is a model statistic, not a spread of values
        if tokens & derived and not tokens & VALUE_WORDS:
            continue  # a rate, percentage or model statistic: its counts are checked on their own
        findings.append(Finding("unchecked_values", Verdict.REVIEW,
                                f"{part.where}: column {column!r} holds statistics other than counts; without evidence a reviewer must check them (build the table with enclave.safe to pass automatically)",
                                locations=[f"{part.where} column {column!r}"]))
    return findings


@check("unlabelled", PartKind.TABLE, "numbers without labels (bare arrays, tables without a header)")
def unlabelled(part: Part, policy: DisclosurePolicy) -> list[Finding]:
    if part.origin not in ("bare", "headerless"):
        return []
    frame = part.frame
    assert frame is not None
    sample = ", ".join(str(v) for v in frame.head(8).rows())
    return [Finding("unlabelled", Verdict.REVIEW,
                    f"{part.where}: {frame.height} row(s) of values without labels; a reviewer cannot tell what they are (label them, or leave them out)",
                    locations=[f"{part.where}: {excerpt(sample, 80)}"])]


# --- verified evidence -------------------------------------------------------------------


@check("evidence", PartKind.TABLE, "a table with verified evidence: the rules re-run over its exact figures")
def evidence_rules(part: Part, policy: DisclosurePolicy) -> list[Finding]:
    if part.evidence is None:
        return []
    return check_evidence(part.evidence, policy)


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


def frame_of(header: list[str], rows: list[list[str]]) -> pl.DataFrame:
    """A table given as lists of strings, as a frame of text columns with unique names."""
    names, seen = [], {}
    for i, name in enumerate(header):
        name = str(name).strip() or f"column {i + 1}"
        if name in seen:
            seen[name] += 1
            name = f"{name} ({seen[name]})"
        else:
            seen[name] = 1
        names.append(name)
    width = len(names)
    rows = [([("" if v is None else str(v)) for v in r] + [""] * width)[:width] for r in rows]
    return pl.DataFrame({name: [r[i] for r in rows] for i, name in enumerate(names)}, schema={n: pl.String for n in names})
