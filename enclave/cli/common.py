"""What every command shares: the acting user, a unit of work, parsing and output."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from enclave.config import Settings
from enclave.db.models import User
from enclave.db.session import unit_of_work
from enclave.enums import Role
from enclave.errors import InvalidInput, NotFound, PermissionDenied
from enclave.users import find_user

JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON instead of a table.")


@dataclass
class CliState:
    acting_as: str | None = None


def state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def settings() -> Settings:
    return Settings.from_env()


def resolve_actor(session: Session, name: str | None) -> User:
    if not name:
        raise PermissionDenied("say who is acting: add --as USER before the command, or set ENCLAVE_USER")
    user = find_user(session, name)
    if user is None:
        raise NotFound(f"the acting user {name!r} (from --as or ENCLAVE_USER) is not an enclave user: see 'enclave user list'")
    return user


@contextmanager
def acting(ctx: typer.Context) -> Iterator[tuple[Session, User]]:
    """A unit of work plus the acting user; commits only if the command succeeds."""
    with unit_of_work(settings()) as session:
        yield session, resolve_actor(session, state(ctx).acting_as)


def parse_date(value: str | None, option: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{option} {value!r} is not a date: write it as YYYY-MM-DD, e.g. 2027-03-31") from None


def parse_roles(values: Sequence[str]) -> set[Role]:
    roles = set()
    for value in values:
        try:
            roles.add(Role(value.strip().lower()))
        except ValueError:
            raise InvalidInput(
                f"unknown role {value!r}: choose from {', '.join(r.value for r in Role)}"
            ) from None
    return roles


def print_json(data: Any) -> None:
    if isinstance(data, BaseModel):
        text = data.model_dump_json(indent=2)
    elif isinstance(data, list) and all(isinstance(d, BaseModel) for d in data):
        text = json.dumps([d.model_dump(mode="json") for d in data], indent=2)
    else:
        text = json.dumps(data, indent=2, default=str)
    typer.echo(text)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console().print(table)


def ok(message: str) -> None:
    typer.echo(message)
