"""The backup destination: content-addressed objects and signed manifests.

An object's name is the sha256 of its bytes, so a file already stored (by this backup or
any earlier one) is never stored again. Everything is written under a temporary name in
``tmp/`` and renamed into place, the manifest last; ``tmp/`` leftovers of a killed run
are swept by the next one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import mmap
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enclave.errors import Conflict, InvalidInput, NotFound

BUF = 4 << 20
MANIFEST_FORMAT = "enclave-backup/1"
HEX = frozenset("0123456789abcdef")


@dataclass
class Stored:
    sha256: str
    size: int
    written: int  # bytes written to the store (0 when the object was already there)


class Store:
    """One backup destination directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def objects(self) -> Path:
        return self.root / "objects"

    @property
    def backups(self) -> Path:
        return self.root / "backups"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def init(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise InvalidInput(f"{self.root} is not a directory: give a backup folder")
        if self.root.is_dir() and any(self.root.iterdir()) and not self.backups.is_dir():
            raise InvalidInput(f"{self.root} is not empty and holds no enclave backups: give an empty or existing backup folder")
        for path in (self.root, self.objects, self.backups, self.tmp):
            path.mkdir(mode=0o700, exist_ok=True)

    def check_exists(self) -> None:
        if not self.backups.is_dir():
            raise NotFound(f"{self.root} holds no enclave backups: give the folder 'enclave backup create' wrote to")

    @contextmanager
    def locked(self) -> Iterator[None]:
        """One writer at a time (a second backup to the same place waits)."""
        with open(self.root / ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def sweep(self) -> None:
        """Remove what a killed run left in ``tmp/`` (only the lock holder calls this)."""
        for leftover in self.tmp.iterdir():
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)

    def path_of(self, sha256: str) -> Path:
        if len(sha256) != 64 or not set(sha256) <= HEX:
            raise InvalidInput(f"{sha256!r} is not a sha256 digest: the manifest is damaged")
        return self.objects / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()

    def temp_path(self, suffix: str = "") -> Path:
        return self.tmp / f"{uuid.uuid4().hex}{suffix}"

    def _commit(self, tmp: Path, sha256: str) -> bool:
        final = self.path_of(sha256)
        if final.exists():
            tmp.unlink()
            return False
        final.parent.mkdir(mode=0o700, exist_ok=True)
        os.chmod(tmp, 0o400)
        os.rename(tmp, final)
        return True

    def put_fd(self, fd: int, progress: Any = None) -> Stored:
        """Copy an open file into the store (in the kernel), then name it by the sha256 of
        the copy itself, so an object's name always matches its bytes even if the source
        changed meanwhile."""
        tmp = self.temp_path()
        out = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            size = 0
            while True:
                try:
                    n = os.copy_file_range(fd, out, BUF)
                except OSError:  # another filesystem kind: copy through user space
                    n = os.write(out, os.read(fd, BUF))
                if n == 0:
                    break
                size += n
                if progress is not None:
                    progress(n)
            digest = hashlib.sha256()
            if size:
                with mmap.mmap(out, 0, access=mmap.ACCESS_READ) as view:
                    digest.update(view)
            os.fdatasync(out)  # on disk before it gets its name (and before any manifest names it)
        finally:
            os.close(out)
        sha = digest.hexdigest()
        return Stored(sha, size, size if self._commit(tmp, sha) else 0)

    def put_path(self, path: Path) -> Stored:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            return self.put_fd(fd)
        finally:
            os.close(fd)

    def put_bytes(self, data: bytes) -> Stored:
        sha = hashlib.sha256(data).hexdigest()
        if self.has(sha):
            return Stored(sha, len(data), 0)
        tmp = self.temp_path()
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        return Stored(sha, len(data), len(data) if self._commit(tmp, sha) else 0)

    def read_bytes(self, sha256: str) -> bytes:
        """An object's bytes, checked against its name."""
        path = self.path_of(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"object {sha256[:12]} is missing from the backup: use another backup") from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise Conflict(f"object {sha256[:12]} of the backup is damaged (its sha256 differs): use another backup")
        return data

    def write_json_atomic(self, path: Path, data: Any) -> None:
        tmp = self.temp_path(".json")
        with open(tmp, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=1, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.rename(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def manifest_ids(self) -> list[str]:
        """Complete backups, oldest first (ids sort by time)."""
        if not self.backups.is_dir():
            return []
        return sorted(p.stem for p in self.backups.glob("*.json"))

    def read_manifest(self, backup_id: str | None = None) -> dict[str, Any]:
        """A backup's signed manifest envelope (the newest when ``backup_id`` is None)."""
        self.check_exists()
        ids = self.manifest_ids()
        if not ids:
            raise NotFound(f"{self.root} holds no complete backup yet: run 'enclave backup create {self.root}'")
        chosen = backup_id or ids[-1]
        if chosen not in ids:
            raise NotFound(f"no backup {chosen!r} in {self.root}: choose one of {', '.join(ids[-5:])}")
        try:
            envelope = json.loads((self.backups / f"{chosen}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise Conflict(f"the manifest of backup {chosen} is damaged (not JSON): use another backup") from None
        record = envelope.get("record") if isinstance(envelope, dict) else None
        if not isinstance(record, dict) or record.get("format") != MANIFEST_FORMAT or record.get("id") != chosen:
            raise Conflict(f"the manifest of backup {chosen} is not an enclave backup manifest: use another backup")
        return envelope
