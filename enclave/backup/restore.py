"""``enclave backup restore``: a backup into a fresh home, on SQLite or PostgreSQL.

The home must be empty (or hold only what an interrupted restore of the same backup
left, which is cleared and redone). Files are checked against their sha256 as they are
written; the database is loaded in one transaction (rows copied through the model, so a
backup of either database restores onto either), with the paths it stores moved to the
new home, and the restore is appended to the audit log in that same transaction. Then
everything is verified: the audit chain, every release record, every dataset version.

Destruction is honoured: the data of a project destroyed according to the backup or to
the destination's ledger (even if destroyed after this backup was taken) is not
restored, and the restore says so.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from rich.progress import Progress
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.orm import Session

from enclave.audit import append_event, verify_chain
from enclave.backup.create import LEDGER, BackupAction
from enclave.backup.crypto import unseal
from enclave.backup.snapshot import copy_rows
from enclave.backup.store import Store, manifest_dirs, manifest_files
from enclave.backup.pgdump import path_updates, restore_to_postgresql
from enclave.backup.snapshot import DbFormat
from enclave.backup.verify import BackupDamaged, database_bytes, db_format, sqlite_copy, verify_backup
from enclave.catalog.storage import ChecksumMismatch, verify_dir
from enclave.config import Settings
from enclave.db.models import AuditEvent, Base, DataRetention, DatasetVersion, EgressRequest
from enclave.db.session import engine_for, upgrade
from enclave.egress.release import verify_release
from enclave.egress.signing import site_verifier
from enclave.enums import EgressStatus
from enclave.errors import Conflict, InvalidInput

MARKER = ".restore-in-progress"
RESTORER = "enclave-restore"
# Columns that store a path inside the home: moved to the new home on restore.
PATH_COLUMNS = {"dataset_versions": ("storage_path",), "grants": ("view_path",),
                "egress_requests": ("release_record_path",), "data_retention": ("archive_path",)}


@dataclass
class RestoreResult:
    id: str
    home: Path
    db_url: str
    files: int = 0
    bytes: int = 0
    audit_events: int = 0
    releases: int = 0
    dataset_versions: int = 0
    not_restored: list[str] = field(default_factory=list)  # destroyed projects
    policies_dir: Path | None = None


def _prepare_home(home: Path, backup_id: str) -> bool:
    """Make sure ``home`` may receive the restore; True when an interrupted one is redone."""
    if home.exists() and not home.is_dir():
        raise InvalidInput(f"{home} is not a directory: give an empty folder with --to")
    entries = list(home.iterdir()) if home.is_dir() else []
    marker = home / MARKER
    if entries and not marker.exists():
        raise Conflict(f"{home} is not empty: restore into an empty folder (nothing there was changed)")
    redo = bool(entries)
    if redo:
        try:
            started = json.loads(marker.read_text())["backup"]
        except (OSError, ValueError, KeyError):
            started = None
        if started != backup_id:
            raise Conflict(f"{home} holds an interrupted restore of backup {started}: finish that one, or empty the folder")
        for entry in entries:
            if entry.name == MARKER:
                continue
            if entry.is_dir() and not entry.is_symlink():
                for root, _, _ in os.walk(entry):
                    os.chmod(root, 0o700)
                shutil.rmtree(entry)
            else:
                entry.unlink()
    home.mkdir(parents=True, exist_ok=True, mode=0o750)
    marker.write_text(json.dumps({"backup": backup_id}))
    return redo


def _destroyed(store: Store, record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Projects destroyed by the backup's time or since (the destination's ledger)."""
    found: dict[str, dict[str, Any]] = {slug: {} for slug in record.get("destroyed", [])}
    path = store.root / LEDGER
    if path.exists():
        try:
            found.update(json.loads(path.read_text(encoding="utf-8")).get("projects", {}))
        except ValueError:
            raise BackupDamaged(f"{path} is damaged: restore needs it to leave destroyed projects' data out") from None
    return found


