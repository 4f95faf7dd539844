"""``enclave backup create``: an online, consistent, incremental backup of the enclave.

Order matters for consistency while people work:

1. the database is copied first, as of one moment (:mod:`enclave.backup.snapshot`);
2. then only the files that copy refers to are stored: dataset versions, views, quarantined
   objects and releases never change once written (a new one gets a new name), so what is
   stored is exactly what the database describes. Workspaces and job logs do change while
   people work: they are copied file by file as they are at that moment (best effort;
   nothing in the database points into a workspace, so the workspaces are listed while
   the database is copied).
3. the keys are sealed (never stored in the clear), the manifest is signed and written last.

Symbolic links, devices and other special files are never followed or copied; they are
listed in the manifest as skipped.

How a run decides what changed: a file whose size, modification time, change time and
inode (its stat key) match the previous backup's entry, and whose object is stored, is
not read again. That holds for workspaces too: every write, truncation, rename over it or
``utime`` sets the change time to the kernel's clock, and nothing short of root (setting
the system clock back, or editing the disk underneath the filesystem) can set it back, so
an unchanged key means unchanged bytes. The gap is a write within the same clock tick as
the backup's own look at the file: a file changed less than :func:`racy_ns` before it was
read, or that changed while it was read, gets no key, so the next run reads it again.
``rehash=True`` (a verify-grade backup) trusts no key: it reads and hashes every file and
names each one whose bytes changed behind an unchanged key (what the fast mode would have
missed: root-level tampering or the disk's own damage).

The database snapshot is stored in fixed chunks (:data:`DB_CHUNK` bytes or more, a
multiple of SQLite's page size): a write changes a few pages in place, so a run stores
only the chunks that hold them.
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.progress import Progress

from enclave.audit import append_event
from enclave.backup.crypto import seal
from enclave.backup.snapshot import References, snapshot_database
from enclave.backup.store import (FILE_FIELDS, MANIFEST_FORMAT, PATH, SHA256, SIZE, STAT, Store, encode_dirs,
                                  encode_rows, manifest_rows)
from enclave.config import Settings
from enclave.disclosure.differencing.store import STORE_DIR as DIFFERENCING_STORE_DIR
from enclave.db.models import User
from enclave.db.session import unit_of_work
from enclave.egress.signing import load_or_create_key, signed_json
from enclave.errors import EnclaveError, InvalidInput
from enclave.permissions import check_admin
from enclave.workspace_fs import WorkspaceDir, open_workspace, printable_name

WORKERS = 2
# A file whose modification or change time is this close to when it was read may still be
# written within the same timestamp tick: its stat key is not recorded (read it next time).
# Whole-second timestamps (an old or network filesystem) need two seconds; a filesystem
# with sub-second timestamps takes them from the kernel's coarse clock, whose tick is at
# most 10 ms, so a quarter of a second leaves a wide margin.
RACY_NS = 2_000_000_000
RACY_FINE_NS = 250_000_000
DB_CHUNK = 16 << 10  # smallest database chunk; at most DB_CHUNKS of them (the size doubles)
DB_CHUNKS = 4096
# Files in keys/ that anyone may see (what custodians verify with) are also stored in the clear.
PUBLIC_KEY_FILES = frozenset({"keyring.json", "egress-signing.pub"})
LEDGER = "destroyed.json"


class BackupAction:
    CREATE = "backup.create"
    RESTORE = "backup.restore"


@dataclass
class BackupResult:
    id: str
    files: int = 0
    bytes_total: int = 0
    files_read: int = 0
    bytes_read: int = 0
    objects_written: int = 0
    bytes_written: int = 0
    database_bytes_written: int = 0
    sync_seconds: float = 0.0  # of the run, waiting for the destination's disk
    skipped: list[dict[str, str]] = field(default_factory=list)
    # rehash=True: files whose bytes changed although their stat key did not
    changed_behind_stat: list[str] = field(default_factory=list)
    indexes_merged: int = 0


@dataclass
class _Plan:
    # (path in manifest, path on disk, its lstat when the walk reached it)
    files: list[tuple[str, str, os.stat_result]] = field(default_factory=list)
    dirs: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    seen_dirs: set[str] = field(default_factory=set)


def new_backup_id(now: dt.datetime) -> str:
    return f"{now:%Y%m%dT%H%M%S}Z-{now:%f}"


def _walk(plan: _Plan, path: str, name: str, st: os.stat_result | None = None) -> None:
    """Add a file or a whole tree to the plan, never following a link. Plain strings and
    the stat ``scandir`` already took: an incremental run walks every file."""
    if st is None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            plan.skipped.append({"path": name, "reason": "gone when the backup reached it"})
            return
    if stat.S_ISREG(st.st_mode):
        plan.files.append((name, path, st))
    elif stat.S_ISDIR(st.st_mode):
        if name not in plan.seen_dirs:
            plan.dirs.append({"path": name, "mode": stat.S_IMODE(st.st_mode)})
            plan.seen_dirs.add(name)
        try:
            with os.scandir(path) as found:
                entries = list(found)  # in the folder's order: the plan is sorted once, at its end
        except FileNotFoundError:
            return
        files, prefix = plan.files, name + "/"
        for entry in entries:
            if entry.name.startswith(".staging-"):
                continue  # a half-built version, view or release: not part of any committed state
            try:
                child = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                plan.skipped.append({"path": prefix + entry.name, "reason": "gone when the backup reached it"})
                continue
            if stat.S_ISREG(child.st_mode):  # most entries: no call of their own
                files.append((prefix + entry.name, entry.path, child))
            else:
                _walk(plan, entry.path, prefix + entry.name, child)
    else:
        kind = "symbolic link" if stat.S_ISLNK(st.st_mode) else "special file"
        plan.skipped.append({"path": name, "reason": f"{kind}: never followed or copied"})


def _rel(settings: Settings, path: str | Path) -> str | None:
    """``path`` relative to the home (posix), or None if it lies outside it."""
    rel = os.path.relpath(os.path.normpath(os.path.abspath(path)), settings.home)
    return None if rel == ".." or rel.startswith("../") or os.path.isabs(rel) else Path(rel).as_posix()


def _parents(plan: _Plan, settings: Settings, rel: str) -> None:
    """Record the home's folders above ``rel`` (their modes matter: keys/ is 0700)."""
    parts = rel.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        name = "/".join(parts[:i])
        if name not in plan.seen_dirs:
            try:
                mode = stat.S_IMODE(os.lstat(settings.home / name).st_mode)
            except FileNotFoundError:
                continue
            plan.dirs.append({"path": name, "mode": mode})
            plan.seen_dirs.add(name)


