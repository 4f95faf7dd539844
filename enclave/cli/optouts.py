"""``enclave optout``: the registry of patients who declined research use of their data."""

from __future__ import annotations

from pathlib import Path

import typer

from enclave.catalog import service
from enclave.cli.common import acting, ok

app = typer.Typer(help="Record research opt-outs; ingest and views leave these patients out.", no_args_is_help=True)


@app.command("add")
def add(ctx: typer.Context, identifiers: list[str] = typer.Argument(..., help="Patient identifiers.")) -> None:
    """Record opt-outs for the given patient identifiers."""
    with acting(ctx) as (session, actor):
        new = service.add_optouts(session, actor, identifiers)
    ok(f"{new} new opt-out(s) recorded; refresh existing views with 'enclave grant refresh ID'")


@app.command("import")
def import_(ctx: typer.Context, path: Path = typer.Argument(..., help="Text file, one patient identifier per line.")) -> None:
    """Record every opt-out listed in a file."""
    with acting(ctx) as (session, actor):
        new = service.import_optouts(session, actor, path)
    ok(f"{new} new opt-out(s) recorded; refresh existing views with 'enclave grant refresh ID'")


@app.command("count")
def count(ctx: typer.Context) -> None:
    """How many patients have opted out (never who)."""
    with acting(ctx) as (session, actor):
        n = service.count_optouts(session, actor)
    ok(f"{n} patient(s) opted out")
