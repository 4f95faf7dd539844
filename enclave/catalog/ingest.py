"""Building a dataset version from a raw input, without touching the database.

:func:`build_version` validates every table of a CSV, Parquet or FHIR input against the
data dictionary, drops opted-out patients, and writes one Parquet file per table plus a
manifest into a staging directory, reading each input once (polars streams the parse,
the opt-out filter, the checks and the statistics in one pass). Malformed input raises
:class:`~enclave.catalog.report.IngestRefused` listing the bad rows and columns, and the
caller deletes the staging directory: no partial version is ever published.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl
from rich.progress import Progress

from enclave.catalog import fhir
from enclave.catalog.dictionary import DataDictionary, TableSpec
from enclave.catalog.optouts import is_opted_out, resolve_patient_keys
from enclave.catalog.readers import (
    SourceFormat,
    SourceTable,
    check_columns,
    csv_ends_cleanly,
    discover_tables,
    first_bad_utf8_line,
    first_line,
    read_header,
    string_frame,
    typed_frame,
)
from enclave.catalog.report import Problem, ValidationReport
from enclave.catalog.stats import collect_stats, stat_exprs
from enclave.catalog.storage import checksum_files, listing_digest, write_manifest
from enclave.catalog.parsing import parse_expr
from enclave.catalog.validate import (
    DEFAULT_MAX_FIELD_BYTES,
    UNORDERED,
    check_exprs,
    diagnose,
    duplicate_count,
    failed_checks,
)

DICTIONARY_FILE = "dictionary.json"
_OPTOUT = "__opted_out"


@dataclass(frozen=True)
class IngestLimits:
    """Sizes beyond which input is refused as malformed."""

    max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES
    max_line_bytes: int = fhir.DEFAULT_MAX_LINE_BYTES
    # Inputs up to this size are parsed once and shared in memory by writer, checks and
    # statistics; larger ones stream in constant memory at the cost of a second read.
    single_pass_bytes: int = 2 * 1024**3


@dataclass
class TableResult:
    rows: int
    file: str
    stats: dict[str, dict[str, Any]]


@dataclass
class BuiltVersion:
    """What :func:`build_version` wrote into its directory."""

    directory: Path
    sha256: str
    tables: dict[str, TableResult] = field(default_factory=dict)
    excluded_rows: int = 0
    excluded_patients: int = 0

    @property
    def row_count(self) -> int:
        return sum(t.rows for t in self.tables.values())

    @property
    def stats(self) -> dict[str, Any]:
        return {
            "tables": {name: {"rows": t.rows, "columns": t.stats} for name, t in self.tables.items()},
            "excluded": {"rows": self.excluded_rows, "patients": self.excluded_patients},
        }


def build_version(
    source: Path,
    dictionary: DataDictionary,
    out_dir: Path,
    *,
    fmt: SourceFormat,
    optouts: list[str] | tuple[str, ...] = (),
    limits: IngestLimits = IngestLimits(),
    progress: Progress | None = None,
) -> BuiltVersion:
    """Validate ``source`` and write its tables, dictionary and manifest into ``out_dir``."""
    try:
        return _build(source, dictionary, out_dir, fmt, optouts, limits, progress)
    except BaseException:
        # Leave nothing half-written behind, whatever went wrong.
        for path in out_dir.iterdir():
            path.unlink()
        raise


def _build(
    source: Path,
    dictionary: DataDictionary,
    out_dir: Path,
    fmt: SourceFormat,
    optouts: list[str] | tuple[str, ...],
    limits: IngestLimits,
    progress: Progress | None,
) -> BuiltVersion:
    report = ValidationReport(str(source))
    built = BuiltVersion(directory=out_dir, sha256="")
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=".work-") as work:
        if fmt is SourceFormat.FHIR:
            inputs = _fhir_inputs(source, dictionary, Path(work), report, limits, progress)
        else:
            inputs = _file_inputs(source, fmt, dictionary, report)
        report.raise_if_bad()
        optouts = _patient_keys(inputs, dictionary, optouts)
        for table, tin in inputs.items():
            spec = dictionary.tables[table]
            task = progress.add_task(f"ingest {table}", total=None) if progress else None
            result = _write_table(table, spec, tin, out_dir / f"{table}.parquet", optouts, limits, report)
            if progress is not None and task is not None:
                progress.update(task, total=1, completed=1)
            if result is not None:
                rows, stats, excluded_rows, excluded_patients = result
                built.tables[table] = TableResult(rows=rows, file=f"{table}.parquet", stats=stats)
                built.excluded_rows += excluded_rows
                built.excluded_patients = max(built.excluded_patients, excluded_patients)
        report.raise_if_bad()
    (out_dir / DICTIONARY_FILE).write_text(_json(dictionary.to_json()))
    names = [f"{t}.parquet" for t in built.tables] + [DICTIONARY_FILE]
    files = checksum_files(out_dir, names, progress)
    built.sha256 = listing_digest(files)
    write_manifest(
        out_dir,
        {
            "format": 1,
            "files": files,
            "sha256": built.sha256,
            "tables": {n: {"file": t.file, "rows": t.rows} for n, t in built.tables.items()},
            "excluded": {"rows": built.excluded_rows, "patients": built.excluded_patients},
        },
    )
    return built


def _patient_keys(inputs: Inputs, dictionary: DataDictionary, optouts: list[str] | tuple[str, ...]) -> list[str]:
    """Opt-outs as patient keys (an opt-out may name a patient by e.g. NHS number)."""
    frames = {t: tin.text if tin.text is not None else tin.typed for t, tin in inputs.items()}
    try:
        return resolve_patient_keys(frames, dictionary, optouts)
    except pl.exceptions.PolarsError:
        return list(optouts)  # unreadable input: writing it fails and reports why


@dataclass(frozen=True)
class TableInput:
    """One table to write: its typed frame, and for diagnosis its text frame and file."""

    typed: pl.LazyFrame
    text: pl.LazyFrame | None
    size: int
    source: SourceTable | None = None
    general: pl.LazyFrame | None = None  # the typed frame without format guesses


Inputs = dict[str, TableInput]


def _file_inputs(source: Path, fmt: SourceFormat, dictionary: DataDictionary, report: ValidationReport) -> Inputs:
    """(typed frame, text frame) per table of a CSV or Parquet input, after header checks."""
    inputs: Inputs = {}
    for src in discover_tables(source, fmt, dictionary):
        spec = dictionary.tables[src.name]
        header = read_header(src, report)
        if header is None or not check_columns(src.name, header, spec, report):
            continue
        if fmt is SourceFormat.CSV and not csv_ends_cleanly(src.path):
            report.add(Problem(src.name, "end of file", None, "the last line has no line break: the file looks truncated"))
            continue
        # The text frame is lazy: only scanned if the fast path finds a problem.
        inputs[src.name] = TableInput(
            typed_frame(src, header, spec), string_frame(src, spec), src.path.stat().st_size, src,
            general=typed_frame(src, header, spec, exact=False),
        )
    return inputs


def _fhir_inputs(
    source: Path,
    dictionary: DataDictionary,
    work: Path,
    report: ValidationReport,
    limits: IngestLimits,
    progress: Progress | None,
) -> Inputs:
    """Flatten the export, then check every value (FHIR has no fast path: it is text)."""
    staged = fhir.flatten_export(source, dictionary, work, report, max_line_bytes=limits.max_line_bytes, progress=progress)
    inputs: Inputs = {}
    for table, path in staged.items():
        spec = dictionary.tables[table]
        text = pl.scan_parquet(path)
        diagnose(table, text, spec, report, limits.max_field_bytes)
        typed = text.select([parse_expr(c, col.type).cast(col.type.polars).alias(c) for c, col in spec.columns.items()])
        inputs[table] = TableInput(typed, None, path.stat().st_size)
    return inputs


def _write_table(
    table: str,
    spec: TableSpec,
    tin: TableInput,
    path: Path,
    optouts: list[str] | tuple[str, ...],
    limits: IngestLimits,
    report: ValidationReport,
) -> tuple[int, dict[str, Any], int, int] | None:
    """Write the kept rows, count opted-out ones, check and describe the table.

    Inputs up to ``limits.single_pass_bytes`` are parsed once, shared in memory by the
    writer, the checks and the statistics (fast; memory grows with the input). Larger
    inputs stream in constant memory: write the Parquet, then check and describe it.
    """
    patient, typed = spec.patient_column, tin.typed
    excluding = patient is not None and bool(optouts)
    flag = is_opted_out(patient, optouts) if excluding and patient else pl.lit(False)

    def excluded(opted_out: pl.Expr) -> list[pl.Expr]:
        patients = pl.col(patient).filter(opted_out).n_unique() if excluding and patient else pl.lit(0)
        return [opted_out.sum().alias("excluded_rows"), patients.alias("excluded_patients")]

    summary_exprs = check_exprs(spec, limits.max_field_bytes) + stat_exprs(spec)
    try:
        if tin.size <= limits.single_pass_bytes:
            base = typed.with_columns(flag.alias(_OPTOUT)).cache()
            kept = base.filter(~pl.col(_OPTOUT)).drop(_OPTOUT)
            _, counts, summary = pl.collect_all(
                [kept.sink_parquet(path, lazy=True), base.select(excluded(pl.col(_OPTOUT))), kept.select(summary_exprs)]
            )
        else:
            typed.filter(~flag).sink_parquet(path)
            # Reads only the patient column of the input.
            counts = typed.select(excluded(flag)).collect()
            summary = pl.scan_parquet(path).select(summary_exprs).collect()
    except (pl.exceptions.PolarsError, OSError) as exc:
        path.unlink(missing_ok=True)
        if tin.general is not None:
            # Maybe only the date-time format guessed from the first rows was wrong.
            return _write_table(table, spec, replace(tin, typed=tin.general, general=None), path, optouts, limits, report)
        _explain_failure(table, spec, tin, report, limits, first_line(exc))
        return None
    row = summary.row(0, named=True)
    failed = failed_checks(row)
    if row.get(UNORDERED) and duplicate_count(pl.scan_parquet(path), spec):
        failed.append("check:*:duplicates")
    if failed:
        _explain_failure(table, spec, tin, report, limits, "failed checks: " + ", ".join(failed))
        path.unlink(missing_ok=True)
        return None
    rows, column_stats = collect_stats(row)
    excluded_rows, excluded_patients = (int(v) for v in counts.row(0))
    return rows, column_stats, excluded_rows, excluded_patients


def _explain_failure(
    table: str,
    spec: TableSpec,
    tin: TableInput,
    report: ValidationReport,
    limits: IngestLimits,
    reason: str,
) -> None:
    """Run the slow diagnosis; if it cannot name a bad row, report the reason itself."""
    before = len(report.problems), sum(report.counts.values())
    src = tin.source
    if tin.text is not None:
        try:
            diagnose(table, tin.text, spec, report, limits.max_field_bytes)
        except pl.exceptions.PolarsError as exc:
            if src is not None and src.format is SourceFormat.CSV and (bad := first_bad_utf8_line(src.path)):
                line, offset = bad
                report.add(Problem(table, f"line {line}", None, f"not valid UTF-8 (byte {offset}): re-export the file as UTF-8"))
            else:
                report.add(Problem(table, "file", None, first_line(exc)))
    if (len(report.problems), sum(report.counts.values())) == before:
        report.add(Problem(table, "file", None, reason))


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
