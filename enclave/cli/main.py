"""The ``enclave`` command: mounts one sub-command group per capability."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Optional

import sqlalchemy.exc
import typer
# Typer ships its own copy of click; its exceptions are the ones raised here.
from typer._click import exceptions as click
from typer.exceptions import Abort, Exit
from typer.core import TyperGroup

from enclave.cli.common import state
from enclave.errors import DatabaseError, EnclaveError


class _EnclaveGroup(TyperGroup):
    """Turns every error into one line on stderr and a non-zero exit, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EnclaveError as exc:
            _fail(str(exc), exc.exit_code)
        except click.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else "enclave"
            hint = "put --as USER right after 'enclave'" if "--as" in exc.format_message() else f"see '{where} --help'"
            _fail(f"{exc.format_message()} ({hint})", 2)
        except sqlalchemy.exc.SQLAlchemyError as exc:
            _fail(str(DatabaseError(f"database error ({type(exc).__name__}): nothing was changed; "
                                    "check the database with 'enclave db upgrade'")), 1)
        except (Exit, Abort, SystemExit):
            raise
        except BrokenPipeError:
            # The reader went away (e.g. `| head`): nothing more to say.
            os._exit(0)
        except KeyboardInterrupt:
            _fail("interrupted: nothing was changed", 130)
        except Exception as exc:  # noqa: BLE001 - the last line of defence for users
            if os.environ.get("ENCLAVE_DEBUG"):
                raise
            _fail(f"internal error ({type(exc).__name__}: {exc}); nothing was changed. "
                  "Re-run with ENCLAVE_DEBUG=1 and report the traceback", 1)


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


app = typer.Typer(
    cls=_EnclaveGroup,
    help="Run the enclave: people, projects, datasets, egress and the audit log.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    acting_as: Optional[str] = typer.Option(
        None, "--as", envvar="ENCLAVE_USER", help="The acting user (or set ENCLAVE_USER)."
    ),
) -> None:
    """Enclave: a trusted research environment for sensitive health data."""
    state(ctx).acting_as = acting_as
    if ctx.invoked_subcommand != "policy":  # 'policy check' reports on the directory it is given
        # Every command (the job worker and the enforcer too) starts only with valid policies.
        from enclave.cli.common import settings
        from enclave.policy import load_policies

        load_policies(settings().policies_dir)


# One sub-command group per capability: (module, command name).
GROUPS: list[tuple[str, str]] = [
    ("enclave.cli.db", "db"),
    ("enclave.cli.users", "user"),
    ("enclave.cli.projects", "project"),
    ("enclave.cli.audit", "audit"),
    ("enclave.cli.policy", "policy"),
    ("enclave.cli.datasets", "dataset"),
    ("enclave.cli.grants", "grant"),
    ("enclave.cli.optouts", "optout"),
    ("enclave.cli.egress", "egress"),
    ("enclave.cli.jobs", "job"),
    ("enclave.cli.hub", "hub"),
    ("enclave.cli.incidents", "incident"),
    ("enclave.cli.demo", "demo"),
    ("enclave.cli.keys", "keys"),
    ("enclave.cli.backup", "backup"),
]

for _module, _name in GROUPS:
    app.add_typer(importlib.import_module(_module).app, name=_name)


def run() -> None:
    """Console-script entry point."""
    app(prog_name="enclave")


if __name__ == "__main__":
    run()
    sys.exit(0)
