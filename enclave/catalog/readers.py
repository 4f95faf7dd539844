"""Reading raw inputs (CSV, Parquet, FHIR NDJSON) as polars frames, lazily.

Each table of an input is read two ways:

- ``typed_frame``: the fast path, parsed straight into the dictionary's types by polars'
  native readers; it raises on the first unparsable value;
- ``string_frame``: every column as text plus its row number, for the slow diagnostic
  pass that lists every bad value (only run when something is wrong).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import polars as pl

from enclave.catalog.dictionary import ColumnType, DataDictionary, TableSpec
from enclave.catalog.parsing import exact_format, parse_expr
from enclave.catalog.report import Problem, ValidationReport
from enclave.errors import InvalidInput

ROW = "__row"  # 1-based data row number in string frames
WHERE = "__where"  # optional human location ("Patient.ndjson line 3")
_SAMPLE_ROWS = 1000


class SourceFormat(StrEnum):
    CSV = "csv"
    PARQUET = "parquet"
    FHIR = "fhir"


_SUFFIXES = {".csv": SourceFormat.CSV, ".parquet": SourceFormat.PARQUET, ".ndjson": SourceFormat.FHIR}


@dataclass(frozen=True)
class SourceTable:
    """One table of a CSV or Parquet input: the file it comes from."""

    name: str
    path: Path
    format: SourceFormat


def detect_format(source: Path) -> SourceFormat:
    """CSV, Parquet or FHIR from the file suffix(es); unknown means refusal."""
    if not source.exists():
        raise InvalidInput(f"{source} does not exist: give a CSV or Parquet file, or a directory of them or of FHIR NDJSON")
    files = sorted(source.iterdir()) if source.is_dir() else [source]
    found = {_SUFFIXES[f.suffix.lower()] for f in files if f.suffix.lower() in _SUFFIXES}
    if len(found) != 1:
        what = "no" if not found else "mixed (" + ", ".join(sorted(found)) + ")"
        raise InvalidInput(f"{source} holds {what} .csv/.parquet/.ndjson files: give one format, or --format")
    return found.pop()


def discover_tables(source: Path, fmt: SourceFormat, dictionary: DataDictionary) -> list[SourceTable]:
    """Match the files of a CSV or Parquet input to the dictionary's tables, exactly."""
    suffix = "." + fmt.value
    if source.is_file():
        if len(dictionary.tables) == 1:
            return [SourceTable(next(iter(dictionary.tables)), source, fmt)]
        dictionary.table(source.stem)
        raise InvalidInput(
            f"the dictionary declares {len(dictionary.tables)} tables but {source} is one file: "
            "give a directory with one file per table"
        )
    files = {f.stem: f for f in sorted(source.iterdir()) if f.suffix.lower() == suffix}
    extra = sorted(set(files) - set(dictionary.tables))
    missing = sorted(set(dictionary.tables) - set(files))
    if extra or missing:
        raise InvalidInput(
            f"{source}: files and dictionary tables differ (undeclared: {', '.join(extra) or 'none'}; "
            f"missing: {', '.join(missing) or 'none'}): one <table>{suffix} per declared table"
        )
    return [SourceTable(name, files[name], fmt) for name in dictionary.tables]


def check_columns(table: str, found: list[str], spec: TableSpec, report: ValidationReport) -> bool:
    """Record missing, undeclared and repeated columns; True if the header is usable."""
    ok = True
    dupes = sorted({c for c in found if found.count(c) > 1})
    for col in dupes:
        report.add(Problem(table, "header", col, "column appears more than once"))
        ok = False
    for col in [c for c in spec.columns if c not in found]:
        report.add(Problem(table, "header", col, "declared column is missing from the input"))
        ok = False
    for col in [c for c in found if c not in spec.columns]:
        report.add(Problem(table, "header", col, "column is not declared in the dictionary (it may identify people)"))
        ok = False
    return ok


def read_header(src: SourceTable, report: ValidationReport) -> list[str] | None:
    """The input's column names, or None (with a problem recorded) if it cannot be read."""
    try:
        if src.format is SourceFormat.CSV:
            if src.path.stat().st_size == 0:
                report.add(Problem(src.name, "file", None, "the file is empty"))
                return None
            return list(pl.read_csv(src.path, n_rows=0, infer_schema=False).columns)
        return list(pl.read_parquet_schema(src.path))
    except (pl.exceptions.PolarsError, OSError) as exc:
        report.add(Problem(src.name, "file", None, f"unreadable {src.format.value}: {first_line(exc)}"))
        return None


def typed_frame(src: SourceTable, header: list[str], spec: TableSpec, *, exact: bool = True) -> pl.LazyFrame:
    """The table parsed into its declared types (raises on the first bad value).

    ``exact``: date-times use the one format seen in the first rows (fast); a file whose
    later rows differ fails and is read again with ``exact=False``, the general format.
    """
    if src.format is SourceFormat.CSV:
        # Numbers parse natively (fast); dates, times and booleans are read as text and
        # parsed with an explicit format, much faster than the reader's own inference.
        native = {ColumnType.STRING, ColumnType.INTEGER, ColumnType.FLOAT}
        schema = {c: spec.columns[c].type.polars if spec.columns[c].type in native else pl.String() for c in header}
        formats: dict[str, str | None] = {}
        if exact:
            temporal = [c for c, col in spec.columns.items() if col.type in (ColumnType.DATE, ColumnType.DATETIME)]
            if temporal:
                try:
                    sample = pl.read_csv(src.path, n_rows=_SAMPLE_ROWS, infer_schema=False, columns=temporal)
                    formats = {c: exact_format(sample[c], spec.columns[c].type) for c in temporal}
                except pl.exceptions.PolarsError:
                    formats = {}  # unreadable start: the scan itself will report it
        frame = pl.scan_csv(src.path, schema=schema, raise_if_empty=False)
        return frame.select(
            [
                pl.col(c) if col.type in native else parse_expr(c, col.type, strict=True, exact=formats.get(c)).alias(c)
                for c, col in spec.columns.items()
            ]
        )
    stored = pl.read_parquet_schema(src.path)
    return pl.scan_parquet(src.path).select(
        [
            parse_expr(c, col.type, strict=True).alias(c)
            if stored.get(c) == pl.String and col.type is not ColumnType.STRING
            else pl.col(c).cast(col.type.polars, strict=True)
            for c, col in spec.columns.items()
        ]
    )


def string_frame(src: SourceTable, spec: TableSpec) -> pl.LazyFrame:
    """Every column as text, plus the 1-based row number, for diagnosis."""
    if src.format is SourceFormat.CSV:
        lf = pl.scan_csv(src.path, infer_schema=False, raise_if_empty=False, truncate_ragged_lines=False)
    else:
        lf = pl.scan_parquet(src.path)
    return lf.select([pl.col(c).cast(pl.String) for c in spec.columns]).with_row_index(ROW, offset=1)


def csv_ends_cleanly(path: Path) -> bool:
    """A CSV cut off mid-write does not end with a line break."""
    size = path.stat().st_size
    if size == 0:
        return True
    with open(path, "rb") as fh:
        fh.seek(size - 1)
        return fh.read(1) == b"\n"


def first_bad_utf8_line(path: Path) -> tuple[int, int] | None:
    """(line number, byte offset) of the first line that is not UTF-8, or None."""
    offset = 0
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return number, offset + exc.start
            offset += len(line)
    return None


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (polars' messages run to many lines)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
