"""Project views: the minimised, pseudonymised copy of a dataset version a project sees.

A grant approves some columns and rows of a version for one project. Materialising it
writes, once and read-only, a directory of Parquet files (one per approved table) that
holds exactly those columns and rows, with

- direct identifiers dropped (asking for one by name is refused);
- key columns (patient, admission ... identifiers) replaced by the project's pseudonyms;
- opted-out patients excluded (as of materialisation, counted, never named).

The spawner mounts this directory, never the version it came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from rich.progress import Progress

from enclave.catalog.dictionary import ColumnSpec, DataDictionary, IdentifierKind, TableSpec
from enclave.catalog.optouts import is_opted_out, resolve_patient_keys
from enclave.catalog.pseudonym import pseudonymise
from enclave.catalog.storage import (
    checksum_files,
    listing_digest,
    publish,
    remove_tree,
    staging_dir,
    verify_dir,
    write_manifest,
)
from enclave.errors import InvalidInput


@dataclass(frozen=True)
class ViewSpec:
    """What a grant approves: columns per table, in order, and a row filter per table."""

    columns: dict[str, list[str]]
    filters: dict[str, str]

    @property
    def column_list(self) -> list[str]:
        """``table.column`` names, as stored on the grant."""
        return [f"{t}.{c}" for t, cols in self.columns.items() for c in cols]

    @property
    def filter_text(self) -> str | None:
        """The row filters as stored on the grant (JSON object, table -> expression)."""
        return json.dumps(self.filters, sort_keys=True) if self.filters else None


@dataclass(frozen=True)
class ViewResult:
    path: Path
    sha256: str
    rows: dict[str, int]
    excluded_rows: int


def _viewable(col_spec: ColumnSpec) -> bool:
    return col_spec.identifier is not IdentifierKind.DIRECT or col_spec.key is not None


def resolve_view(dictionary: DataDictionary, columns: list[str] | None, where: list[str]) -> ViewSpec:
    """Turn ``--columns``/``--where`` into a checked :class:`ViewSpec`.

    Columns are ``table.column``, ``table.*`` or (one-table datasets) ``column``; no
    columns means every column but direct identifiers. Filters are ``table: EXPR`` or
    (one-table datasets) ``EXPR``, EXPR being a SQL boolean expression over the table.
    """
    single = next(iter(dictionary.tables)) if len(dictionary.tables) == 1 else None
    chosen: dict[str, list[str]] = {}
    for item in columns if columns is not None else [f"{t}.*" for t in dictionary.tables]:
        table, _, name = item.strip().rpartition(".")
        table = table or single or ""
        if not table:
            raise InvalidInput(f"column {item!r} names no table: write it as table.column ({', '.join(dictionary.tables)})",
                               field="columns")
        spec = dictionary.table(table)
        names = [n for n, c in spec.columns.items() if _viewable(c)] if name == "*" else [name]
        for n in names:
            col = spec.columns.get(n)
            if col is None:
                raise InvalidInput(f"table {table} has no column {n!r}: choose from {', '.join(spec.columns)}",
                                   field="columns")
            if not _viewable(col):
                raise InvalidInput(f"{table}.{n} is a direct identifier and never goes into a view: leave it out",
                                   field="columns")
            if n not in chosen.setdefault(table, []):
                chosen[table].append(n)
    filters: dict[str, str] = {}
    for item in where:
        table, sep, expr = item.partition(":")
        if not sep or table.strip() not in dictionary.tables:
            table, expr = single or "", item
        table, expr = table.strip(), expr.strip()
        if not table:
            raise InvalidInput(f"row filter {item!r} names no table: write it as 'table: EXPR'", field="filter")
        if table not in chosen:
            raise InvalidInput(f"row filter for {table}, but no column of {table} is approved: add its columns or drop the filter",
                               field=f"filter.{table}")
        if table in filters:
            raise InvalidInput(f"two row filters for {table}: combine them with AND", field=f"filter.{table}")
        try:
            check_filter(table, dictionary.tables[table], expr)
        except InvalidInput as exc:
            exc.field = f"filter.{table}"  # the form's field for this table's filter
            raise
        filters[table] = expr
    return ViewSpec(columns={t: c for t, c in chosen.items() if c}, filters=filters)


def view_spec_from_grant(columns: list[str], filter_text: str | None) -> ViewSpec:
    """The inverse of :attr:`ViewSpec.column_list` / :attr:`ViewSpec.filter_text`."""
    chosen: dict[str, list[str]] = {}
    for item in columns:
        table, _, name = item.rpartition(".")
        chosen.setdefault(table, []).append(name)
    return ViewSpec(columns=chosen, filters=json.loads(filter_text) if filter_text else {})


def check_filter(table: str, spec: TableSpec, expr: str) -> pl.Expr:
    """Parse a SQL row filter and check it against the table's columns and types."""
    try:
        parsed = pl.sql_expr(expr)
    except Exception as exc:  # polars raises several types for bad SQL
        raise InvalidInput(f"row filter for {table} is not a SQL expression ({str(exc).splitlines()[0]}): e.g. \"age >= 18 AND sex = 'F'\"") from None
    names = parsed.meta.root_names()
    unknown = [n for n in names if n not in spec.columns]
    if unknown:
        raise InvalidInput(f"row filter for {table} uses unknown column(s) {', '.join(unknown)}: choose from {', '.join(spec.columns)}")
    direct = [n for n in names if not _viewable(spec.columns[n])]
    if direct:
        raise InvalidInput(f"row filter for {table} uses direct identifier(s) {', '.join(direct)}: filter on other columns")
    try:
        # Evaluated on one all-null row: type clashes only show when data flows.
        probe = pl.DataFrame({c: [None] for c in spec.schema}, schema=spec.schema)
        dtype = probe.select(parsed.alias("__f")).schema["__f"]
    except Exception as exc:
        raise InvalidInput(
            f"row filter for {table} does not fit the columns' types ({str(exc).splitlines()[0]}): "
            "fix the expression (dates are written DATE '2020-01-31')"
        ) from None
    if dtype != pl.Boolean:
        raise InvalidInput(f"row filter for {table} gives {dtype}, not true/false: write a condition, e.g. \"age >= 18\"")
    return parsed


