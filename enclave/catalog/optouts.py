"""Opt-outs: patients who declined the use of their data for research.

The registry itself lives in the database (see ``enclave.catalog.service``); this module
owns what does not need it: reading an opt-out list from a file, normalising identifiers
so that " 123 " in a list matches 123 in a table, and the filter that excludes them.
Only counts of excluded rows and patients are ever recorded, never who.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import polars as pl

from enclave.catalog.dictionary import DataDictionary
from enclave.errors import InvalidInput

MAX_IDENTIFIER_LENGTH = 128


def normalise(identifier: str) -> str:
    """The form identifiers are compared in: trimmed text (a number stays its digits)."""
    value = str(identifier).strip()
    if not value or len(value) > MAX_IDENTIFIER_LENGTH or any(c in value for c in "\r\n\t,"):
        raise InvalidInput(
            f"{value[:40]!r} is not a patient identifier: give 1-{MAX_IDENTIFIER_LENGTH} characters, "
            "no commas or line breaks"
        )
    return value


def normalise_all(identifiers: Iterable[str]) -> list[str]:
    """Normalised, de-duplicated, sorted identifiers; a bad one refuses them all."""
    return sorted({normalise(i) for i in identifiers})


def read_optout_file(path: Path) -> list[str]:
    """Identifiers from a file with one per line (a header line ``patient_id`` is skipped)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"{path} does not exist: give a text file with one patient identifier per line") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{path} is not UTF-8 text: export it as UTF-8 with one identifier per line") from None
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if lines and lines[0].lower() in {"patient_id", "identifier", "id"}:
        lines = lines[1:]
    bad = [n for n, line in enumerate(lines, start=1) if "," in line or len(line) > MAX_IDENTIFIER_LENGTH]
    if bad:
        raise InvalidInput(f"{path}: entry {bad[0]} is not a single identifier: one identifier per line, no commas")
    return normalise_all(lines)


def is_opted_out(column: str, optouts: Iterable[str]) -> pl.Expr:
    """True for rows whose patient identifier is in ``optouts`` (compared as text)."""
    values = pl.Series("optouts", list(optouts), dtype=pl.String).implode()
    return pl.col(column).cast(pl.String).str.strip_chars().is_in(values).fill_null(False)


def resolve_patient_keys(
    frames: dict[str, pl.LazyFrame], dictionary: DataDictionary, optouts: Iterable[str]
) -> list[str]:
    """The patient keys to exclude: the opt-outs themselves plus the keys of patients an
    opt-out names through another column (``optout: true``, e.g. an NHS number)."""
    wanted = list(optouts)
    keys = set(wanted)
    if not wanted:
        return []
    for table, frame in frames.items():
        spec = dictionary.tables[table]
        patient, others = spec.patient_column, spec.optout_columns
        if patient is None or not others:
            continue
        named = pl.any_horizontal([is_opted_out(c, wanted) for c in others])
        found = frame.select(pl.col(patient).filter(named).cast(pl.String).unique()).collect()[patient]
        keys.update(found.drop_nulls().to_list())
    return sorted(keys)
