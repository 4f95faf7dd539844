"""``enclave db``: create and migrate the database."""

import typer

from enclave.cli.common import ok, settings
from enclave.db import session as db

app = typer.Typer(help="Create or migrate the enclave database.", no_args_is_help=True)


@app.command("upgrade")
def upgrade() -> None:
    """Create the database or migrate it to the current schema (safe to repeat)."""
    s = settings()
    db.upgrade(s)
    where = s.sqlite_path or s.db_url.split("@")[-1]
    ok(f"database at {where} is at schema {db.head_revision()}")
