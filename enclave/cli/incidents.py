"""``enclave incident``: list the incidents the egress meter opens, clear them, enable accounts."""

from __future__ import annotations

from typing import Optional

import typer

from enclave import incidents
from enclave.cli.common import JSON_OPTION, acting, ok, print_json, print_table
from enclave.enums import IncidentStatus
from enclave.errors import InvalidInput

app = typer.Typer(help="Security incidents: list, clear after review, enable disabled accounts.",
                  no_args_is_help=True)


def _status(value: str | None) -> IncidentStatus | None:
    if value is None or value == "all":
        return None
    try:
        return IncidentStatus(value)
    except ValueError:
        raise InvalidInput(f"unknown status {value!r}: choose open, cleared or all") from None


@app.command("list")
def list_(
    ctx: typer.Context,
    status: Optional[str] = typer.Option("open", "--status", help="open (default), cleared or all."),
    user: Optional[str] = typer.Option(None, "--user", help="Only this person's incidents."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List incidents, newest first (admins)."""
    with acting(ctx) as (session, actor):
        rows = [incidents.IncidentOut.of(i) for i in incidents.list_incidents(session, actor, status=_status(status),
                                                                               user=user)]
    if as_json:
        print_json(rows)
        return
    print_table("Incidents", ["#", "opened (UTC)", "kind", "person", "server", "status", "suspends", "details"], [
        (i.id, i.opened_at.strftime("%Y-%m-%d %H:%M:%S"), i.kind.value, i.user, f"{i.project or '-'}/{i.server}",
         i.status.value if i.status is IncidentStatus.OPEN else f"cleared by {i.cleared_by}",
         "yes" if i.suspends else "no", ", ".join(f"{k}={v}" for k, v in i.details.items()))
        for i in rows
    ])


@app.command("clear")
def clear(
    ctx: typer.Context,
    incident_id: int = typer.Argument(..., help="The incident's number (see 'enclave incident list')."),
    note: str = typer.Option(..., "--note", help="What the review found (kept in the audit log)."),
) -> None:
    """Clear an open incident after review; lifts its suspension (admins, not about themselves)."""
    with acting(ctx) as (session, actor):
        incident = incidents.clear_incident(session, actor, incident_id, note)
        still = incidents.suspension_reason(session, incident.user)
    ok(f"cleared incident #{incident_id} about {incident.user.name}")
    if still:
        ok(f"note: {still}")


@app.command("enable-user")
def enable_user(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The person whose account repeated incidents disabled."),
    note: str = typer.Option(..., "--note", help="Why the account may be used again (kept in the audit log)."),
) -> None:
    """Enable an account that repeated incidents disabled (admins, not their own)."""
    with acting(ctx) as (session, actor):
        incidents.enable_user(session, actor, name, note)
    ok(f"enabled {name}'s account")