def _project_of(name: str) -> str | None:
    """The project a stored path belongs to (its data, not its released outputs)."""
    parts = name.split("/")
    if len(parts) >= 2 and parts[0] in ("workspaces", "views"):
        return parts[1]
    if len(parts) >= 2 and parts[0] == "archive":
        return parts[1].split(".", 1)[0]
    if len(parts) >= 3 and parts[0] == "keys" and parts[1] in ("pseudonym", "archive"):
        return parts[2].rsplit(".", 1)[0]
    return None


def _write_object(store: Store, sha256: str, size: int, target: Path, mode: int, mtime_ns: int | None) -> None:
    partial = target.with_name(f".{target.name}.restoring")
    digest = hashlib.sha256()
    try:
        with open(partial, "wb") as out:
            for chunk in store.chunks(sha256):
                digest.update(chunk)
                out.write(chunk)
    except FileNotFoundError:
        raise BackupDamaged(f"{target.name} is missing from the backup (object {sha256[:12]}): use another backup") from None
    if digest.hexdigest() != sha256 or partial.stat().st_size != size:
        partial.unlink()
        raise BackupDamaged(f"{target.name} is damaged in the backup (object {sha256[:12]}): use another backup")
    os.chmod(partial, mode)
    if mtime_ns is not None:
        os.utime(partial, ns=(mtime_ns, mtime_ns))
    os.rename(partial, target)


def _safe_target(home: Path, name: str) -> Path:
    parts = Path(name).parts
    if not parts or Path(name).is_absolute() or ".." in parts:
        raise BackupDamaged(f"the manifest names an unsafe path {name!r}: do not use this backup")
    return home.joinpath(*parts)


def _rewriter(old_home: str, new_home: Path, destroyed: dict[str, dict[str, Any]]) -> Any:
    old = old_home.rstrip("/") + "/"
    destroyed_ids: set[int] = set()

    def rewrite(table: str, row: dict[str, Any]) -> dict[str, Any] | None:
        for column in PATH_COLUMNS.get(table, ()):
            value = row.get(column)
            if isinstance(value, str) and value.startswith(old):
                row[column] = str(new_home / value[len(old):])
        if table == "projects" and row["slug"] in destroyed:
            destroyed_ids.add(row["id"])
        if table == "grants" and row["project_id"] in destroyed_ids:
            row["view_path"] = None  # the view is not restored
        if table == "data_retention" and row["project_id"] in destroyed_ids:
            row["archive_path"] = None
        return row

    return rewrite


def _apply_destructions(session: Session, destroyed: dict[str, dict[str, Any]]) -> list[str]:
    """Record, in the restored database, destructions that happened after the backup."""
    from enclave.db.models import Project

    applied = []
    for slug, item in sorted(destroyed.items()):
        project = session.scalars(select(Project).where(Project.slug == slug)).one_or_none()
        envelope = item.get("record")
        if project is None or not envelope:
            continue
        row = session.get(DataRetention, project.id)
        if row is not None and row.destroyed_at is not None:
            continue
        rec = envelope["record"]
        if row is None:
            row = DataRetention(project_id=project.id, closed_at=dt.datetime.fromisoformat(rec["closed_at"]),
                                retention_days=int(rec["retention_days"]),
                                destroy_after=dt.datetime.fromisoformat(rec["destroy_after"]),
                                policy_version=str(rec["policy"]["version"]))
            session.add(row)
        row.archive_path = None
        row.destroyed_at = dt.datetime.fromisoformat(rec["destroyed_at"])
        row.destroyed_by = str(rec["destroyed_by"])
        row.destruction_record = envelope
        applied.append(slug)
    session.flush()
    return applied


class DbState(StrEnum):
    """Where a restore into a PostgreSQL database stands."""

    EMPTY = "empty"    # nothing restored yet
    LOADED = "loaded"  # the backup's rows are in (pg_restore), the restore's own event is not
    DONE = "done"      # this restore is complete


def _finish(session: Session, record: dict[str, Any], home: Path, destroyed: dict[str, dict[str, Any]],
            not_restored: list[str]) -> None:
    """Destructions recorded since the backup, and the restore's own audit event."""
    applied = _apply_destructions(session, destroyed)
    append_event(session, RESTORER, BackupAction.RESTORE, target=f"backup:{record['id']}", details={
        "backup": record["id"], "source_home": record["source"]["home"], "home": str(home),
        "audit_head_of_backup": record["audit_head"]["seq"], "not_restored": not_restored,
        "destructions_recorded": applied,
    })
    session.flush()


