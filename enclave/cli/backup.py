"""``enclave backup``: back the whole enclave up, verify a backup, restore it into a fresh home."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from enclave.backup.crypto import load_identity, load_recipient, write_identity
from enclave.cli.common import acting, ok, settings
from enclave.errors import InvalidInput

app = typer.Typer(help="Back up, verify and restore the whole enclave (see docs/operations.md).", no_args_is_help=True)

PASSPHRASE_ENV = "ENCLAVE_BACKUP_PASSPHRASE"


def _progress(quiet: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), transient=True, disable=quiet)


def _passphrase(confirm: bool) -> str:
    """From the environment, else asked for (never from the command line, where others can read it)."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value:
        return value
    if not os.isatty(0):
        raise InvalidInput(f"set {PASSPHRASE_ENV} (or run in a terminal to be asked) for the passphrase that seals the keys")
    return typer.prompt("Backup passphrase", hide_input=True, confirmation_prompt=confirm)


@app.command("create")
def create(
    ctx: typer.Context,
    dest: Path = typer.Argument(..., help="The backup folder (created if missing; outside ENCLAVE_HOME)."),
    recipient: Optional[Path] = typer.Option(None, "--recipient", help="Seal the keys to this X25519 public key "
                                             "(from 'enclave backup keygen') instead of a passphrase."),
    rehash: bool = typer.Option(False, "--rehash", help="Read and hash every file instead of trusting unchanged "
                                "stat keys (a verify-grade backup; names any file changed behind its stat key)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress display."),
) -> None:
    """Back up the enclave while it runs: database, data, workspaces, releases, jobs, sealed keys, policies."""
    from enclave.backup.create import create_backup

    key = load_recipient(recipient) if recipient else None
    secret = None if key is not None else _passphrase(confirm=True)
    with acting(ctx) as (_session, actor):
        pass  # who acts is checked here; the backup takes its own consistent snapshot
    with _progress(quiet) as progress:
        result = create_backup(settings(), actor, dest, passphrase=secret, recipient=key, progress=progress,
                               rehash=rehash)
    ok(f"backup {result.id}: {result.files} file(s), {result.bytes_total} bytes; read {result.files_read} changed "
       f"file(s), stored {result.objects_written} new object(s) ({result.bytes_written} bytes)"
       + (f"; {len(result.skipped)} skipped (see the manifest)" if result.skipped else ""))
    if result.changed_behind_stat:
        ok(f"warning: {len(result.changed_behind_stat)} file(s) changed although size, times and inode did not "
           f"(first: {result.changed_behind_stat[0]}): stored now; look for tampering or disk damage")


@app.command("verify")
def verify(
    dest: Path = typer.Argument(..., help="The backup folder."),
    backup: Optional[str] = typer.Option(None, "--backup", help="Which backup (default: the newest)."),
    keyring: Optional[Path] = typer.Option(None, "--keyring", help="Check signatures with this keyring.json "
                                           "instead of the one in the backup."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress display."),
) -> None:
    """Check every checksum, the audit chain and every release record of a backup; exit 1 on the first problem."""
    from enclave.backup.verify import verify_backup

    with _progress(quiet) as progress:
        result = verify_backup(dest, backup, keyring=keyring, progress=progress)
    ok(f"backup {result.id} verified: {result.objects} object(s), {result.bytes} bytes checked; audit chain of "
       f"{result.audit_events} event(s) intact; {result.releases} release record(s) and "
       f"{result.dataset_versions} dataset version(s) verify")


@app.command("restore")
def restore(
    dest: Path = typer.Argument(..., help="The backup folder."),
    to: Path = typer.Option(..., "--to", help="The new ENCLAVE_HOME: an empty folder."),
    db_url: Optional[str] = typer.Option(None, "--db-url", help="Restore the database here (an empty PostgreSQL "
                                         "database, say) instead of SQLite in the new home."),
    backup: Optional[str] = typer.Option(None, "--backup", help="Which backup (default: the newest)."),
    identity: Optional[Path] = typer.Option(None, "--identity", help="The private key the keys were sealed to."),
    keyring: Optional[Path] = typer.Option(None, "--keyring", help="Check signatures with this keyring.json."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress display."),
) -> None:
    """Restore a backup into an empty home, then verify the audit chain, releases and dataset versions."""
    from enclave.backup.restore import restore_backup

    ident = load_identity(identity) if identity else None
    secret = None if ident is not None else _passphrase(confirm=False)
    with _progress(quiet) as progress:
        result = restore_backup(dest, to, db_url=db_url, backup_id=backup, passphrase=secret, identity=ident,
                                keyring=keyring, progress=progress)
    if result.not_restored:
        ok(f"not restored (destroyed under their retention policy): {', '.join(result.not_restored)}")
    ok(f"backup {result.id} restored into {result.home}: {result.files} file(s), {result.bytes} bytes; audit chain "
       f"of {result.audit_events} event(s) intact; {result.releases} release record(s) and "
       f"{result.dataset_versions} dataset version(s) verify")
    env = f"ENCLAVE_HOME={result.home}" + (f" ENCLAVE_DB_URL={result.db_url}" if db_url else "") \
        + (f" ENCLAVE_POLICIES={result.policies_dir}" if result.policies_dir else "")
    ok(f"run the enclave on it with: {env}")


@app.command("keygen")
def keygen(path: Path = typer.Argument(..., help="Where to write the private key (PATH.pub gets the public key).")) -> None:
    """Make a key pair to seal backups to (keep the private key off the enclave's machine)."""
    public = write_identity(path)
    ok(f"private key {path} (keep it safe, offline); give {public} to 'enclave backup create --recipient'")
