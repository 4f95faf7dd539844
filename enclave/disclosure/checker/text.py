"""Checks on text, wherever it was found (a text file, a notebook output, a JSON string).

Tables inside a text are found by ``parts`` and checked as tables; these checks read the
text itself: direct identifiers, encoded payloads and other high-entropy runs, many
per-person dates, and regression summaries with too few residual degrees of freedom.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter

import polars as pl

from enclave.disclosure.checker.dates import find_dates, on_calendar
from enclave.disclosure.checker.identifiers import find_identifiers, mask
from enclave.disclosure.checker.registry import Part, PartKind, check
from enclave.disclosure.checker.tables import MAX_LOCATIONS, SAMPLE, _finding, profile
from enclave.disclosure.findings import Finding, evaluate, excerpt
from enclave.disclosure.policy import DisclosurePolicy
from enclave.disclosure.verdict import Verdict

DOF_LINE = re.compile(r"Df Residuals:\s+(\d+)")
# base64 (also url-safe) and hex tokens; hex groups separated by spaces, colons or dashes.
_BASE64 = re.compile(r"[A-Za-z0-9+/_\-]{8,}={0,2}")
_HEX_GROUPS = re.compile(r"(?:[0-9A-Fa-f]{2,8}[ :\-]){3,}[0-9A-Fa-f]{2,8}")
_TOKEN = re.compile(r"\S+")
_ESCAPED = re.compile(r"(?:\\x[0-9A-Fa-f]{2}|\\u[0-9A-Fa-f]{4}|\\[0-7]{3}|%[0-9A-Fa-f]{2}){2,}")
# A run this long without separators is no word, number or path (e.g. base64 of repetitive bytes).
_PLAIN_LONG = re.compile(r"[A-Za-z0-9+]{64,}={0,2}")
_WRAPPED = re.compile(r"(?:[A-Za-z0-9+/_\-]{8,}={0,2}[ \t]*\r?\n[ \t>#*]*){2,}[A-Za-z0-9+/_\-]*={0,2}")


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _entropy(token: str) -> float:
    counts = Counter(token)
    return -sum(c / len(token) * math.log2(c / len(token)) for c in counts.values())


def _mixed(token: str) -> bool:
    """Looks like base64 or hex rather than a word, a number or a path."""
    has_upper = any(c.isupper() for c in token)
    has_lower = any(c.islower() for c in token)
    has_digit = any(c.isdigit() for c in token)
    if has_upper and has_lower and has_digit:
        return True
    hexish = all(c in "0123456789abcdefABCDEF" for c in token)
    return hexish and has_digit and (has_upper or has_lower)


def encoded_runs(text: str, policy: DisclosurePolicy) -> list[tuple[int, str]]:
    """(offset, run) of every encoded-looking run: base64 wrapped over lines or not, hex with
    or without separators, and other tokens of high entropy."""
    minimum = policy.encoded.min_token
    spans: dict[int, str] = {}
    for match in _WRAPPED.finditer(text):
        joined = "".join(match.group(0).split()).replace(">", "").replace("#", "").replace("*", "")
        if len(joined) >= minimum and _mixed(joined):
            spans[match.start()] = match.group(0)
    covered = [(s, s + len(r)) for s, r in spans.items()]

    def inside(start: int) -> bool:
        return any(a <= start < b for a, b in covered)

    for match in _ESCAPED.finditer(text):  # b'\x89PNG...', %2C%31, \u0031 escapes of bytes
        spans[match.start()] = match.group(0)
        covered.append((match.start(), match.end()))
    for match in _HEX_GROUPS.finditer(text):
        run = match.group(0)
        digits = re.sub(r"[ :\-]", "", run)
        if len(digits) >= minimum and any(c in "abcdefABCDEF" for c in digits) and not inside(match.start()):
            spans[match.start()] = run
            covered.append((match.start(), match.end()))
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if len(token) < minimum or inside(match.start()):
            continue
        base = max((m.group(0) for m in _BASE64.finditer(token)), key=len, default="")
        if (len(base) >= minimum and (_mixed(base) or _PLAIN_LONG.fullmatch(base))) or _entropy(token) >= policy.encoded.entropy_bits:
            spans[match.start()] = token
    return sorted(spans.items())


def _encoded_finding(runs: list[tuple[str, str]], total: int, policy: DisclosurePolicy) -> list[Finding]:
    if total < policy.checker.max_encoded_run:
        return []
    return [_finding("encoded_blob", Verdict.FAIL,
                     f"{total} characters in {len(runs)} encoded-looking run(s) (base64, hex or other high-entropy text) could hide data; remove them",
                     [f"{where}: {excerpt(run)}" for where, run in runs], len(runs))]


@check("encoded_text", PartKind.TEXT, "base64 (any wrapping), hex (any spacing) and other high-entropy runs")
def encoded_text(part: Part, policy: DisclosurePolicy) -> list[Finding]:
    runs = encoded_runs(part.text, policy)
    total = sum(len(re.sub(r"\s|[:\-]", "", r)) for _, r in runs)
    return _encoded_finding([(f"{part.where} line {_line(part.text, o)}", r) for o, r in runs], total, policy)


@check("encoded_cells", PartKind.TABLE, "table cells holding base64, hex or other high-entropy runs")
def encoded_cells(part: Part, policy: DisclosurePolicy) -> list[Finding]:
    runs: list[tuple[str, str]] = []
    total = 0
    minimum = policy.encoded.min_token
    for column, (kind, values) in profile(part, policy).items():
        if kind != "text":
            continue
        long = values.filter(values.str.len_chars() >= minimum).head(SAMPLE)
        for value in long.to_list():
            for _, run in encoded_runs(value, policy):
                runs.append((f"{part.where} column {column!r}", run))
                total += len(re.sub(r"\s|[:\-]", "", run))
    return _encoded_finding(runs, total, policy)


@check("identifiers_in_text", PartKind.TEXT, "NHS numbers, emails, phone numbers, postcodes, SSNs, dates of birth in text")
def identifiers_in_text(part: Part, policy: DisclosurePolicy) -> list[Finding]:
    by_kind: dict[str, list[str]] = {}
    for kind, value in find_identifiers(part.text):
        by_kind.setdefault(kind, []).append(f"{part.where} line {_line(part.text, part.text.find(value))} ({mask(value)})")
    return [_finding("direct_identifier", Verdict.FAIL, f"{len(locs)} {kind}(s) found; remove every direct identifier", locs)
            for kind, locs in by_kind.items()]


@check("dates_in_text", PartKind.TEXT, "more full dates in a text than prose needs, off any calendar")
def dates_in_text(part: Part, policy: DisclosurePolicy) -> list[Finding]:
    found = find_dates(part.text)
    distinct = {d for _, d in found}
    if len(distinct) <= policy.row_level.max_dates_in_text or on_calendar(distinct):
        return []
    return [_finding("microdata", Verdict.FAIL,
                     f"{part.where}: {len(distinct)} different dates off any calendar (dates of birth or events?); only aggregate results may leave",
                     [f"{part.where}: {excerpt(text)}" for text, _ in found[:MAX_LOCATIONS]], len(found))]


@check("dof", PartKind.TEXT, "regression summaries with too few residual degrees of freedom")
def dof_in_text(part: Part, policy: DisclosurePolicy) -> list[Finding]:
    dofs = [int(m.group(1)) for m in DOF_LINE.finditer(part.text)]
    if not dofs:
        return []
    evaluation = evaluate(pl.DataFrame({"dof": dofs}), policy, ["dof"], [f"{part.where} model {i + 1}" for i in range(len(dofs))])
    return evaluation.findings


# Control, format (zero-width, bidi), private-use and tag characters: one pass of a regex.
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e"
                        "\u2060-\u206f\ufeff\ufff9-\ufffb\ue000-\uf8ff\U000e0000-\U000e007f\U000f0000-\U0010ffff]")
_TRAILING = re.compile(r"[ \t]*\t[ \t]*$|[ \t]* \t[ \t]*$", re.MULTILINE)


@check("hidden_characters", PartKind.TEXT, "invisible characters and whitespace patterns that can carry data")
def hidden_characters(part: Part, policy: DisclosurePolicy) -> list[Finding]:
    text = part.text
    invisible = [(m.start(), m.group(0)) for m in _INVISIBLE.finditer(text) if not (m.start() == 0 and m.group(0) == "\ufeff")]
    trailing = [m for m in _TRAILING.finditer(text) if m.group(0)]
    findings = []
    if len(invisible) >= policy.encoded.max_hidden:
        shown = [f"{part.where} line {_line(text, i)}: U+{ord(ch):04X} {unicodedata.name(ch, 'unnamed')}" for i, ch in invisible[:MAX_LOCATIONS]]
        findings.append(_finding("hidden_text", Verdict.FAIL,
                                 f"{len(invisible)} invisible or control character(s) (zero-width, private use) could carry data; remove them",
                                 shown, len(invisible)))
    if len(trailing) >= policy.encoded.max_hidden:
        shown = [f"{part.where} line {_line(text, m.start())}: {m.group(0)!r}" for m in trailing[:MAX_LOCATIONS]]
        findings.append(_finding("hidden_text", Verdict.FAIL,
                                 f"{len(trailing)} line(s) end in mixed tabs and spaces, which could carry data; strip trailing whitespace",
                                 shown, len(trailing)))
    return findings


# Tokens of a text, split on whitespace, commas, semicolons and pipes, without brackets or quotes.
_RECORD_SPLIT = re.compile(r"[\s,;|]+")
_YEARISH = re.compile(r"(?:19|20)\d{2}(?:\d{4})?")
_SEX = frozenset({"m", "f", "male", "female", "u", "x"})


def _shape(token: str) -> str:
    return re.sub(r"[0-9]+", "9", re.sub(r"[A-Za-z]+", "A", token))


def _carries_person(token: str) -> bool:
    """A token of several fields of which one is a year or date, or a sex code beside another field."""
    fields = [f for f in re.split(r"[^A-Za-z0-9]+", token) if f]
    if len(fields) < 2 or not any(c.isalpha() for c in token) or not any(c.isdigit() for c in token):
        return False
    if any(f.lower() in _SEX for f in fields):
        return True  # a sex code beside an area, a year, an age
    # a year or date among three fields or more (two-field names such as admissions_2019 are labels)
    return len(fields) >= 3 and any(_YEARISH.fullmatch(f) for f in fields)


@check("record_tokens", PartKind.TEXT, "many tokens of one shape carrying years, dates or sex codes: records written without delimiters")
def record_tokens(part: Part, policy: DisclosurePolicy) -> list[Finding]:
    by_shape: dict[str, set[str]] = {}
    for raw in _RECORD_SPLIT.split(part.text[:2_000_000]):
        token = raw.strip("()[]{}\"'`.:")
        if 4 <= len(token) <= 40 and _carries_person(token):
            by_shape.setdefault(_shape(token), set()).add(token)
    shape, tokens = max(by_shape.items(), key=lambda kv: len(kv[1]), default=("", set()))
    if len(tokens) < policy.row_level.min_record_tokens:
        return []
    shown = sorted(tokens)[:MAX_LOCATIONS]
    return [_finding("microdata", Verdict.FAIL,
                     f"{part.where}: {len(tokens)} different tokens shaped {shape!r} carry years, dates or sex codes: records of people "
                     f"written without delimiters; only aggregate results may leave",
                     [f"{part.where}: {excerpt(t)}" for t in shown], len(tokens))]
