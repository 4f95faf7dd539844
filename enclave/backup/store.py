"""The backup destination: content-addressed objects and signed manifests.

An object is known by the sha256 of its bytes, so a file already stored (by this backup
or any earlier one) is never stored again. Files' bytes, and the database snapshot in
fixed, page-aligned chunks, go into pack files, back to back (``packs/<id>.pack``, at
most one per worker and run), each with an index of where every object in it starts
(``packs/<id>.idx``): one file created per worker instead of one per backed up file,
since creating a file costs far more than copying a small one. The sealed keys are a
single object (``objects/<2 hex>/<sha256>``). Once :data:`MERGE_AT` per-pack indexes have
piled up (one per incremental run), they are merged into one (``packs/<id>.midx``), so
verify and restore read a few index files, not one per backup ever made.
Everything is written under a temporary name in ``tmp/`` and named only once it is on
disk, the manifest last; ``tmp/`` leftovers of a killed run are swept by the next one.

Nothing is synced while files are copied. :meth:`Store.commit` makes the batch durable:
it fsyncs the few files the run wrote (a pack per worker, their indexes, the database
copy, the sealed keys, the ledger, the manifest), only then renames them to their names,
and fsyncs the folders that hold the names, so the names are on disk before the manifest
is named. Packs keep that to a handful of files per run (one fsync per backed-up file
would make the disk's journal, not the copy, set the pace), and an fsync waits only for
the backup's own bytes, not for whatever else is dirty on the same filesystem. A crash
(``kill -9`` or a power cut) before that leaves only unnamed files in ``tmp/``; an object
under its final name, and a pack named by an index, always holds its bytes, which is what
lets a later run trust an object it finds (:meth:`Store.has`). Merging indexes keeps that:
the merged index is durable under its name before any index it replaces is removed, so
every pack is named by some index at every moment (a killed merge leaves both, which
read the same).
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import json
import operator
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from enclave.errors import Conflict, InvalidInput, NotFound
from enclave.workspace_fs import utf8_name

BUF = 4 << 20
# Files are copied into a pack through a buffer this size: small enough to stay in the
# CPU's cache between being read, hashed and written.
COPY_BUF = 256 << 10
PACK_LIMIT = 1 << 30  # a worker starts a new pack once its pack is this large
MANIFEST_FORMAT = "enclave-backup/2"
# Manifests list files as rows of these fields (a third faster to write and to read than
# one object per file); "enclave-backup/1" manifests list objects with these keys.
FILE_FIELDS = ("path", "sha256", "size", "mode", "mtime_ns", "stat")
PATH, SHA256, SIZE, MODE, MTIME_NS, STAT = range(len(FILE_FIELDS))  # a row's fields
MANIFEST_FORMATS = frozenset({"enclave-backup/1", MANIFEST_FORMAT})
PACK_FORMAT = "enclave-pack/1"
MERGED_FORMAT = "enclave-pack-index/1"
MERGE_AT = 16  # per-pack indexes that are merged into one
HEX = frozenset("0123456789abcdef")


RAW_NAME = "raw"


def manifest_name(name: str) -> str | dict[str, str]:
    """How a path is written in a manifest: as it is, or, when its bytes are not UTF-8 (a
    researcher may give a workspace file any name), as ``{"raw": base64 of its bytes}``,
    so the manifest stays valid UTF-8 JSON and the name comes back byte for byte."""
    return name if utf8_name(name) else {RAW_NAME: base64.b64encode(os.fsencode(name)).decode()}


def name_of(value: Any) -> str:
    """A path as a manifest wrote it (:func:`manifest_name`), as the str the os functions
    take (undecodable bytes as surrogates, as ``os.fsdecode`` gives them)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1 and isinstance(value.get(RAW_NAME), str):
        try:
            return os.fsdecode(base64.b64decode(value[RAW_NAME], validate=True))
        except (binascii.Error, ValueError):
            pass
    raise Conflict("the backup's manifest names a path it cannot decode: it is damaged, use another backup")


def encode_rows(rows: list[list[Any]]) -> list[list[Any]]:
    """File rows as a manifest writes them (:func:`manifest_name`); the same list when
    every name is UTF-8, as nearly every one is."""
    out = rows
    for i, row in enumerate(rows):
        name = row[PATH]
        if not name.isascii() and (written := manifest_name(name)) is not name:
            if out is rows:
                out = list(rows)
            out[i] = [written, *row[1:]]
    return out


