"""Immutable directories of Parquet files with checksums, written atomically.

A dataset version and a project view are both directories that are built in a staging
directory next to their final place, made read-only, and renamed into place in one step:
a reader sees the whole directory or nothing. Each holds ``manifest.json`` listing every
file with its sha256; the directory's own checksum is the sha256 of that listing, so a
changed, added or removed file is detected by :func:`verify_dir`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import uuid
from pathlib import Path
from typing import Any

from rich.progress import Progress

from enclave.errors import Conflict, EnclaveError

MANIFEST = "manifest.json"
_CHUNK = 4 * 1024 * 1024


class ChecksumMismatch(EnclaveError):
    """Files on disk differ from what the catalogue recorded."""


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    """The file's sha256 in hex, read in chunks (advances a progress bar if given)."""
    digest = hashlib.sha256()
    task = progress.add_task(f"checksum {path.name}", total=path.stat().st_size) if progress else None
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            if progress is not None and task is not None:
                progress.advance(task, len(chunk))
    return digest.hexdigest()


def listing_digest(files: dict[str, str]) -> str:
    """The checksum of a directory: sha256 over its sorted "name sha256" lines."""
    text = "".join(f"{name}  {files[name]}\n" for name in sorted(files))
    return hashlib.sha256(text.encode()).hexdigest()


def staging_dir(final: Path) -> Path:
    """A fresh private directory beside ``final`` (same filesystem, so rename is atomic)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    path = final.parent / f".staging-{final.name}-{uuid.uuid4().hex[:12]}"
    path.mkdir(mode=0o700)
    return path


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")


def read_manifest(directory: Path) -> dict[str, Any]:
    try:
        return json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise ChecksumMismatch(
            f"{directory} has no readable {MANIFEST} ({exc}): the files were changed; restore them from backup"
        ) from None


def checksum_files(directory: Path, names: list[str], progress: Progress | None = None) -> dict[str, str]:
    return {name: sha256_file(directory / name, progress) for name in names}


def publish(staging: Path, final: Path) -> None:
    """Make ``staging`` read-only and rename it to ``final`` in one step."""
    if final.exists():
        raise Conflict(f"{final} already exists: it is left from an earlier failure; move it aside and retry")
    for root, dirs, files in os.walk(staging):
        for name in files:
            os.chmod(Path(root) / name, 0o444)
    for root, dirs, _ in os.walk(staging, topdown=False):
        for name in dirs:
            os.chmod(Path(root) / name, 0o555)
    os.chmod(staging, 0o555)
    os.rename(staging, final)


def remove_tree(path: Path) -> None:
    """Delete a (read-only) directory tree; a missing one is fine."""
    if not path.exists():
        return
    # Deleting entries needs write permission on their directory, not on the files.
    for root, _, _ in os.walk(path):
        os.chmod(root, stat.S_IRWXU)
    shutil.rmtree(path)


def verify_dir(directory: Path, expected: str | None = None, progress: Progress | None = None) -> str:
    """Recompute every file's checksum; raise ChecksumMismatch naming what changed.

    Returns the directory's checksum (which must equal ``expected`` when given).
    """
    manifest = read_manifest(directory)
    recorded: dict[str, str] = manifest.get("files", {})
    present = sorted(p.name for p in directory.iterdir() if p.name != MANIFEST)
    extra = sorted(set(present) - set(recorded))
    missing = sorted(set(recorded) - set(present))
    if extra or missing:
        raise ChecksumMismatch(
            f"{directory}: files differ from the manifest (added: {', '.join(extra) or 'none'}; "
            f"removed: {', '.join(missing) or 'none'}): restore the directory from backup"
        )
    changed = [n for n, sha in checksum_files(directory, sorted(recorded), progress).items() if sha != recorded[n]]
    if changed:
        raise ChecksumMismatch(
            f"{directory}: {', '.join(changed)} changed since it was written (sha256 differs): "
            "restore it from backup and do not use this version until then"
        )
    digest = listing_digest(recorded)
    if digest != manifest.get("sha256") or (expected is not None and digest != expected):
        raise ChecksumMismatch(
            f"{directory}: the manifest does not match the catalogue's checksum: restore the directory from backup"
        )
    return digest
