"""``enclave backup verify``: is a backup whole, and does what it holds still verify?

In order, stopping at the first problem (named in the error):
the manifest's signature (with the keyring stored in the backup, or one given); every
object's sha256 and size; the audit chain inside the backup's database and its head
against the manifest; the signature of every release record and the bytes of its files;
the checksum of every dataset version.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.progress import Progress
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from enclave.audit import verify_chain
from enclave.backup.pgdump import to_sqlite
from enclave.backup.snapshot import DbFormat
from enclave.backup.store import Store, manifest_files
from enclave.catalog.storage import MANIFEST, listing_digest
from enclave.config import Settings
from enclave.db.session import engine_for, head_revision, upgrade
from enclave.db.models import DatasetVersion, EgressRequest
from enclave.egress.signing import Keyring, load_keyring, load_public_key, verify_envelope
from enclave.enums import EgressStatus
from enclave.errors import EnclaveError, InvalidInput


class BackupDamaged(EnclaveError):
    """A backup is incomplete, altered, or holds something that does not verify."""


@dataclass
class VerifyResult:
    id: str
    objects: int
    bytes: int
    audit_events: int
    releases: int
    dataset_versions: int


def _sha256_of(store: Store, sha256: str, advance: Any = None) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for chunk in store.chunks(sha256):
        digest.update(chunk)
        size += len(chunk)
        if advance is not None:
            advance(len(chunk))
    return digest.hexdigest(), size


def site_keyring(store: Store, record: dict[str, Any], keyring: Path | None) -> Keyring | Any:
    """The keyring to check signatures with: the one given, else the one in the backup."""
    if keyring is not None:
        return load_public_key(keyring)
    entry = next((f for f in manifest_files(record) if f["path"] == "keys/keyring.json"), None)
    if entry is None:
        raise BackupDamaged(f"backup {record.get('id')} holds no keyring: pass the enclave's keyring.json with --keyring")
    with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
        tmp.write(store.read_bytes(entry["sha256"]))
        tmp.flush()
        return load_keyring(Path(tmp.name))


def db_format(record: dict[str, Any]) -> DbFormat:
    """How the backup holds its database (backups before pg_dump hold a SQLite file)."""
    try:
        return DbFormat(record["database"].get("format", DbFormat.SQLITE))
    except ValueError:
        raise BackupDamaged(f"backup {record.get('id')}: unknown database format "
                            f"{record['database'].get('format')!r}: use a newer enclave") from None


def database_objects(record: dict[str, Any]) -> list[tuple[str, int]]:
    """The objects (sha256, size) that hold the backup's database, in order: its chunks,
    or (backups from before chunking) one object of the whole file."""
    database = record["database"]
    if "chunks" in database:
        return [(str(sha), int(size)) for sha, size in database["chunks"]]
    return [(database["sha256"], database["size"])]


def database_bytes(store: Store, record: dict[str, Any]) -> bytes:
    """The backup's database file as taken, every chunk and the whole checked."""
    data = b"".join(store.read_bytes(sha) for sha, _size in database_objects(record))
    if hashlib.sha256(data).hexdigest() != record["database"]["sha256"] or len(data) != record["database"]["size"]:
        raise BackupDamaged(f"backup {record.get('id')}: the database is damaged (its chunks do not add up "
                            "to its sha256): use another backup")
    return data


def sqlite_copy(store: Store, record: dict[str, Any], target: Path) -> None:
    """The backup's database as a SQLite file ``target`` of this code's schema: the file
    itself, or the rows of its pg_dump (read without a server)."""
    data = database_bytes(store, record)
    if db_format(record) is DbFormat.PG_DUMP:
        dumped = target.with_name(target.name + ".dump")
        dumped.write_bytes(data)
        try:
            to_sqlite(dumped, target, record["source"].get("schema"))
        finally:
            dumped.unlink(missing_ok=True)
    else:
        target.write_bytes(data)
    if record["source"].get("schema") != head_revision():
        upgrade(Settings(home=target.parent, db_url=f"sqlite:///{target}", policies_dir=target.parent))
        engine_for(f"sqlite:///{target}").dispose()


@contextmanager
def open_snapshot(store: Store, record: dict[str, Any]) -> Iterator[Session]:
    """A session on a private copy of the backup's database, migrated to this code's schema."""
    with tempfile.TemporaryDirectory(prefix="enclave-verify-") as tmp:
        path = Path(tmp) / "snapshot.sqlite"
        sqlite_copy(store, record, path)
        engine = create_engine(f"sqlite:///{path}")
        try:
            with Session(engine) as session:
                yield session
        finally:
            engine.dispose()