def _restore_database(store: Store, record: dict[str, Any], home: Path, db_url: str,
                      destroyed: dict[str, dict[str, Any]], not_restored: list[str], state: DbState) -> None:
    """Load the backup's database into ``db_url``, with the restore audited."""
    target = Settings(home=home, db_url=db_url, policies_dir=home)
    if db_format(record) is DbFormat.PG_DUMP and not db_url.startswith("sqlite"):
        # pg_restore in one transaction, then the restore's event in a second one; a run
        # killed between the two finds the data loaded (DbState.LOADED) and only adds the event.
        if state is DbState.EMPTY:
            dumped = home / ".restore-snapshot.dump"
            dumped.write_bytes(database_bytes(store, record))
            dumped.chmod(0o600)
            try:
                restore_to_postgresql(dumped, db_url, path_updates(
                    PATH_COLUMNS, record["source"]["home"], home, sorted(destroyed)))
            finally:
                dumped.unlink(missing_ok=True)
        upgrade(target)  # from the dump's schema revision, if this code's is newer
        with engine_for(db_url).begin() as dst, Session(bind=dst) as session:
            _finish(session, record, home, destroyed, not_restored)
        return
    # A SQLite file (or a pg_dump's rows, read without a server) copied through the model
    # in one transaction: a backup of either database restores onto either.
    snapshot = home / ".restore-snapshot.sqlite"
    sqlite_copy(store, record, snapshot)
    snapshot.chmod(0o600)
    snap_url = f"sqlite:///{snapshot}"
    upgrade(target)
    engine = engine_for(db_url)
    src_engine = create_engine(snap_url)
    try:
        with src_engine.connect() as src, engine.begin() as dst:
            copy_rows(src, dst, _rewriter(record["source"]["home"], home, destroyed))
            if engine.dialect.name == "postgresql":
                for table in Base.metadata.sorted_tables:
                    if "id" in table.c and table.c.id.primary_key and table.c.id.autoincrement is not False:
                        dst.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                         f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false)"))
            with Session(bind=dst) as session:
                _finish(session, record, home, destroyed, not_restored)
    finally:
        src_engine.dispose()
        if db_url.startswith("sqlite"):
            engine.dispose()
        snapshot.unlink(missing_ok=True)


def _db_state(db_url: str, record: dict[str, Any]) -> DbState:
    """Where a restore into ``db_url`` stands; raise if it holds anything else."""
    engine = engine_for(db_url)
    names = inspect(engine).get_table_names()
    if not names:
        return DbState.EMPTY
    if {"audit_events", "audit_head", "users"} <= set(names):
        with Session(engine) as session:
            last = session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).first()
            if last is not None and last.action == BackupAction.RESTORE and last.details.get("backup") == record["id"]:
                return DbState.DONE
            head = session.execute(text("SELECT seq, hash FROM audit_head WHERE id = 1")).first()
            if last is not None and head is not None and db_format(record) is DbFormat.PG_DUMP \
                    and (head[0], head[1]) == (record["audit_head"]["seq"], record["audit_head"]["hash"]):
                return DbState.LOADED
            if last is None and session.scalar(text("SELECT COUNT(*) FROM users")) == 0 \
                    and db_format(record) is DbFormat.SQLITE:
                return DbState.EMPTY  # only the schema, from a restore killed before its data committed
    raise Conflict("the database at --db-url is not empty: restore into a new, empty database (nothing was changed)")


