"""``enclave grant``: give a project a minimised, pseudonymised view of a dataset version."""

from __future__ import annotations

from typing import Optional

import typer

from enclave.catalog import service
from enclave.catalog.progress import progress_bar
from enclave.cli.common import JSON_OPTION, acting, ok, parse_date, print_json, print_table, settings

app = typer.Typer(help="Grant projects views of datasets (approved columns and rows only); revoke them.", no_args_is_help=True)


@app.command("add")
def add(
    ctx: typer.Context,
    project: str = typer.Argument(..., help="Project slug."),
    dataset: str = typer.Argument(..., help="Dataset name."),
    expires: str = typer.Option(..., "--expires", help="Last day of access, YYYY-MM-DD (not after the project's end)."),
    version: Optional[int] = typer.Option(None, "--version", help="Dataset version (default: latest)."),
    columns: Optional[str] = typer.Option(None, "--columns", help="Approved columns: table.column,... or table.* (default: all but direct identifiers)."),
    where: list[str] = typer.Option([], "--where", help="Approved rows: 'table: SQL condition', e.g. \"patients: sex = 'F' AND date_of_birth < DATE '1970-01-01'\"; repeat per table."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress display."),
) -> None:
    """Approve columns and rows of a dataset version for a project and write its view."""
    until = parse_date(expires, "--expires")
    if until is None:  # typer already requires the option; kept for the type checker
        raise typer.BadParameter("give --expires YYYY-MM-DD")
    cols = [c.strip() for c in columns.split(",") if c.strip()] if columns is not None else None
    with acting(ctx) as (session, actor), progress_bar(quiet) as progress:
        grant = service.add_grant(session, actor, settings(), project, dataset, expires=until, version=version,
                                  columns=cols, where=where, progress=progress)
        summary = service.describe_grant(session, actor, grant.id)
        gid, path = grant.id, grant.view_path
    rows = ", ".join(f"{t} {n}" for t, n in summary.rows.items())
    ok(f"grant {gid}: {project} may use {dataset} until {until} ({rows}; {summary.excluded_rows} opted-out row(s) left out); view at {path}")


@app.command("revoke")
def revoke(ctx: typer.Context, grant_id: int, reason: str = typer.Option("", "--reason")) -> None:
    """Revoke a grant; its view is deleted at once."""
    with acting(ctx) as (session, actor):
        grant = service.revoke_grant(session, actor, grant_id, reason)
        slug = grant.project.slug
    ok(f"grant {grant_id} revoked; {slug}'s view of it is deleted (running servers lose it when restarted)")


@app.command("refresh")
def refresh(ctx: typer.Context, grant_id: int) -> None:
    """Rewrite a grant's view, e.g. to drop patients who opted out since."""
    with acting(ctx) as (session, actor):
        service.rematerialise_view(session, actor, settings(), grant_id)
        summary = service.describe_grant(session, actor, grant_id)
    ok(f"grant {grant_id} view rewritten ({summary.excluded_rows} opted-out row(s) left out)")


@app.command("expire")
def expire(ctx: typer.Context) -> None:
    """Delete the views of expired grants (run daily)."""
    with acting(ctx) as (session, actor):
        ids = [g.id for g in service.expire_grants(session, actor)]
    ok(f"{len(ids)} expired view(s) deleted" + (f": grants {', '.join(map(str, ids))}" if ids else ""))


@app.command("list")
def list_(ctx: typer.Context, project: Optional[str] = typer.Option(None, "--project"), as_json: bool = JSON_OPTION) -> None:
    """List grants: project, dataset version, approved columns and rows, expiry, state."""
    with acting(ctx) as (session, actor):
        rows = [
            {"id": g.id, "project": g.project.slug, "dataset": g.dataset_version.dataset.name,
             "version": g.dataset_version.version, "columns": g.columns_json, "where": g.row_filter,
             "expires_at": g.expires_at.isoformat(timespec="minutes"),
             "state": "revoked" if g.revoked_at else ("live" if g.view_path else "expired"), "view": g.view_path}
            for g in service.list_grants(session, actor, project)
        ]
    if as_json:
        print_json(rows)
    else:
        print_table("Grants", ["id", "project", "dataset", "version", "columns", "where", "expires", "state"],
                    [(r["id"], r["project"], r["dataset"], r["version"], _per_table(r["columns"] or []), r["where"] or "",
                      r["expires_at"], r["state"]) for r in rows])


def _per_table(columns: list[str]) -> str:
    counts: dict[str, int] = {}
    for column in columns:
        table = column.rpartition(".")[0]
        counts[table] = counts.get(table, 0) + 1
    return ", ".join(f"{t} ({n})" for t, n in counts.items())