def _walk_targets(plan: _Plan, settings: Settings, targets: list[tuple[Path, bool]]) -> _Plan:
    """Add each (path, whether the database says it must exist) to the plan."""
    for target, required in targets:
        rel = _rel(settings, target)
        if rel is None:
            plan.skipped.append({"path": str(target), "reason": "outside ENCLAVE_HOME: back it up separately"})
            continue
        if not os.path.lexists(target):
            if required:
                plan.skipped.append({"path": rel, "reason": "missing although the database refers to it"})
            continue
        _parents(plan, settings, rel)
        _walk(plan, os.fspath(target), rel)
    return plan


def walk_workspaces(settings: Settings) -> _Plan:
    """Every file in the workspaces. Nothing in the database points into them (they are
    copied as they are, file by file), so they may be walked while the database is copied."""
    return _walk_targets(_Plan(), settings, [(settings.workspaces_dir, False)])


def plan_files(settings: Settings, refs: References, workspaces: _Plan | None = None) -> _Plan:
    """Every file of the enclave the snapshot refers to, plus workspaces (walked here, or
    as ``workspaces`` already did), job logs and policies."""
    from enclave.egress.quarantine import object_path
    from enclave.jobs.service import jobs_dir, log_path

    plan = _Plan()
    # (path, whether the database says it must exist)
    targets: list[tuple[Path, bool]] = [(Path(p), True) for p in
                                        refs.dataset_dirs + refs.view_dirs + refs.release_dirs + refs.archives]
    targets += [(object_path(settings, sha), True) for sha in refs.quarantine_objects]
    targets += [(jobs_dir(settings) / "notebooks" / f"{sha}.ipynb", True) for sha in refs.job_notebooks]
    targets += [(log_path(settings, run).parent, False) for run in refs.job_runs]
    if workspaces is None:
        targets.append((settings.workspaces_dir, False))
    else:
        plan.files += workspaces.files
        plan.skipped += workspaces.skipped
        plan.dirs += workspaces.dirs
        plan.seen_dirs |= workspaces.seen_dirs
    # The differencing store: who was in each cell of earlier outputs (without it, a restored
    # enclave could not tell a new table from the difference of two released ones).
    targets.append((settings.home / DIFFERENCING_STORE_DIR, False))
    targets += [(p, False) for p in sorted(settings.home.glob("*.log")) if p.is_file()]
    _walk_targets(plan, settings, targets)
    for entry in sorted(settings.keys_dir.glob("*")) if settings.keys_dir.is_dir() else []:
        if entry.name in PUBLIC_KEY_FILES and entry.is_file() and not entry.is_symlink():
            _parents(plan, settings, f"keys/{entry.name}")
            plan.files.append((f"keys/{entry.name}", os.fspath(entry), os.lstat(entry)))
    if settings.policies_dir.is_dir():
        pol = _Plan()
        _walk(pol, os.fspath(settings.policies_dir), "@policies")
        plan.files += pol.files
        plan.skipped += pol.skipped
    # One entry per path (a release folder may also be reached through its parent).
    unique = {name: (name, path, st) for name, path, st in plan.files}
    plan.files = [unique[name] for name in sorted(unique)]
    plan.dirs.sort(key=lambda d: d["path"])
    return plan


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class Workspaces:
    """Each workspace opened once per run, without following a link (``enclave.workspace_fs``):
    a workspace is written from inside its containers, where any folder below it may be
    swapped for a link while the backup runs."""

    def __init__(self, home: Path) -> None:
        self.root = home / "workspaces"
        self._open: dict[str, WorkspaceDir] = {}
        self._lock = threading.Lock()

    def get(self, slug: str) -> WorkspaceDir:
        with self._lock:
            found = self._open.get(slug)
            if found is None:
                found = self._open[slug] = open_workspace(self.root, slug)
            return found

    def close(self) -> None:
        for workspace in self._open.values():
            workspace.close()


