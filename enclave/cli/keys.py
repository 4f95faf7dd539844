"""``enclave keys``: rotate the release-signing key; show the published keyring."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from enclave.cli.common import JSON_OPTION, acting, ok, print_json, print_table, settings
from enclave.egress.signing import (KEYRING_NAME, load_keyring, load_or_create_key, load_public_key,
                                    rotate_signing_key, verify_envelope)
from enclave.errors import InvalidInput

app = typer.Typer(help="The release-signing key and the keyring custodians verify with.", no_args_is_help=True)


@app.command("rotate")
def rotate(ctx: typer.Context) -> None:
    """Make a new signing key; the old public key stays in the keyring, so old records still verify."""
    keys_dir = settings().keys_dir
    with acting(ctx) as (session, actor):
        old, new = rotate_signing_key(session, actor, keys_dir)
    ok(f"signing key rotated: {old} retired, {new} now signs; give custodians the new {keys_dir / KEYRING_NAME}")


@app.command("list")
def list_(as_json: bool = JSON_OPTION) -> None:
    """Every key in the keyring with its validity dates (the current key last)."""
    keys_dir = settings().keys_dir
    load_or_create_key(keys_dir)
    ring = load_keyring(keys_dir / KEYRING_NAME)
    rows = [{"key_id": k.key_id, "valid_from": k.valid_from.isoformat(timespec="seconds"),
             "valid_until": k.valid_until.isoformat(timespec="seconds") if k.valid_until else "current"} for k in ring.keys]
    if as_json:
        print_json(rows)
    else:
        print_table("Release-signing keys", ["key id", "valid from", "valid until"],
                    [(r["key_id"], r["valid_from"], r["valid_until"]) for r in rows])


@app.command("verify")
def verify(
    record: Path = typer.Argument(..., help="A signed record: destruction.json, a backup manifest, a release.json."),
    keyring: Optional[Path] = typer.Option(None, "--keyring", help="The enclave's keyring.json (default: this enclave's)."),
) -> None:
    """Check the signature of any signed record against the keyring; exit 1 if it does not verify."""
    import json

    path = keyring or settings().keys_dir / KEYRING_NAME
    try:
        envelope = json.loads(Path(record).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        raise InvalidInput(f"{record} is not a readable JSON record: give the path of a signed record") from None
    body = verify_envelope(envelope, load_public_key(path))
    what = body.get("format", "record")
    ok(f"{what} verified: signed by key {envelope['signature'].get('key_id')} of {path}")
