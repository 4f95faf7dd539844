"""``enclave dataset``: ingest curated datasets and look at the catalogue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from enclave.catalog import service
from enclave.catalog.ingest import IngestLimits
from enclave.catalog.progress import progress_bar
from enclave.catalog.readers import SourceFormat
from enclave.catalog.report import IngestRefused
from enclave.cli.common import JSON_OPTION, acting, ok, print_json, print_table, settings

app = typer.Typer(help="Ingest datasets (CSV, Parquet, FHIR NDJSON) as immutable versions; list and show them.", no_args_is_help=True)


def _version_row(v) -> dict:  # type: ignore[no-untyped-def]
    return {
        "dataset": v.dataset.name, "version": v.version, "tier": v.tier, "rows": v.row_count, "sha256": v.sha256,
        "created_at": v.created_at.isoformat(timespec="seconds"), "tables": {t: s["rows"] for t, s in v.stats_json.get("tables", {}).items()},
        "excluded": v.stats_json.get("excluded", {}), "path": v.storage_path,
    }


@app.command("ingest")
def ingest(
    ctx: typer.Context,
    source: Path = typer.Argument(..., help="A CSV/Parquet file, a directory with one <table>.csv/.parquet per table, or a FHIR bulk-export directory of NDJSON."),
    name: str = typer.Option(..., "--name", help="Dataset name (lower-case letters, digits, '_', '-')."),
    dictionary: Optional[Path] = typer.Option(None, "--dictionary", help="Data dictionary YAML (default: dictionary.yaml beside the data; built-in for FHIR)."),
    fmt: Optional[SourceFormat] = typer.Option(None, "--format", help="csv, parquet or fhir (default: from the file suffixes)."),
    description: Optional[str] = typer.Option(None, "--description", help="What this version is (default: the dictionary's description)."),
    max_field_bytes: int = typer.Option(IngestLimits.max_field_bytes, "--max-field-bytes", help="Refuse values longer than this."),
    report: Optional[Path] = typer.Option(None, "--report", help="If the input is refused, write the full list of bad rows and columns here (JSON)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress display."),
) -> None:
    """Validate SOURCE against its dictionary and store it as the dataset's next version."""
    s = settings()
    try:
        with acting(ctx) as (session, actor), progress_bar(quiet) as progress:
            v = service.ingest_dataset(
                session, actor, s, source, name, dictionary=dictionary, fmt=fmt, description=description,
                limits=IngestLimits(max_field_bytes=max_field_bytes), progress=progress,
            )
            row = _version_row(v)
    except IngestRefused as exc:
        if report is not None:
            report.write_text(json.dumps(exc.report.to_json(), indent=2) + "\n")
        raise
    excluded = row["excluded"]
    ok(f"ingested {name} v{row['version']}: {row['rows']} rows in {len(row['tables'])} table(s), "
       f"sha256 {row['sha256'][:16]}..., {excluded.get('rows', 0)} row(s) of {excluded.get('patients', 0)} opted-out patient(s) excluded")


@app.command("list")
def list_(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """List datasets with their latest version."""
    with acting(ctx) as (session, actor):
        rows = [
            {"name": d.name, "tier": d.tier, "versions": len(d.versions),
             "latest": d.versions[-1].version if d.versions else None,
             "rows": d.versions[-1].row_count if d.versions else 0, "description": d.description}
            for d in service.list_datasets(session, actor)
        ]
    if as_json:
        print_json(rows)
    else:
        print_table("Datasets", ["name", "tier", "versions", "latest", "rows", "description"],
                    [tuple(r.values()) for r in rows])


@app.command("versions")
def versions(ctx: typer.Context, name: str, as_json: bool = JSON_OPTION) -> None:
    """List a dataset's versions: rows, checksum, opt-out exclusions."""
    with acting(ctx) as (session, actor):
        rows = [_version_row(v) for v in service.list_versions(session, actor, name)]
    if as_json:
        print_json(rows)
    else:
        print_table(f"Versions of {name}", ["version", "created", "rows", "tables", "excluded rows", "sha256"],
                    [(r["version"], r["created_at"], r["rows"], ", ".join(f"{t} {n}" for t, n in r["tables"].items()),
                      r["excluded"].get("rows", 0), r["sha256"][:16]) for r in rows])


@app.command("show")
def show(ctx: typer.Context, name: str, version: Optional[int] = typer.Option(None, "--version", help="Default: latest."), as_json: bool = JSON_OPTION) -> None:
    """Show a version's tables and columns: type, identifier kind, description, statistics."""
    with acting(ctx) as (session, actor):
        service.show_dataset(session, actor, name)
        v = service.get_version(session, name, version)
        row = _version_row(v)
        schema, stats = v.schema_json, v.stats_json
    if as_json:
        print_json({**row, "dictionary": schema, "stats": stats})
        return
    ok(f"{name} v{row['version']} ({row['tier']}): {schema.get('description', '')}; {row['rows']} rows; sha256 {row['sha256']}")
    for table, spec in schema["tables"].items():
        col_stats = stats.get("tables", {}).get(table, {}).get("columns", {})
        print_table(
            f"{table} ({row['tables'].get(table, 0)} rows): {spec['description']}",
            ["column", "type", "identifier", "key", "nulls", "summary", "description"],
            [(c, cs["type"], cs["identifier"], cs.get("key", ""), col_stats.get(c, {}).get("nulls"),
              _summary(col_stats.get(c, {})), cs["description"]) for c, cs in spec["columns"].items()],
        )


def _summary(stats: dict) -> str:  # type: ignore[type-arg]
    if "min" in stats:
        return f"{stats['min']} .. {stats['max']}" + (f", mean {stats['mean']:.4g}" if isinstance(stats.get("mean"), float) else "")
    if "counts" in stats:
        return ", ".join(f"{k}: {v}" for k, v in stats["counts"].items())
    if "distinct" in stats:
        return f"~{stats['distinct']} distinct"
    return ""


@app.command("verify")
def verify(ctx: typer.Context, name: str, version: Optional[int] = typer.Option(None, "--version", help="Default: latest.")) -> None:
    """Recompute a version's checksums and compare them with the catalogue."""
    with acting(ctx) as (session, actor):
        v = service.verify_version(session, actor, name, version)
        number, sha = v.version, v.sha256
    ok(f"{name} v{number}: every file matches (sha256 {sha})")