# (the file's manifest row or None, a skip note or None, bytes read, bytes written)
Outcome = tuple[list[Any] | None, dict[str, str] | None, int, int]


def racy_ns(st: os.stat_result) -> int:
    """How long after its last change a file's stat key can be trusted: its change time,
    which the kernel alone sets, shows the filesystem's timestamp granularity."""
    return RACY_FINE_NS if st.st_ctime_ns % 1_000_000_000 else RACY_NS


def _unchanged(store: Store, plan: _Plan, previous: dict[str, list[Any]], advance: Any) -> list[Outcome | None]:
    """The outcome of every planned file unchanged since the previous backup (its stat
    key, from the walk's own lstat, matches and its object is stored: its row is kept as
    it is); None where the file must be read."""
    outcomes: list[Outcome | None] = [None] * len(plan.files)
    same: list[tuple[int, list[Any]]] = []
    for i, (name, _path, st) in enumerate(plan.files):
        old = previous.get(name)
        if old is not None and old[STAT] == [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]:
            same.append((i, old))
    stored = store.stored({old[SHA256] for _i, old in same})
    for i, old in same:
        if old[SHA256] in stored:
            advance(old[SIZE])
            outcomes[i] = old, None, 0, 0
    return outcomes


def _store_file(store: Store, workspaces: Workspaces, name: str, path: str, st: os.stat_result,
                advance: Any) -> Outcome:
    """Read a new or changed file into the store (see :data:`Outcome`)."""
    try:
        with open_source(workspaces, name, path) as (fd, fst):
            read_at = time.time_ns()
            if not stat.S_ISREG(fst.st_mode) or fst.st_ino != st.st_ino:
                return None, {"path": name, "reason": "replaced while the backup read it: not copied"}, 0, 0
            stored = store.put_fd(fd, advance)
            after = os.fstat(fd)
    except (OSError, EnclaveError):
        return None, {"path": name, "reason": "gone or replaced by a link when the backup reached it"}, 0, 0
    settled = max(fst.st_mtime_ns, fst.st_ctime_ns) <= read_at - racy_ns(fst) \
        and _stat_key(after) == _stat_key(fst) and stored.size == fst.st_size
    row = [name, stored.sha256, stored.size, stat.S_IMODE(fst.st_mode), fst.st_mtime_ns,
           _stat_key(fst) if settled else None]  # FILE_FIELDS
    return row, None, stored.size, stored.written


