"""Direct identifiers in text: NHS numbers, emails, phone numbers, postcodes, SSNs, birth dates.

Patterns are coarse on purpose; every candidate is then confirmed in Python (an NHS number
needs a valid modulus-11 check digit, an SSN a possible area/group/serial), so the fast
vectorised pass over a large table never has to be exact.
"""

from __future__ import annotations

import re

# Rust-regex compatible (no look-around): polars runs these over whole columns.
PATTERNS: dict[str, str] = {
    "email address": r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}",
    "NHS number": r"\b\d{3}[ \-]?\d{3}[ \-]?\d{4}\b",
    "phone number": r"(?:\+44\s?\(?0?\)?\s?|\b0)(?:7\d{3}\s?\d{3}\s?\d{3}|[1-3]\d{1,4}\s?\d{3,4}\s?\d{3,4})\b|\(\d{3}\)\s?\d{3}-\d{4}",
    "UK postcode": r"\b(?:[A-Z]{1,2}[0-9][A-Z0-9]?|GIR) ?[0-9][ABD-HJLNP-UW-Z]{2}\b",
    "US social security number": r"\b\d{3}-\d{2}-\d{4}\b",
    "date of birth": r"(?i)(?:\bdob\b|\bd\.o\.b\b|date of birth|birth ?date|\bborn\b)\W{0,6}(?:on\s+)?(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4}|\d{1,2}\s+[A-Za-z]{3,9}\s+\d{4})",
}
COMBINED = "|".join(f"(?:{p})" for p in PATTERNS.values())
_COMPILED = {name: re.compile(p.replace("(?i)", ""), re.IGNORECASE if p.startswith("(?i)") else 0) for name, p in PATTERNS.items()}

# A column whose name says "birth" holds dates of birth; any full date in it identifies.
BIRTH_COLUMN = re.compile(r"(?i)(?:\bdob\b|birth)")
FULL_DATE = r"^\s*(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4})(?:[ T].*)?\s*$"


def nhs_number_valid(candidate: str) -> bool:
    """Modulus 11: weights 10..2 over the first nine digits; 11 - remainder is the tenth."""
    digits = [int(ch) for ch in candidate if ch.isdigit()]
    if len(digits) != 10:
        return False
    check = 11 - sum(d * w for d, w in zip(digits[:9], range(10, 1, -1))) % 11
    if check == 11:
        check = 0
    return check != 10 and check == digits[9] and len(set(digits)) > 1


def ssn_valid(candidate: str) -> bool:
    area, group, serial = candidate.split("-")
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


def phone_valid(candidate: str) -> bool:
    """A UK number has 9 or 10 digits after the 0 or +44; the US form is fixed by its pattern."""
    digits = "".join(ch for ch in candidate if ch.isdigit())
    if candidate.lstrip().startswith("("):
        return len(digits) == 10
    national = digits[2:] if candidate.lstrip().startswith("+44") else digits[1:]
    national = national[1:] if national.startswith("0") else national
    return len(national) in (9, 10)


def _confirmed(kind: str, match: str) -> bool:
    if kind == "phone number":
        return phone_valid(match)
    if kind == "NHS number":
        return nhs_number_valid(match)
    if kind == "US social security number":
        return ssn_valid(match)
    return True


def find_identifiers(text: str) -> list[tuple[str, str]]:
    """Every confirmed identifier in ``text`` as (kind, the matched text)."""
    found = []
    for kind, pattern in _COMPILED.items():
        for match in pattern.finditer(text):
            value = match.group(0)
            if kind == "NHS number" and _COMPILED["phone number"].fullmatch(value):
                continue
            if _confirmed(kind, value):
                found.append((kind, value))
    return found


def mask(value: str) -> str:
    """Show where an identifier is without repeating it in a report."""
    value = value.strip()
    return value[:2] + "…" if len(value) > 3 else "…"

