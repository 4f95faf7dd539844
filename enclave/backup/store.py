"""The backup destination: content-addressed objects and signed manifests.

An object's name is the sha256 of its bytes, so a file already stored (by this backup or
any earlier one) is never stored again. Everything is written under a temporary name in
``tmp/`` and named only once it is on disk, the manifest last; ``tmp/`` leftovers of a
killed run are swept by the next one.

A run does not sync each object as it goes (one journal commit per file would make the
disk, not the copy, the limit). :meth:`Store.commit` makes the whole batch durable with one
``syncfs`` of the destination's filesystem, only then renames the objects to their names,
and syncs again, so the renames are on disk before a manifest can name them. A crash
(``kill -9`` or a power cut) before that leaves only unnamed files in ``tmp/``; an object
under its final name always holds its bytes, which is what lets a later run trust a name
it finds (:meth:`Store.has`).
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import mmap
import os
import shutil
import threading
import time
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


def _syncfs(path: Path) -> None:
    """Flush the filesystem holding ``path`` (``syncfs(2)``; ``sync(2)`` where it is missing)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if not hasattr(libc, "syncfs"):
            os.sync()
        elif libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs of {path} failed: {os.strerror(err)}")
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Store:
    """One backup destination directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        # Written but not yet durable or named: object sha256 -> temporary file, and other
        # files (the ledger) -> their temporary file. Filled by worker threads.
        self._pending: dict[str, Path] = {}
        self._pending_files: list[tuple[Path, Path]] = []
        self._lock = threading.Lock()
        self._objects_str = os.fspath(self.root / "objects")
        self.sync_seconds = 0.0  # time spent waiting for the disk (the benchmark reports it)

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
        if len(sha256) != 64 or not HEX.issuperset(sha256):
            raise InvalidInput(f"{sha256!r} is not a sha256 digest: the manifest is damaged")
        return self.objects / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        """Stored under its name, or written by this run and named at :meth:`commit`."""
        with self._lock:
            if sha256 in self._pending:
                return True
        self.path_of(sha256)  # a valid name
        # Plain strings: an incremental run asks this once for every unchanged file.
        return os.path.isfile(f"{self._objects_str}/{sha256[:2]}/{sha256}")

    def temp_path(self, suffix: str = "") -> Path:
        return self.tmp / f"{uuid.uuid4().hex}{suffix}"

    def _stage(self, tmp: Path, sha256: str) -> bool:
        """Queue ``tmp`` to be named ``sha256`` at :meth:`commit`; False (and ``tmp`` removed)
        if that object is already stored or queued."""
        self.path_of(sha256)  # a valid name
        with self._lock:
            queued = sha256 in self._pending
            if not queued:
                self._pending[sha256] = tmp
        if queued or self.path_of(sha256).exists():
            if not queued:
                with self._lock:
                    del self._pending[sha256]
            tmp.unlink()
            return False
        return True

    def put_fd(self, fd: int, progress: Any = None) -> Stored:
        """Copy an open file into the store (in the kernel), then name it by the sha256 of
        the copy itself, so an object's name always matches its bytes even if the source
        changed meanwhile. Durable and named at :meth:`commit`."""
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
                # The copy is in the page cache: hashing it there reads no disk.
                with mmap.mmap(out, 0, access=mmap.ACCESS_READ) as view:
                    digest.update(view)
            os.fchmod(out, 0o400)
        finally:
            os.close(out)
        sha = digest.hexdigest()
        return Stored(sha, size, size if self._stage(tmp, sha) else 0)

    def put_temp(self, tmp: Path) -> Stored:
        """Store a file this run wrote in ``tmp/`` by naming it (no copy)."""
        fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            with os.fdopen(os.dup(fd), "rb") as fh:
                digest = hashlib.file_digest(fh, "sha256")
            size = os.fstat(fd).st_size
            os.fchmod(fd, 0o400)
        finally:
            os.close(fd)
        sha = digest.hexdigest()
        return Stored(sha, size, size if self._stage(tmp, sha) else 0)

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
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        return Stored(sha, len(data), len(data) if self._stage(tmp, sha) else 0)

    def _temp_json(self, data: Any) -> Path:
        tmp = self.temp_path(".json")
        # Compact: only then does json use its C encoder (a manifest lists every file).
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        with open(tmp, "w", encoding="utf-8") as out:
            out.write(text)
        return tmp

    def stage_json(self, path: Path, data: Any) -> None:
        """Write ``data`` to replace ``path`` at :meth:`commit` (with the objects)."""
        tmp = self._temp_json(data)
        with self._lock:
            self._pending_files.append((tmp, path))

    def commit(self, manifest: tuple[Path, Any] | None = None) -> int:
        """Make everything written since the last commit durable, then name it, then make
        the names durable (see the module's docstring); ``manifest`` (path, data) is
        written with the batch but named only after every name before it is on disk.
        Returns the objects named."""
        last = (self._temp_json(manifest[1]), manifest[0]) if manifest is not None else None
        with self._lock:
            objects, files = sorted(self._pending.items()), list(self._pending_files)
            self._pending, self._pending_files = {}, []
        if objects or files or last:
            self._sync()  # 1. the bytes, under temporary names
        for sha, tmp in objects:  # 2. the names
            final = self.path_of(sha)
            final.parent.mkdir(mode=0o700, exist_ok=True)
            os.rename(tmp, final)
        for tmp, path in files:
            os.rename(tmp, path)
        if objects or files:
            self._sync()  # 3. the names, before a manifest refers to them
        if last is not None:
            os.rename(*last)  # 4. the manifest: the backup exists
            fsync_dir(last[1].parent)
        return len(objects)

    def _sync(self) -> None:
        start = time.perf_counter()
        _syncfs(self.root)
        self.sync_seconds += time.perf_counter() - start

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
        fsync_dir(path.parent)

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