def open_source(workspaces: Workspaces, name: str, path: str) -> AbstractContextManager[tuple[int, os.stat_result]]:
    """Open the file ``name`` (relative to the home, at ``path``) for reading: (fd, its
    fstat). A workspace file below its workspace, following no link in any component; the
    enclave's own files, whose last component must not be a link."""
    parts = name.split("/")
    if len(parts) >= 3 and parts[0] == "workspaces":
        # The names come from the backup's own walk of the folder: one name per component.
        return workspaces.get(parts[1]).open_listed(tuple(parts[2:]), no_atime=True)
    return _open_plain(path)


@contextmanager
def _open_plain(path: str) -> Iterator[tuple[int, os.stat_result]]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NOATIME)
    except PermissionError:  # O_NOATIME is for the owner and root
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        yield fd, os.fstat(fd)
    finally:
        os.close(fd)


def _keys_plaintext(settings: Settings) -> bytes:
    """Every secret in keys/ (recursively), as JSON; links and special files are left out."""
    import base64

    plan = _Plan()
    if settings.keys_dir.is_dir():
        _walk(plan, os.fspath(settings.keys_dir), "keys")
    files = {}
    for name, path, st in plan.files:
        if Path(name).name.startswith(".keyring.lock"):
            continue
        files[name] = {"mode": stat.S_IMODE(st.st_mode), "data": base64.b64encode(Path(path).read_bytes()).decode()}
    return json.dumps({"files": files, "dirs": sorted(plan.dirs, key=lambda d: d["path"])}, sort_keys=True).encode()


def _keys_tag(settings: Settings, plaintext: bytes, passphrase: str | None, recipient: Any) -> str:
    """Whether the keys (and what they are sealed to) changed since the last backup, without
    unsealing it: an HMAC under the site's signing key, which reveals nothing of either."""
    import hmac

    from cryptography.hazmat.primitives import serialization

    raw = load_or_create_key(settings.keys_dir).private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    to = passphrase.encode() if passphrase is not None else recipient.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hmac.new(raw, hashlib.sha256(to).digest() + plaintext, "sha256").hexdigest()


def _seal_keys(store: Store, settings: Settings, previous: dict[str, Any] | None,
               passphrase: str | None, recipient: Any) -> dict[str, Any]:
    plaintext = _keys_plaintext(settings)
    tag = _keys_tag(settings, plaintext, passphrase, recipient)
    old = (previous or {}).get("keys")
    if old and old.get("tag") == tag and store.has(old["sha256"]):
        return dict(old)  # the same keys sealed to the same secret: nothing to store
    blob = seal(plaintext, passphrase=passphrase, recipient=recipient)
    stored = store.put_bytes(blob)
    return {"sha256": stored.sha256, "size": stored.size, "tag": tag,
            "scheme": "passphrase" if passphrase is not None else "recipient"}


