"""Reading files from a project's outbox safely, and the content-addressed quarantine.

The outbox is writable from inside the researcher's container, so everything in it is
untrusted: a path may be a symbolic link to a dataset, a hard link, a device or a FIFO,
or may change between two looks. Files are therefore opened relative to the open
outbox with no link followed at any depth (``enclave.workspace_fs``), checked on the
open descriptor (``fstat``), and copied from that descriptor while being hashed. The copy
lands in ``quarantine/objects/<aa>/<sha256>`` (written to a temporary name, fsynced,
made read-only, then renamed), so what is reviewed and released is exactly what was
submitted, whatever later happens in the outbox. The quarantine lives under
ENCLAVE_HOME, outside every container, and is never mounted into one.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from enclave.config import Settings
from enclave.egress.crash import crash_point
from enclave.errors import InvalidInput, NotFound
from enclave.workspace_fs import LinkRefused, WorkspaceDir, open_workspace, refuse_non_utf8

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StoredFile:
    """A file as copied into the quarantine."""

    sha256: str
    size: int
    path: Path


def outbox_dir(settings: Settings, slug: str) -> Path:
    """Where a project's outbox is, as seen from the host."""
    return settings.workspaces_dir / slug / "outbox"


def normalise_relpath(relpath: str) -> str:
    """A clean path relative to the outbox; refuse absolute, parent and hidden parts."""
    text = (relpath or "").strip()
    refuse_non_utf8(text)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise InvalidInput(f"{relpath!r} has control characters: rename the file to plain letters, digits and punctuation")
    if text.startswith("outbox/"):
        text = text[len("outbox/"):]
    path = PurePosixPath(text)
    if not text or path.is_absolute():
        raise InvalidInput(f"{relpath!r} is not a path inside the outbox: give it relative to outbox/, e.g. tables/counts.csv")
    parts = [p for p in path.parts if p != "."]
    if not parts or any(p == ".." for p in parts):
        raise InvalidInput(f"{relpath!r} leaves the outbox: give a path inside outbox/ without '..'")
    hidden = [p for p in parts if p.startswith(".")]
    if hidden:
        raise InvalidInput(f"{relpath!r} is a hidden file or lies in a hidden folder ({hidden[0]}): hidden files cannot leave the enclave; rename it")
    return "/".join(parts)


@contextmanager
def open_outbox_file(settings: Settings, slug: str, relpath: str) -> Iterator[tuple[int, os.stat_result]]:
    """Open ``outbox/<relpath>`` of project ``slug`` without following any link; yield (fd, stat).

    Refuses symbolic links (at any depth, the outbox itself included), hard links, and
    anything that is not a regular file, each with one line saying what to do
    (``enclave.workspace_fs`` does the opening).
    """
    relpath = normalise_relpath(relpath)
    with open_outbox(settings, slug) as outbox:
        try:
            with outbox.open_file(relpath, single_link=True) as opened:
                yield opened
        except NotFound:
            raise NotFound(f"outbox/{relpath} does not exist: save the output into the project's outbox/ first") from None


def open_outbox(settings: Settings, slug: str) -> WorkspaceDir:
    """The project's ``outbox/`` as an open folder, reached without following a link."""
    with open_workspace(settings.workspaces_dir, slug) as workspace:
        try:
            return workspace.opendir("outbox")
        except LinkRefused:
            raise LinkRefused(f"the outbox of project {slug} is a symbolic link or not a folder: "
                              "only the real outbox/ folder is read; ask an admin to restore it") from None
        except NotFound:
            raise NotFound(f"the outbox of project {slug} does not exist: open the project's server once to create it") from None


def check_size(relpath: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise InvalidInput(
            f"outbox/{relpath} is {size} bytes, over the egress limit of {max_bytes} bytes: "
            "export a smaller summary (the limit is in policies/egress.yaml)"
        )


def inspect_outbox_file(settings: Settings, slug: str, relpath: str, max_bytes: int) -> int:
    """Check that the file may be requested at all; return its current size."""
    with open_outbox_file(settings, slug, relpath) as (_fd, st):
        check_size(normalise_relpath(relpath), st.st_size, max_bytes)
        return st.st_size


def object_path(settings: Settings, sha256: str) -> Path:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise InvalidInput(f"{sha256!r} is not a sha256 digest")
    return settings.quarantine_dir / "objects" / sha256[:2] / sha256


def _ensure_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# A temporary copy older than this was left by an interrupted submit (a live copy is touched
# with every chunk written), so the next submit removes it.
STALE_SECONDS = 3600


def _sweep_stale(tmp_dir: Path) -> None:
    cutoff = time.time() - STALE_SECONDS
    for leftover in tmp_dir.glob("incoming-*"):
        try:
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink()
        except FileNotFoundError:
            pass


def quarantine_file(settings: Settings, slug: str, relpath: str, max_bytes: int) -> StoredFile:
    """Copy ``outbox/<relpath>`` into the quarantine; return its digest, size and stored path.

    Idempotent: copying the same bytes again finds the existing object. An interrupted
    copy leaves only a temporary file, which the next attempt ignores.
    """
    relpath = normalise_relpath(relpath)
    _ensure_dir(settings.quarantine_dir)
    tmp_dir = settings.quarantine_dir / "tmp"
    _ensure_dir(tmp_dir)
    _sweep_stale(tmp_dir)
    with open_outbox_file(settings, slug, relpath) as (fd, st):
        check_size(relpath, st.st_size, max_bytes)
        digest = hashlib.sha256()
        size = 0
        out_fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix="incoming-")
        try:
            with os.fdopen(out_fd, "wb") as out:
                while chunk := os.read(fd, CHUNK):
                    size += len(chunk)
                    # The file may grow while it is read: the limit holds for what is copied.
                    check_size(relpath, size, max_bytes)
                    digest.update(chunk)
                    out.write(chunk)
                    crash_point("quarantine.copy")
                out.flush()
                os.fsync(out.fileno())
                os.fchmod(out.fileno(), 0o444)
            sha = digest.hexdigest()
            target = object_path(settings, sha)
            _ensure_dir(target.parent)
            if target.exists():
                os.unlink(tmp_name)
            else:
                os.rename(tmp_name, target)
                _fsync_dir(target.parent)
        except BaseException:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise
    return StoredFile(sha256=sha, size=size, path=target)


def read_object(settings: Settings, sha256: str) -> Path:
    """The stored object, verified against its digest (a damaged quarantine fails closed)."""
    path = object_path(settings, sha256)
    if not path.is_file():
        raise NotFound(f"quarantined object {sha256[:12]} is missing: restore the quarantine from backup")
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        raise InvalidInput(f"quarantined object {sha256[:12]} no longer matches its digest: it was altered; restore it from backup")
    return path
