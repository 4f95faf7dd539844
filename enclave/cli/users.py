"""``enclave user``: people, roles and training."""

from __future__ import annotations

from typing import Optional

import typer

from enclave import users
from enclave.cli.common import JSON_OPTION, acting, ok, parse_date, parse_roles, print_json, print_table, resolve_actor, settings, state
from enclave.db.session import unit_of_work
from enclave.schemas import UserOut

app = typer.Typer(help="Add and list people, their roles and training.", no_args_is_help=True)


@app.command("add")
def add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The person's JupyterHub user name."),
    role: list[str] = typer.Option([], "--role", help="researcher, admin or reviewer; repeat for several."),
    training_expires: Optional[str] = typer.Option(None, "--training-expires", help="YYYY-MM-DD"),
) -> None:
    """Add a person. Needs an admin, except the very first admin on an empty enclave."""
    roles = parse_roles(role)
    expires = parse_date(training_expires, "--training-expires")
    with unit_of_work(settings()) as session:
        acting_as = state(ctx).acting_as
        actor = resolve_actor(session, acting_as) if (acting_as or users.count_users(session)) else None
        user = users.add_user(session, actor, name, roles, expires)
        ok(f"added {user.name} ({', '.join(sorted(user.roles))})")


@app.command("list")
def list_(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """List every person with their roles and training expiry."""
    with acting(ctx) as (session, _actor):
        rows = [UserOut.of(u) for u in users.list_users(session)]
    if as_json:
        print_json(rows)
    else:
        print_table("Users", ["name", "roles", "training expires"],
                    [(u.name, ", ".join(u.roles), u.training_expires or "not recorded") for u in rows])


@app.command("show")
def show(ctx: typer.Context, name: str, as_json: bool = JSON_OPTION) -> None:
    """Show one person."""
    with acting(ctx) as (session, _actor):
        user = UserOut.of(users.get_user(session, name))
    if as_json:
        print_json(user)
    else:
        print_table(f"User {user.name}", ["field", "value"],
                    [("roles", ", ".join(user.roles)), ("training expires", user.training_expires or "not recorded"),
                     ("created", user.created_at)])


@app.command("training")
def training(ctx: typer.Context, name: str, expires: str = typer.Option(..., "--expires", help="YYYY-MM-DD")) -> None:
    """Record when a person's training/accreditation expires (admins)."""
    day = parse_date(expires, "--expires")
    with acting(ctx) as (session, actor):
        users.set_training(session, actor, name, day)
    ok(f"{name}'s training now expires on {day}")


@app.command("roles")
def roles(ctx: typer.Context, name: str, role: list[str] = typer.Option(..., "--role", help="Repeat for several.")) -> None:
    """Replace a person's roles (admins)."""
    new = parse_roles(role)
    with acting(ctx) as (session, actor):
        users.set_roles(session, actor, name, new)
    ok(f"{name} now holds: {', '.join(sorted(new))}")