def _merge_ledger(store: Store, destroyed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Add this snapshot's destructions to the destination's ledger (never remove one)."""
    path = store.root / LEDGER
    ledger: dict[str, Any] = {"format": "enclave-destroyed/1", "projects": {}}
    written = None
    if path.exists():
        try:
            ledger = json.loads(path.read_text(encoding="utf-8"))
            written = json.dumps(ledger, sort_keys=True)
        except ValueError:
            pass  # a damaged ledger is rebuilt from the destructions the database records
        ledger.setdefault("projects", {})
    for slug, item in destroyed.items():
        ledger["projects"].setdefault(slug, item)
    if json.dumps(ledger, sort_keys=True) != written:  # rewritten only when it grows
        store.stage_json(path, ledger)
    return ledger


def _store_files(store: Store, settings: Settings, plan: _Plan, previous: dict[str, list[Any]],
                 advance: Any, rehash: bool = False) -> list[Outcome]:
    """Every planned file's outcome, in the plan's order. Unchanged files are settled here
    (their stat key against the previous manifest), unless ``rehash``; the others are read
    by WORKERS threads that take the next file from one shared list (hashing releases the
    GIL, so both cores copy and hash), or by this thread when there is one file or none."""
    outcomes: list[Outcome | None] = [None] * len(plan.files) if rehash else _unchanged(store, plan, previous, advance)
    pending = [i for i, outcome in enumerate(outcomes) if outcome is None]
    todo = iter(pending)
    take = threading.Lock()
    workspaces = Workspaces(settings.home)

    def work() -> None:
        while True:
            with take:
                i = next(todo, None)
            if i is None:
                return
            name, path, st = plan.files[i]
            outcomes[i] = _store_file(store, workspaces, name, path, st, advance)

    try:
        if len(pending) <= 1:
            work()
        else:
            with ThreadPoolExecutor(max_workers=WORKERS) as pool:
                for done in [pool.submit(work) for _ in range(WORKERS)]:
                    done.result()
    finally:
        workspaces.close()
    return [outcome for outcome in outcomes if outcome is not None]


def _changed_behind_stat(plan: _Plan, previous: dict[str, list[Any]], rows: list[list[Any]]) -> list[str]:
    """Files read by a rehash run whose bytes differ from the previous backup's although
    their stat key (as the walk saw it) is the one recorded then."""
    seen = {name: st for name, _path, st in plan.files}
    found = []
    for row in rows:
        old, st = previous.get(row[PATH]), seen.get(row[PATH])
        if old is not None and st is not None and old[STAT] == _stat_key(st) and old[SHA256] != row[SHA256]:
            found.append(row[PATH])
    return found


def db_chunk_size(size: int) -> int:
    """The database's chunk size: DB_CHUNK, doubled until it takes at most DB_CHUNKS
    chunks (a power of two, so a multiple of any SQLite page size up to it)."""
    chunk = DB_CHUNK
    while size > chunk * DB_CHUNKS:
        chunk *= 2
    return chunk


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection during a run: it builds and parses manifests of tens of
    thousands of small objects, none of them cyclic garbage, and a full collection of the
    process's heap costs more than a whole incremental run."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def create_backup(settings: Settings, actor: User, dest: Path, *, passphrase: str | None = None,
                  recipient: Any = None, progress: Progress | None = None, rehash: bool = False) -> BackupResult:
    """Back the enclave up into ``dest`` (see the module's docstring); audited. ``rehash``
    reads every file instead of trusting unchanged stat keys (a verify-grade backup)."""
    check_admin(actor, "back up the enclave")
    if passphrase is None and recipient is None:
        raise InvalidInput("the keys must be sealed: set ENCLAVE_BACKUP_PASSPHRASE or give --recipient KEY.pub")
    store = Store(Path(dest).absolute())
    if _rel(settings, store.root) is not None:
        raise InvalidInput(f"{dest} is inside ENCLAVE_HOME: back up to a folder outside it (another disk)")
    # The workspaces are walked while the destination is opened and the database copied
    # (nothing in the database points into them), and the keys are sealed (scrypt) while
    # the files are copied.
    with _collector_paused(), ThreadPoolExecutor(max_workers=1) as helper:
        listing = helper.submit(walk_workspaces, settings)
        store.init()
        signing_key = load_or_create_key(settings.keys_dir)  # before the keyring is read: it must name this key
        with store.locked():
            store.sweep()
            previous = store.read_manifest()["record"] if store.manifest_ids() else None
            prev_files = {row[PATH]: row for row in manifest_rows(previous or {})}
            now = dt.datetime.now(dt.UTC)
            result = BackupResult(id=new_backup_id(now))
            snapshot = store.temp_path(".db")
            task = progress.add_task("database", total=None) if progress else None
            try:
                db_format, refs = snapshot_database(settings, snapshot)
                db = store.put_chunked(snapshot, db_chunk_size(snapshot.stat().st_size))
            finally:
                snapshot.unlink(missing_ok=True)
                workspaces = listing.result()
            result.database_bytes_written = db.written
            if progress is not None and task is not None:
                progress.update(task, total=1, completed=1)

            plan = plan_files(settings, refs, workspaces)
            result.skipped = list(plan.skipped)
            task = progress.add_task("files", total=sum(st.st_size for _n, _p, st in plan.files)) if progress else None
            advance = (lambda n: progress.advance(task, n)) if progress is not None and task is not None \
                else (lambda n: None)
            sealing = helper.submit(_seal_keys, store, settings, previous, passphrase, recipient)
            outcomes = _store_files(store, settings, plan, prev_files, advance, rehash)
            keys = sealing.result()
            entries: list[list[Any]] = []
            for entry, skip, read, written in outcomes:
                if entry is not None:
                    entries.append(entry)
                    result.files += 1
                    result.bytes_total += entry[SIZE]
                if skip is not None:
                    result.skipped.append(skip)
                if read:
                    result.files_read += 1
                    result.bytes_read += read
                if written:
                    result.objects_written += 1
                    result.bytes_written += written

            if rehash:
                result.changed_behind_stat = [printable_name(n) for n in _changed_behind_stat(plan, prev_files, entries)]
            # Skip notes and names in messages show bytes that are not UTF-8 as \xNN; the
            # manifest keeps every file's and folder's name byte for byte.
            result.skipped = [s if s["path"].isascii() else {**s, "path": printable_name(s["path"])} for s in result.skipped]
            ledger = _merge_ledger(store, refs.destroyed)
            manifest = {
                "format": MANIFEST_FORMAT, "id": result.id, "signed_at": now.isoformat(), "created_by": actor.name,
                "source": {"home": str(settings.home), "database": "sqlite" if settings.is_sqlite else "postgresql",
                           "schema": refs.revision, "policies": str(settings.policies_dir)},
                "database": {"sha256": db.sha256, "size": db.size, "format": db_format, "chunks": db.chunks},
                "rehash": rehash, "changed_behind_stat": result.changed_behind_stat,
                "audit_head": {"seq": refs.audit_seq, "hash": refs.audit_hash},
                "file_fields": list(FILE_FIELDS), "files": encode_rows(entries), "dirs": encode_dirs(plan.dirs),
                "keys": keys,
                "skipped": result.skipped,
                "destroyed": sorted(ledger["projects"]),
            }
            # Objects, ledger and manifest reach the disk in one batch; the manifest is named last.
            store.commit(manifest=(store.backups / f"{result.id}.json", signed_json(manifest, signing_key)))
            result.sync_seconds = store.sync_seconds
            result.indexes_merged = store.merge_indexes()
    with unit_of_work(settings, check=False) as session:  # the snapshot checked the schema moments ago
        append_event(session, actor.name, BackupAction.CREATE, target=f"backup:{result.id}", details={
            "destination": str(store.root), "files": result.files, "bytes": result.bytes_total,
            "bytes_written": result.bytes_written, "audit_head": refs.audit_seq, "keys": keys["scheme"],
            "rehash": rehash, "changed_behind_stat": result.changed_behind_stat,
        })
    return result