def encode_dirs(dirs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Folder entries as a manifest writes them (see :func:`encode_rows`)."""
    return [d if d["path"].isascii() else {**d, "path": manifest_name(d["path"])} for d in dirs]


def manifest_dirs(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A manifest's folders, their paths decoded (:func:`name_of`)."""
    return [d if isinstance(d["path"], str) else {**d, "path": name_of(d["path"])} for d in record.get("dirs", [])]


def manifest_files(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A manifest's files, one dict (keyed by :data:`FILE_FIELDS`) per file, their paths
    decoded (:func:`name_of`)."""
    files = record.get("files", [])
    if record.get("format") == MANIFEST_FORMAT:
        found = [dict(zip(FILE_FIELDS, row)) for row in files]
    else:
        found = [dict(entry) for entry in files]
    for entry in found:
        if not isinstance(entry.get("path"), str):
            entry["path"] = name_of(entry.get("path"))
    return found


def manifest_rows(record: dict[str, Any]) -> list[list[Any]]:
    """A manifest's files as rows (:data:`FILE_FIELDS`), whatever its format, their paths
    decoded; a row of another shape or with a path it cannot decode (a damaged manifest)
    is left out, so its file is read again."""
    if record.get("format") == MANIFEST_FORMAT:
        width = len(FILE_FIELDS)
        rows = [row for row in record.get("files", []) if isinstance(row, list) and len(row) == width]
    else:
        rows = [list(row) for row in file_rows(record.get("files", []))]
    if all(type(row[PATH]) is str for row in rows):
        return rows
    decoded = []
    for row in rows:
        try:
            decoded.append(row if type(row[PATH]) is str else [name_of(row[PATH]), *row[1:]])
        except Conflict:
            continue
    return decoded


def file_rows(entries: list[dict[str, Any]]) -> list[Any]:
    """Files as a manifest lists them (:data:`FILE_FIELDS`; a tuple is written as a list)."""
    row = operator.itemgetter(*FILE_FIELDS)
    try:
        return [row(entry) for entry in entries]
    except KeyError:  # an entry of an old manifest without every field
        return [[entry.get(name) for name in FILE_FIELDS] for entry in entries]


@dataclass
class Stored:
    sha256: str
    size: int
    written: int  # bytes written to the store (0 when the object was already there)


@dataclass
class Chunked:
    sha256: str  # of the whole file
    size: int
    chunks: list[list[Any]]  # [sha256, size] of each chunk, in order
    written: int  # bytes written to the store


@dataclass(frozen=True)
class Location:
    """Where an object's bytes are: a whole file, or a range of a pack."""

    path: Path
    offset: int
    size: int | None  # None: the whole file


class _PackWriter:
    """One worker's pack under construction in ``tmp/`` (only that worker writes to it)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.id = tmp.stem
        self.fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        self.size = 0
        self.objects: dict[str, list[int]] = {}  # sha256 -> [offset, size]
        self.buf = bytearray(COPY_BUF)

    def cut(self, offset: int) -> None:
        """Drop what was written after ``offset`` (a duplicate, or a failed read)."""
        os.ftruncate(self.fd, offset)
        os.lseek(self.fd, offset, os.SEEK_SET)
        self.size = offset


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data):]


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync(target: int | Path) -> None:
    """fsync an open file descriptor, or the file at a path."""
    if isinstance(target, int):
        os.fsync(target)
    else:
        _fsync_file(target)


def _in_parallel(fsync: Any, targets: list[Any]) -> None:
    """fsync every target at once: the filesystem commits concurrent fsyncs to its journal
    together, where one after another would each wait for a commit of their own."""
    if len(targets) <= 1:
        for target in targets:
            fsync(target)
        return
    with ThreadPoolExecutor(max_workers=min(8, len(targets))) as pool:
        list(pool.map(fsync, targets))


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
        # Written but not yet durable or named: single objects (sha256 -> temporary file),
        # objects in this run's packs (sha256 -> (pack, offset, size)), and other files
        # (the ledger) -> their temporary file. Filled by worker threads.
        self._pending: dict[str, Path] = {}
        self._pending_packed: dict[str, tuple[str, int, int]] = {}
        self._pending_files: list[tuple[Path, Path]] = []
        self._writers: list[_PackWriter] = []
        self._free: list[_PackWriter] = []  # this run's packs no thread is writing to
        # Named packs' objects: sha256 -> pack id (what an incremental run asks, built at C
        # speed), and each pack's {sha256: [offset, size]} as its index lists them (read
        # only to locate an object's bytes).
        self._index: dict[str, str] | None = None
        self._packs: dict[str, dict[str, list[int]]] = {}
        self._covered: set[str] = set()  # packs some index names
        self._index_damaged = False
        self._lock = threading.Lock()
        self._objects_str = os.fspath(self.root / "objects")
        self.sync_seconds = 0.0  # time spent waiting for the disk (the benchmark reports it)

    @property
    def objects(self) -> Path:
        return self.root / "objects"

    @property
    def packs(self) -> Path:
        return self.root / "packs"

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
        for path in (self.root, self.objects, self.packs, self.backups, self.tmp):
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
        """Remove what a killed run left in ``tmp/``, and a pack it named without getting
        to name its index (only the lock holder calls this). While any index is damaged,
        no pack is removed: its packs might be the ones that look unnamed."""
        for leftover in self.tmp.iterdir():
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        if self.packs.is_dir():
            self._load_index()
            if not self._index_damaged:
                for pack in self.packs.glob("*.pack"):
                    if pack.stem not in self._covered:
                        pack.unlink()

    def path_of(self, sha256: str) -> Path:
        """Where a single object (not one in a pack) is or would be."""
        if len(sha256) != 64 or not HEX.issuperset(sha256):
            raise InvalidInput(f"{sha256!r} is not a sha256 digest: the manifest is damaged")
        return self.objects / sha256[:2] / sha256

    def _read_indexes(self) -> tuple[dict[str, dict[str, list[int]]], list[Path], bool]:
        """Every pack some index names, with its objects ({pack id: {sha256: [offset,
        size]}}), the index files read, and whether one of them was damaged."""
        packs: dict[str, dict[str, list[int]]] = {}
        read: list[Path] = []
        damaged = False
        found = (sorted(self.packs.glob("*.midx")) + sorted(self.packs.glob("*.idx"))) if self.packs.is_dir() else []
        for idx in found:
            try:
                listed = orjson.loads(idx.read_bytes())
                if idx.suffix == ".midx" and listed.get("format") == MERGED_FORMAT:
                    named = listed["packs"]
                elif idx.suffix == ".idx" and listed.get("format") == PACK_FORMAT:
                    named = {idx.stem: listed["objects"]}
                else:
                    raise ValueError(idx.name)
                for pack_id, objects in named.items():
                    if not isinstance(objects, dict):
                        raise TypeError(idx.name)
                    packs.setdefault(pack_id, {}).update(objects)
                read.append(idx)
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                damaged = True  # its objects count as missing (verify says which)
        return packs, read, damaged

    def _load_index(self) -> dict[str, str]:
        """Every named pack's objects, sha256 -> pack id (read once per run; the lock is held)."""
        if self._index is None:
            index: dict[str, str] = {}
            packs, _read, self._index_damaged = self._read_indexes()
            for pack_id, objects in packs.items():
                index.update(dict.fromkeys(objects, pack_id))
            self._covered = set(packs)
            self._packs = packs
            self._index = index
        return self._index

    def merge_indexes(self, at: int | None = None) -> int:
        """Merge the packs' indexes into one once ``at`` (default :data:`MERGE_AT`)
        per-pack ones have piled up (the lock is held); returns the index files merged
        (0: none). The merged index is durable under its name before the ones it replaces
        are removed."""
        at = MERGE_AT if at is None else at
        if not self.packs.is_dir() or sum(1 for _ in self.packs.glob("*.idx")) < at:
            return 0
        packs, read, damaged = self._read_indexes()
        if damaged or len(read) < 2:
            return 0  # never merge over a damaged index: verify names it, and nothing is lost
        tmp = self._temp_json({"format": MERGED_FORMAT, "packs": packs})
        _fsync_file(tmp)
        os.chmod(tmp, 0o400)
        os.rename(tmp, self.packs / f"{uuid.uuid4().hex}.midx")
        fsync_dir(self.packs)
        for idx in read:
            idx.unlink()
        fsync_dir(self.packs)
        return len(read)

    def _known(self, sha256: str) -> bool:
        """Stored, or written by this run (the lock is held)."""
        return sha256 in self._pending or sha256 in self._pending_packed or sha256 in self._load_index()

    def stored(self, shas: set[str]) -> set[str]:
        """Those of ``shas`` that :meth:`has` (one look at the index for them all: an
        incremental run asks this for every unchanged file)."""
        with self._lock:
            index = self._load_index()
            found = {sha for sha in shas if sha in index or sha in self._pending or sha in self._pending_packed}
        for sha in shas - found:
            self.path_of(sha)  # a valid name
            if os.path.isfile(f"{self._objects_str}/{sha[:2]}/{sha}"):
                found.add(sha)
        return found

    def has(self, sha256: str) -> bool:
        """Stored under its name or in a named pack, or written by this run and named at
        :meth:`commit`."""
        with self._lock:
            if self._known(sha256):
                return True
        self.path_of(sha256)  # a valid name
        # Plain strings: an incremental run may ask this once for every unchanged file.
        return os.path.isfile(f"{self._objects_str}/{sha256[:2]}/{sha256}")

    def locate(self, sha256: str) -> Location | None:
        """Where a stored object's bytes are, or None if it is not stored."""
        single = self.path_of(sha256)
        if single.is_file():
            return Location(single, 0, None)
        with self._lock:
            pack_id = self._load_index().get(sha256)
            where = self._packs.get(pack_id, {}).get(sha256) if pack_id is not None else None
        try:
            offset, size = (int(n) for n in where)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            return None  # not stored, or its index entry is damaged (verify says which)
        return Location(self.packs / f"{pack_id}.pack", offset, size)

    def chunks(self, sha256: str, size: int | None = None) -> Iterator[bytes]:
        """An object's bytes in pieces, as stored (the caller checks them against the name).
        FileNotFoundError if it is not stored."""
        where = self.locate(sha256)
        if where is None:
            raise FileNotFoundError(sha256)
        left = where.size
        with open(where.path, "rb") as fh:
            fh.seek(where.offset)
            while left is None or left > 0:
                chunk = fh.read(BUF if left is None else min(BUF, left))
                if not chunk:
                    break
                if left is not None:
                    left -= len(chunk)
                yield chunk

    def temp_path(self, suffix: str = "") -> Path:
        return self.tmp / f"{uuid.uuid4().hex}{suffix}"

    def _stage(self, tmp: Path, sha256: str) -> bool:
        """Queue ``tmp`` to be named ``sha256`` at :meth:`commit`; False (and ``tmp`` removed)
        if that object is already stored or queued."""
        self.path_of(sha256)  # a valid name
        with self._lock:
            queued = self._known(sha256)
            if not queued:
                self._pending[sha256] = tmp
        if queued or self.path_of(sha256).exists():
            if not queued:
                with self._lock:
                    del self._pending[sha256]
            tmp.unlink()
            return False
        return True

    @contextmanager
    def _writer(self) -> Iterator[_PackWriter]:
        """A pack of this run no other thread is writing to (a new one if none is free,
        or the free ones are full): at most one pack per thread that writes at once."""
        with self._lock:
            free = [w for w in self._free if w.size < PACK_LIMIT]
            writer = free[0] if free else None
            if writer is not None:
                self._free.remove(writer)
        if writer is None:
            writer = _PackWriter(self.temp_path(".pack"))
            with self._lock:
                self._writers.append(writer)
        try:
            yield writer
        finally:
            with self._lock:
                self._free.append(writer)

    def _claim(self, writer: _PackWriter, sha: str, start: int, size: int) -> bool:
        """Record the object just written at ``start`` in ``writer``'s pack; False if it is
        stored already (the caller cuts it off again)."""
        with self._lock:
            fresh = not self._known(sha)
            if fresh:
                self._pending_packed[sha] = (writer.id, start, size)
                writer.objects[sha] = [start, size]
        if fresh and os.path.isfile(f"{self._objects_str}/{sha[:2]}/{sha}"):  # stored singly by an older run
            with self._lock:
                del self._pending_packed[sha], writer.objects[sha]
            fresh = False
        return fresh

    def put_fd(self, fd: int, progress: Any = None) -> Stored:
        """Copy an open file into a pack, hashing the very bytes written as they pass
        through one buffer, so an object's name always matches its bytes even if the
        source changes meanwhile. A duplicate is cut off the pack again. Durable and
        named at :meth:`commit`."""
        with self._writer() as writer:
            return self._put_fd(writer, fd, progress)

    def _put_fd(self, writer: _PackWriter, fd: int, progress: Any) -> Stored:
        start = writer.size
        digest = hashlib.sha256()
        view = memoryview(writer.buf)
        try:
            while n := os.readv(fd, [writer.buf]):
                chunk = view[:n]
                digest.update(chunk)  # releases the GIL: the other worker runs meanwhile
                _write_all(writer.fd, chunk)
                writer.size += n
                if progress is not None:
                    progress(n)
        except BaseException:
            writer.cut(start)
            raise
        sha, size = digest.hexdigest(), writer.size - start
        fresh = self._claim(writer, sha, start, size)
        if not fresh:
            writer.cut(start)
        return Stored(sha, size, size if fresh else 0)

    def put_chunked(self, path: Path, chunk: int) -> Chunked:
        """Store a file this run wrote in ``tmp/`` (the database snapshot) as objects of
        ``chunk`` bytes each, at fixed offsets, so a page changed in place changes one
        chunk: only chunks not stored yet are written (to a pack)."""
        whole, chunks, written = hashlib.sha256(), [], 0
        with self._writer() as writer, open(path, "rb", buffering=0) as fh:
            while piece := fh.read(chunk):
                while len(piece) < chunk and (more := fh.read(chunk - len(piece))):
                    piece += more
                whole.update(piece)
                sha = hashlib.sha256(piece).hexdigest()
                chunks.append([sha, len(piece)])
                with self._lock:
                    known = self._known(sha)
                if known or os.path.isfile(self.path_of(sha)):
                    continue
                start = writer.size
                _write_all(writer.fd, memoryview(piece))
                writer.size += len(piece)
                if self._claim(writer, sha, start, len(piece)):
                    written += len(piece)
                else:
                    writer.cut(start)
        return Chunked(whole.hexdigest(), sum(size for _sha, size in chunks), chunks, written)

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
        """``data`` (or JSON bytes already serialised) in a new file in ``tmp/``."""
        tmp = self.temp_path(".json")
        # orjson: compact, keys sorted, several times faster than json (a manifest lists every file).
        text = data if isinstance(data, bytes) else orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
        with open(tmp, "wb") as out:
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
            objects, files, writers = sorted(self._pending.items()), list(self._pending_files), self._writers
            packed = self._pending_packed
            self._pending, self._pending_files, self._writers, self._pending_packed = {}, [], [], {}
            self._free = []
        packs: list[tuple[Path, Path, str]] = []  # (pack in tmp/, its index in tmp/, id)
        for writer in writers:
            os.fchmod(writer.fd, 0o400)
            if not writer.objects:
                os.close(writer.fd)
                writer.tmp.unlink()
                continue
            idx = self._temp_json({"format": PACK_FORMAT, "objects": writer.objects})
            os.chmod(idx, 0o400)
            packs.append((writer.tmp, idx, writer.id))
        start = time.perf_counter()
        # 1. the bytes, under temporary names: every file at once, one journal commit for all
        _in_parallel(_fsync, [w.fd for w in writers if w.objects] + [t for _sha, t in objects]
                     + [t for t, _path in files] + [idx for _p, idx, _i in packs] + ([last[0]] if last else []))
        self.sync_seconds += time.perf_counter() - start
        for writer in writers:
            if writer.objects:
                os.close(writer.fd)
        folders: set[Path] = set()
        for sha, tmp in objects:  # 2. the names (a pack before its index)
            final = self.path_of(sha)
            if not final.parent.is_dir():
                final.parent.mkdir(mode=0o700)
                folders.add(final.parent.parent)
            os.rename(tmp, final)
            folders.add(final.parent)
        for pack, idx, pack_id in packs:
            os.rename(pack, self.packs / f"{pack_id}.pack")
            os.rename(idx, self.packs / f"{pack_id}.idx")
            folders.add(self.packs)
        for tmp, path in files:
            os.rename(tmp, path)
            folders.add(path.parent)
        start = time.perf_counter()
        _in_parallel(fsync_dir, sorted(folders))  # 3. the names, before a manifest refers to them
        self.sync_seconds += time.perf_counter() - start
        if last is not None:
            os.rename(*last)  # 4. the manifest: the backup exists
            fsync_dir(last[1].parent)
        if self._index is not None:
            with self._lock:
                for sha, (pack_id, offset, size) in packed.items():
                    if self._index.setdefault(sha, pack_id) == pack_id:
                        self._packs.setdefault(pack_id, {})[sha] = [offset, size]
                self._covered.update(pack_id for _p, _i, pack_id in packs)
        return len(objects) + len(packed)

    def read_bytes(self, sha256: str) -> bytes:
        """An object's bytes, checked against its name."""
        try:
            data = b"".join(self.chunks(sha256))
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
            envelope = orjson.loads((self.backups / f"{chosen}.json").read_bytes())
        except (OSError, ValueError):
            raise Conflict(f"the manifest of backup {chosen} is damaged (not JSON): use another backup") from None
        record = envelope.get("record") if isinstance(envelope, dict) else None
        if not isinstance(record, dict) or record.get("format") not in MANIFEST_FORMATS or record.get("id") != chosen:
            raise Conflict(f"the manifest of backup {chosen} is not an enclave backup manifest: use another backup")
        return envelope
