"""Dates in any common written form, and whether a set of dates follows a calendar.

Aggregate outputs label rows by periods (days, weeks, months, years on a regular step);
per-person dates (of birth, of admission) fall anywhere. So a set of full dates that is
not on a regular step is taken for row-level data, whatever the column is called.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable

_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
           "october", "november", "december")
_MONTH_RE = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_ORD = r"(?:st|nd|rd|th)?"
# Rust-regex compatible (no look-around) so polars can run it over whole columns.
DATE_PATTERN = (
    r"(?i)(?:\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(?:\D|$)"                      # 1961-03-03, 1961/03/03
    r"|\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b"                           # 03/03/1961, 3.3.61
    r"|\b\d{1,2}" + _ORD + r"(?:\s+of)?[\s\-]+" + _MONTH_RE + r",?[\s\-]+\d{2,4}\b"  # 3 March 1961, 03-Mar-61
    r"|\b" + _MONTH_RE + r"\s+\d{1,2}" + _ORD + r",?\s+\d{4}\b"        # March 3rd, 1961
    r"|\b(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\b)"    # 19610303
)
_DATE = re.compile(DATE_PATTERN[4:], re.IGNORECASE)
_NUMERIC = re.compile(r"(\d+)[-/.](\d+)[-/.](\d+)")
_WORDS_DMY = re.compile(r"(\d{1,2})" + _ORD + r"(?:\s+of)?[\s\-]+([a-z]+)\.?,?[\s\-]+(\d{2,4})", re.IGNORECASE)
_WORDS_MDY = re.compile(r"([a-z]+)\.?\s+(\d{1,2})" + _ORD + r",?\s+(\d{4})", re.IGNORECASE)
_COMPACT = re.compile(r"((?:19|20)\d{2})(\d{2})(\d{2})")


def _month(word: str) -> int | None:
    word = word.lower().rstrip(".")
    for i, name in enumerate(_MONTHS, start=1):
        if len(word) >= 3 and name.startswith(word[:3]) and (len(word) == 3 or name.startswith(word) or word == "sept"):
            return i
    return None


def _year(value: int) -> int:
    return value + (1900 if value >= 30 else 2000) if value < 100 else value


def _make(y: int, m: int, d: int) -> dt.date | None:
    try:
        return dt.date(_year(y), m, d) if 1800 <= _year(y) <= 2200 else None
    except ValueError:
        return None


def parse_date(text: str) -> dt.date | None:
    """The date written in ``text`` (day-first before month-first when both fit), else None."""
    text = text.strip()
    match = _NUMERIC.search(text)
    if match:
        a, b, c = (int(g) for g in match.groups())
        if len(match.group(1)) == 4:
            return _make(a, b, c)
        return _make(c, b, a) or _make(c, a, b)
    match = _WORDS_DMY.search(text)
    if match and _month(match.group(2)):
        return _make(int(match.group(3)), _month(match.group(2)) or 0, int(match.group(1)))
    match = _WORDS_MDY.search(text)
    if match and _month(match.group(1)):
        return _make(int(match.group(3)), _month(match.group(1)) or 0, int(match.group(2)))
    match = _COMPACT.fullmatch(text)
    if match:
        return _make(*(int(g) for g in match.groups()))
    return None


def find_dates(text: str) -> list[tuple[str, dt.date]]:
    """Every full date in free text, as (the text matched, the date)."""
    found = []
    for match in _DATE.finditer(text):
        date = parse_date(match.group(0))
        if date is not None:
            found.append((match.group(0), date))
    return found


def on_calendar(dates: Iterable[dt.date]) -> bool:
    """True when the distinct dates step regularly: by a fixed number of days, whole weeks,
    or always on the same day of the month (or always on a month's last day)."""
    days = sorted(set(dates))
    if len(days) < 3:
        return True
    gaps = {(b - a).days for a, b in zip(days, days[1:])}
    if len(gaps) == 1 or all(g % 7 == 0 for g in gaps):
        return True
    if len({d.day for d in days}) == 1:
        return True
    return all((d + dt.timedelta(days=1)).day == 1 for d in days)