def _object(store: Store, by_path: dict[str, dict[str, Any]], name: str, what: str) -> bytes:
    entry = by_path.get(name)
    if entry is None:
        raise BackupDamaged(f"{what}: {name} is not in the backup")
    return store.read_bytes(entry["sha256"])


def verify_backup(dest: Path, backup_id: str | None = None, *, keyring: Path | None = None,
                  check_objects: bool = True, progress: Progress | None = None) -> VerifyResult:
    """Check a backup (see the module's docstring); raise BackupDamaged naming the first problem."""
    store = Store(dest)
    try:
        envelope = store.read_manifest(backup_id)
    except EnclaveError as exc:
        raise BackupDamaged(str(exc)) from None
    record = envelope["record"]
    bid = record["id"]
    try:
        verify_envelope(envelope, site_keyring(store, record, keyring))
    except InvalidInput as exc:
        raise BackupDamaged(f"backup {bid}: the manifest does not verify ({exc})") from None
    try:
        files = manifest_files(record)
    except EnclaveError as exc:
        raise BackupDamaged(f"backup {bid}: {exc}") from None
    objects = [(f["path"], f["sha256"], f["size"]) for f in files]
    objects += [("the database", sha, size) for sha, size in database_objects(record)]
    objects.append(("the sealed keys", record["keys"]["sha256"], record["keys"]["size"]))
    total = 0
    if check_objects:
        task = progress.add_task("checksums", total=sum(o[2] for o in objects)) if progress else None
        advance = (lambda n: progress.advance(task, n)) if progress is not None and task is not None else None
        for name, sha, size in objects:
            try:
                actual, actual_size = _sha256_of(store, sha, advance)
            except FileNotFoundError:
                raise BackupDamaged(f"backup {bid}: {name} is missing (object {sha[:12]})") from None
            except InvalidInput as exc:
                raise BackupDamaged(f"backup {bid}: {name}: {exc}") from None
            if actual != sha or actual_size != size:
                raise BackupDamaged(f"backup {bid}: {name} is damaged (object {sha[:12]}: its sha256 or size differs)")
            total += size
    ring = site_keyring(store, record, keyring)
    home = record["source"]["home"]
    by_path = {f["path"]: f for f in files}

    def rel(path: str) -> str:
        return os.path.relpath(path, home)

    with open_snapshot(store, record) as session:
        chain = verify_chain(session)
        if not chain.ok:
            raise BackupDamaged(f"backup {bid}: the audit chain does not verify: {chain.problem}")
        head = record["audit_head"]
        if chain.checked != head["seq"]:
            raise BackupDamaged(f"backup {bid}: the database's audit log ends at #{chain.checked}, the manifest says #{head['seq']}")
        releases = 0
        for request in session.scalars(select(EgressRequest).where(EgressRequest.status == EgressStatus.RELEASED)):
            assert request.release_record_path is not None
            name = rel(request.release_record_path)
            what = f"backup {bid}: release record of request {request.id}"
            try:
                signed = json.loads(_object(store, by_path, name, what))
                released = verify_envelope(signed, ring)
            except (InvalidInput, ValueError) as exc:
                raise BackupDamaged(f"{what} does not verify ({exc})") from None
            folder = str(Path(name).parent / "files")
            for item in released.get("files", []):
                entry = by_path.get(f"{folder}/{item['path']}")
                if entry is None or entry["sha256"] != item["sha256"]:
                    raise BackupDamaged(f"{what}: released file {item['path']} is missing or differs from the record")
            releases += 1
        versions = 0
        for version in session.scalars(select(DatasetVersion).order_by(DatasetVersion.id)):
            name = rel(version.storage_path)
            what = f"backup {bid}: dataset {version.dataset.name} version {version.version}"
            try:
                listed = json.loads(_object(store, by_path, f"{name}/{MANIFEST}", what)).get("files", {})
            except ValueError:
                raise BackupDamaged(f"{what}: its manifest is not JSON") from None
            for file, sha in listed.items():
                entry = by_path.get(f"{name}/{file}")
                if entry is None or entry["sha256"] != sha:
                    raise BackupDamaged(f"{what}: {file} is missing or differs from the version's manifest")
            if listing_digest(listed) != version.sha256:
                raise BackupDamaged(f"{what}: its files do not match the catalogue's checksum")
            versions += 1
    return VerifyResult(bid, len(objects), total, chain.checked, releases, versions)
