"""``enclave hub``: sign-in secrets and the enforcement service."""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import sys
from typing import Optional

import httpx
import typer

from enclave.cli.common import JSON_OPTION, acting, ok, print_json, print_table, resolve_actor, settings, state
from enclave.db.session import unit_of_work
from enclave.errors import EnclaveError, InvalidInput
from enclave.hub import signin

app = typer.Typer(help="JupyterHub sign-in secrets and enforcement.", no_args_is_help=True)


def _acting_or_bootstrap(ctx: typer.Context, session):  # type: ignore[no-untyped-def]
    name = state(ctx).acting_as
    return resolve_actor(session, name) if name else None


@app.command("set-password")
def set_password(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Whose password to set."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input."),
) -> None:
    """Set a person's sign-in password (admins; or the first admin before anyone can sign in)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"New password for {name}: ")
        if getpass.getpass("Again: ") != password:
            raise InvalidInput("the two passwords differ: run the command again")
    with unit_of_work(settings()) as session:
        signin.set_password(session, _acting_or_bootstrap(ctx, session), name, password)
    ok(f"password set for {name}")


@app.command("enrol-totp")
def enrol_totp(ctx: typer.Context, name: str = typer.Argument(..., help="Whose authenticator app to enrol.")) -> None:
    """Give a person a new authenticator-app secret; prints it once (replaces any old one)."""
    with unit_of_work(settings()) as session:
        enrolment = signin.enrol_totp(session, _acting_or_bootstrap(ctx, session), name)
    ok(f"authenticator app enrolled for {name}; show this once and do not store it:")
    ok(f"  secret: {enrolment.secret}")
    ok(f"  uri:    {enrolment.uri}")


@app.command("enforce")
def enforce(
    once: bool = typer.Option(False, "--once", help="One round, then exit."),
    interval: float = typer.Option(20.0, "--interval", min=1.0, help="Seconds between rounds."),
    api_url: str = typer.Option("", "--api-url", envvar="JUPYTERHUB_API_URL", help="The hub's REST API URL."),
) -> None:
    """Stop servers whose project, membership, training or grants no longer allow them
    (run by the hub as a managed service, with JUPYTERHUB_API_TOKEN)."""
    from enclave.hub.enforce import engine_servers, enforce_forever, enforce_once, hub_client

    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not api_url or not token:
        raise InvalidInput("set JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN (the hub does so for its services)")
    logging.basicConfig(level=logging.INFO, format="[enforce %(asctime)s] %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if once:
        async def one_round() -> list:  # type: ignore[type-arg]
            async with hub_client(api_url, token) as client:
                return await enforce_once(settings(), client, engine=engine_servers(settings()))

        try:
            orders = asyncio.run(one_round())
        except httpx.HTTPError as exc:
            raise EnclaveError(
                f"cannot use the hub API at {api_url} ({exc or type(exc).__name__}): "
                "check that the hub runs and the token may list and stop servers"
            ) from None
        for order in orders:
            ok(f"stopped {order.user}/{order.server}: {order.reason}")
        ok(f"{len(orders)} server(s) stopped")
        return
    asyncio.run(enforce_forever(settings(), api_url, token, interval))


# --- Break-glass: an admin's time-limited, audited access to one researcher's server ------

break_glass = typer.Typer(help="Open, close and list break-glass windows into a researcher's server "
                               "(only where policies/tiers.yaml allows it).", no_args_is_help=True)
app.add_typer(break_glass, name="break-glass")


@break_glass.command("open")
def break_glass_open(
    ctx: typer.Context,
    server: str = typer.Argument(..., help="The server as USER/PROJECT, e.g. ada/cardio."),
    reason: str = typer.Option(..., "--reason", help="Why (at least 20 characters); the project's members read it."),
    minutes: Optional[int] = typer.Option(None, "--minutes", help="How long (default and limit: the tier's "
                                                                   "break_glass_minutes)."),
) -> None:
    """Open SERVER to the acting admin for a limited time; audited and shown to the project's members."""
    from enclave.clock import utcnow
    from enclave.hub.breakglass import open_break_glass
    from enclave.projects.tiers import load_tiers

    tiers = load_tiers(settings().policies_dir)
    with acting(ctx) as (session, actor):
        window = open_break_glass(session, actor, tiers, server, reason, utcnow(), minutes)
        ok(f"break-glass {window.id}: {actor.name} may open {server} until {window.expires_at:%Y-%m-%d %H:%M} UTC "
           f"at /user/{server}/ (close it early with 'enclave hub break-glass close {window.id}')")


@break_glass.command("close")
def break_glass_close(ctx: typer.Context, window_id: int = typer.Argument(..., help="The window's number.")) -> None:
    """End a break-glass window before its time."""
    from enclave.clock import utcnow
    from enclave.hub.breakglass import close_break_glass

    with acting(ctx) as (session, actor):
        window = close_break_glass(session, actor, window_id, utcnow())
        ok(f"break-glass {window.id} closed")


@break_glass.command("list")
def break_glass_list(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Every break-glass window, newest first (admins)."""
    from enclave.clock import utcnow
    from enclave.hub.breakglass import is_open, windows
    from enclave.permissions import check_admin

    with acting(ctx) as (session, actor):
        check_admin(actor, "list break-glass windows")
        now = utcnow()
        rows = [{"id": w.id, "admin": w.actor.name, "server": f"{w.owner.name}/{w.project.slug}",
                 "opened_at": w.opened_at.isoformat(timespec="seconds"),
                 "until": (w.closed_at or w.expires_at).isoformat(timespec="seconds"),
                 "open": is_open(w, now), "reason": w.reason} for w in windows(session)]
    if as_json:
        print_json(rows)
        return
    print_table("Break-glass windows", ["id", "admin", "server", "opened", "until", "open", "reason"],
                [[r["id"], r["admin"], r["server"], r["opened_at"], r["until"], "yes" if r["open"] else "no",
                  r["reason"]] for r in rows])