def restore_backup(dest: Path, home: Path, *, db_url: str | None = None, backup_id: str | None = None,
                   passphrase: str | None = None, identity: Any = None, keyring: Path | None = None,
                   progress: Progress | None = None) -> RestoreResult:
    """Restore a backup into an empty ``home`` (see the module's docstring)."""
    store = Store(dest)
    envelope = store.read_manifest(backup_id)
    record = envelope["record"]
    home = Path(home).absolute()
    url = db_url or f"sqlite:///{home / 'enclave.db'}"
    # Everything but the objects' bytes is checked before anything is written; the bytes
    # are checked as they are copied.
    verify_backup(dest, record["id"], keyring=keyring, check_objects=False)
    keys_plain = json.loads(unseal(store.read_bytes(record["keys"]["sha256"]), passphrase=passphrase, identity=identity))
    db_state = _db_state(url, record) if not url.startswith("sqlite") else DbState.EMPTY
    redo = _prepare_home(home, record["id"])
    if db_state is DbState.DONE and not redo:
        raise Conflict("the database at --db-url already holds this restore: give an empty database")
    destroyed = _destroyed(store, record)
    result = RestoreResult(record["id"], home, url, not_restored=sorted(destroyed))

    dirs = manifest_dirs(record)
    for item in dirs:
        if _project_of(item["path"] + "/") not in destroyed:
            (_safe_target(home, item["path"])).mkdir(parents=True, exist_ok=True, mode=0o700)
    gone = {sha for item in destroyed.values() if item.get("record")
            for sha in item["record"]["record"].get("quarantine_objects", [])}
    files = [f for f in manifest_files(record) if _project_of(f["path"]) not in destroyed
             and not (f["path"].startswith("quarantine/") and f["sha256"] in gone)]
    task = progress.add_task("files", total=sum(f["size"] for f in files)) if progress else None
    for entry in files:
        name = entry["path"]
        target = _safe_target(home / "policies", name.split("/", 1)[1]) if name.startswith("@policies/") \
            else _safe_target(home, name)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_object(store, entry["sha256"], entry["size"], target, entry["mode"], entry.get("mtime_ns"))
        result.files += 1
        result.bytes += entry["size"]
        if progress is not None and task is not None:
            progress.advance(task, entry["size"])
    for name, item in sorted(keys_plain["files"].items()):
        if _project_of(name) in destroyed:
            continue
        target = _safe_target(home, name)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(base64.b64decode(item["data"]))
        os.chmod(target, item["mode"])
    for item in keys_plain.get("dirs", []) + dirs:
        path = _safe_target(home, item["path"])
        if path.is_dir() and item["path"].split("/")[0] not in ("catalog", "views"):
            os.chmod(path, item["mode"])
    if db_state is not DbState.DONE:
        _restore_database(store, record, home, url, destroyed, result.not_restored, db_state)
    # Read-only folders (dataset versions, views) last: nothing more is written into them.
    for item in sorted(dirs, key=lambda d: d["path"].count("/"), reverse=True):
        path = _safe_target(home, item["path"])
        if path.is_dir() and item["path"].split("/")[0] in ("catalog", "views"):
            os.chmod(path, item["mode"])
    if (home / "policies").is_dir():
        result.policies_dir = home / "policies"
    _check_restored(result)
    (home / MARKER).unlink()
    return result


def _check_restored(result: RestoreResult) -> None:
    """The audit chain, every release record and every dataset version of the restored enclave."""
    engine = engine_for(result.db_url)
    try:
        with Session(engine) as session:
            chain = verify_chain(session)
            if not chain.ok:
                raise BackupDamaged(f"after the restore, the audit chain does not verify: {chain.problem}")
            result.audit_events = chain.checked
            verifier = site_verifier(result.home / "keys")
            for request in session.scalars(select(EgressRequest).where(EgressRequest.status == EgressStatus.RELEASED)):
                assert request.release_record_path is not None
                report = verify_release(Path(request.release_record_path), verifier)
                if not report.ok:
                    raise BackupDamaged(f"after the restore, release {request.id} does not verify: {report.problems[0]}")
                result.releases += 1
            for version in session.scalars(select(DatasetVersion)):
                try:
                    verify_dir(Path(version.storage_path), version.sha256)
                except ChecksumMismatch as exc:
                    raise BackupDamaged(f"after the restore, dataset {version.dataset.name} v{version.version}: {exc}") from None
                result.dataset_versions += 1
    finally:
        if result.db_url.startswith("sqlite"):
            engine.dispose()
