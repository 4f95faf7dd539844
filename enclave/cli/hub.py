"""``enclave hub``: sign-in secrets and the enforcement service."""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import sys

import httpx
import typer

from enclave.cli.common import ok, resolve_actor, settings, state
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
    from enclave.hub.enforce import enforce_forever, enforce_once, hub_client

    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not api_url or not token:
        raise InvalidInput("set JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN (the hub does so for its services)")
    logging.basicConfig(level=logging.INFO, format="[enforce %(asctime)s] %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if once:
        async def one_round() -> list:  # type: ignore[type-arg]
            async with hub_client(api_url, token) as client:
                return await enforce_once(settings(), client)

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
