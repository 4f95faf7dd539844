"""``enclave audit``: read and verify the tamper-evident audit log."""

from __future__ import annotations

from typing import Optional

import typer

from enclave import audit
from enclave.cli.common import JSON_OPTION, acting, parse_date, print_json, print_table
from enclave.schemas import AuditEventOut

app = typer.Typer(help="Read and verify the audit log.", no_args_is_help=True)


@app.command("verify")
def verify(ctx: typer.Context) -> None:
    """Check the whole hash chain. Exit 0 when intact; else name the first bad event and exit 1."""
    with acting(ctx) as (session, _actor):
        report = audit.verify_chain(session)
    if report.ok:
        typer.echo(f"audit chain intact: {report.checked} events verified")
        return
    typer.echo(f"audit chain BROKEN at event #{report.first_bad}: {report.problem}", err=True)
    raise typer.Exit(1)


@app.command("list")
def list_(
    ctx: typer.Context,
    project: Optional[str] = typer.Option(None, "--project", help="Only this project's events."),
    user: Optional[str] = typer.Option(None, "--user", help="Only events by this user."),
    action: Optional[str] = typer.Option(None, "--action", help="Only this action (or prefix, e.g. 'project.')."),
    since: Optional[str] = typer.Option(None, "--since", help="YYYY-MM-DD, inclusive."),
    until: Optional[str] = typer.Option(None, "--until", help="YYYY-MM-DD, inclusive."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1),
    as_json: bool = JSON_OPTION,
) -> None:
    """List audit events, oldest first (admins)."""
    since_d, until_d = parse_date(since, "--since"), parse_date(until, "--until")
    with acting(ctx) as (session, actor):
        events = [AuditEventOut.of(e) for e in audit.read_events(
            session, actor, project=project, user=user, action=action, since=since_d, until=until_d, limit=limit)]
    if as_json:
        print_json(events)
        return
    print_table("Audit log", ["#", "when (UTC)", "who", "action", "project", "target", "details"], [
        (e.seq, e.at.strftime("%Y-%m-%d %H:%M:%S"), e.actor, e.action, e.project or "", e.target or "",
         ", ".join(f"{k}={v}" for k, v in e.details.items() if v not in (None, "", [], {})))
        for e in events
    ])
