"""``enclave policy``: validate policy files before the enclave uses them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from enclave.cli.common import settings
from enclave.policy import load_policies

app = typer.Typer(help="Validate the policy files.", no_args_is_help=True)


@app.command("check")
def check(directory: Optional[Path] = typer.Argument(None, help="Policy directory (default: ENCLAVE_POLICIES or policies/).")) -> None:
    """Validate every policy file; exit 1 naming the file, key and problem if one is wrong."""
    target = directory or settings().policies_dir
    policies = load_policies(target)
    for name, digest in policies.versions().items():
        typer.echo(f"ok  {name}  sha256:{digest[:12]}")