def materialise_view(
    version_dir: Path,
    version_sha256: str,
    dictionary: DataDictionary,
    view: ViewSpec,
    key: bytes,
    optouts: list[str] | tuple[str, ...],
    final: Path,
    *,
    progress: Progress | None = None,
) -> ViewResult:
    """Write the view into ``final`` (atomically, read-only) from a verified version."""
    verify_dir(version_dir, version_sha256, progress)
    frames = {t: pl.scan_parquet(version_dir / f"{t}.parquet") for t in dictionary.tables if (version_dir / f"{t}.parquet").exists()}
    optouts = resolve_patient_keys(frames, dictionary, optouts)
    stage = staging_dir(final)
    try:
        rows: dict[str, int] = {}
        excluded = 0
        for table, columns in view.columns.items():
            task = progress.add_task(f"view {table}", total=None) if progress else None
            spec = dictionary.tables[table]
            rows[table], n_excluded = _write_view_table(
                version_dir / f"{table}.parquet", spec, columns, view.filters.get(table), key, optouts,
                stage / f"{table}.parquet",
            )
            excluded += n_excluded
            if progress is not None and task is not None:
                progress.update(task, total=1, completed=1)
        names = [f"{t}.parquet" for t in view.columns]
        files = checksum_files(stage, names)
        digest = listing_digest(files)
        write_manifest(stage, {"format": 1, "files": files, "sha256": digest, "rows": rows})
        publish(stage, final)
    except BaseException:
        remove_tree(stage)
        raise
    return ViewResult(path=final, sha256=digest, rows=rows, excluded_rows=excluded)


def _write_view_table(
    source: Path,
    spec: TableSpec,
    columns: list[str],
    where: str | None,
    key: bytes,
    optouts: list[str] | tuple[str, ...],
    out: Path,
) -> tuple[int, int]:
    frame = pl.scan_parquet(source)
    excluded = 0
    patient = spec.patient_column
    if patient is not None and optouts:
        excluded = int(frame.select(is_opted_out(patient, optouts).sum()).collect().item())
        frame = frame.filter(~is_opted_out(patient, optouts))
    if where:
        frame = frame.filter(check_filter("view", spec, where))
    frame = frame.select(columns)
    for name in columns:
        domain = spec.columns[name].key
        if domain is not None:
            frame = pseudonymise(frame, name, key, domain)
    frame.sink_parquet(out)
    return pl.scan_parquet(out).select(pl.len()).collect().item(), excluded
