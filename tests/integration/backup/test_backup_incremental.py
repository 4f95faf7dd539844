"""How an incremental backup decides what changed, and what it stores: the database in
chunks (only changed ones written, restored byte for byte), the stat key and its limit
(a rehash run catches what the fast mode cannot see), and pack indexes merged so many
small runs leave few index files, even when a merge is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from backup_world import PASSPHRASE, World
from enclave.audit import append_event
from enclave.backup import create as backup_create
from enclave.backup import store as backup_store
from enclave.backup.create import create_backup, db_chunk_size
from enclave.backup.restore import restore_backup
from enclave.backup.snapshot import snapshot_database
from enclave.backup.store import FILE_FIELDS, Store, manifest_files
from enclave.backup.verify import BackupDamaged, database_bytes, verify_backup
from enclave.db.session import unit_of_work
from enclave.users import get_user

REPO = Path(__file__).resolve().parents[3]


def _admin(world: World):  # type: ignore[no-untyped-def]
    with unit_of_work(world.settings) as s:
        return get_user(s, "admin")


def _backup(world: World, dest: Path, **kwargs: object) -> backup_create.BackupResult:
    return create_backup(world.settings, _admin(world), dest, passphrase=PASSPHRASE, **kwargs)  # type: ignore[arg-type]


def _entry(dest: Path, suffix: str) -> dict:
    return next(f for f in manifest_files(Store(dest).read_manifest()["record"]) if f["path"].endswith(suffix))


def test_backup_database_chunks_only_changed_ones_are_written_and_restore_byte_identical(busy: World,
                                                                                        tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    expected = tmp_path / "expected.db"
    snapshot_database(busy.settings, expected)  # the same consistent copy, taken just before the backup
    first = _backup(busy, dest)
    record = Store(dest).read_manifest()["record"]
    chunks = record["database"]["chunks"]
    assert len(chunks) > 2 and all(size == db_chunk_size(record["database"]["size"]) for _sha, size in chunks[:-1])
    assert first.database_bytes_written == record["database"]["size"]
    assert database_bytes(Store(dest), record) == expected.read_bytes()

    with unit_of_work(busy.settings) as s:  # a few new rows: a few pages change
        for i in range(20):
            append_event(s, "admin", "test.note", target=f"note:{i}", details={"n": i})
    expected.unlink()
    snapshot_database(busy.settings, expected)
    second = _backup(busy, dest)
    record = Store(dest).read_manifest()["record"]
    assert 0 < second.database_bytes_written < record["database"]["size"] // 2
    assert database_bytes(Store(dest), record) == expected.read_bytes()
    verify_backup(dest)
    restored = restore_backup(dest, tmp_path / "restored", passphrase=PASSPHRASE)
    assert restored.audit_events == record["audit_head"]["seq"] + 1  # and the restore's own event


def test_backup_database_chunk_size_grows_with_the_database() -> None:
    assert db_chunk_size(0) == db_chunk_size(16 << 10) == 16 << 10
    big = db_chunk_size(10 << 30)
    assert big & (big - 1) == 0 and (10 << 30) / big <= backup_create.DB_CHUNKS


def test_backup_stat_key_restored_mtime_is_read_again_and_a_forged_key_is_caught_by_rehash(
        busy: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a user can do (rewrite a file and put its size and mtime back) changes its
    change time: the fast mode reads it again. What it cannot see (bytes changed behind an
    unchanged stat key: root setting the clock back, the disk edited underneath the
    filesystem; forged here in the previous manifest) is the documented limit of the fast
    mode, and a rehash run reads the file, stores its bytes and names it."""
    monkeypatch.setattr(backup_create, "RACY_FINE_NS", 200_000_000)
    path = busy.write("notes/forged.txt", b"A" * 4096)
    time.sleep(0.3)
    dest = tmp_path / "dest"
    _backup(busy, dest)
    old = path.stat()
    time.sleep(0.3)
    path.write_bytes(b"B" * 4096)
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))
    time.sleep(0.3)
    fast = _backup(busy, dest)
    assert fast.files_read == 1 and Store(dest).read_bytes(_entry(dest, "forged.txt")["sha256"]) == b"B" * 4096

    path.write_bytes(b"C" * 4096)
    now = path.stat()
    manifest = Store(dest).backups / f"{fast.id}.json"
    envelope = json.loads(manifest.read_text())
    forged = next(row for row in envelope["record"]["files"] if row[FILE_FIELDS.index("path")].endswith("forged.txt"))
    forged[FILE_FIELDS.index("stat")] = [now.st_size, now.st_mtime_ns, now.st_ctime_ns, now.st_ino]
    manifest.write_text(json.dumps(envelope))
    time.sleep(0.3)
    missed = _backup(busy, dest)
    assert missed.files_read == 0 and missed.changed_behind_stat == []
    assert Store(dest).read_bytes(_entry(dest, "forged.txt")["sha256"]) == b"B" * 4096  # the limit

    rehashed = _backup(busy, dest, rehash=True)
    assert rehashed.files_read == rehashed.files
    assert rehashed.changed_behind_stat == [_entry(dest, "forged.txt")["path"]]
    record = Store(dest).read_manifest()["record"]
    assert record["rehash"] is True and record["changed_behind_stat"] == rehashed.changed_behind_stat
    assert rehashed.objects_written >= 1 and rehashed.bytes_written < rehashed.bytes_total  # the rest deduplicates
    verify_backup(dest)
    home = tmp_path / "restored"
    restore_backup(dest, home, passphrase=PASSPHRASE)
    assert (home / _entry(dest, "forged.txt")["path"]).read_bytes() == b"C" * 4096


def _small_runs(world: World, dest: Path, runs: int) -> list[str]:
    ids = []
    for i in range(runs):
        world.write(f"notes/run-{i}.txt", os.urandom(1000))
        ids.append(_backup(world, dest).id)
    return ids


def _all_verify(dest: Path, ids: list[str]) -> None:
    for backup_id in ids:
        verify_backup(dest, backup_id)


def test_backup_many_small_runs_leave_few_index_files(busy: World, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backup_store, "MERGE_AT", 4)
    dest = tmp_path / "dest"
    ids = _small_runs(busy, dest, 10)
    packs = Store(dest).packs
    assert len(list(packs.glob("*.pack"))) >= 10
    assert len(list(packs.glob("*.idx"))) < 4 and len(list(packs.glob("*.midx"))) == 1
    _all_verify(dest, ids)
    restore_backup(dest, tmp_path / "first", backup_id=ids[0], passphrase=PASSPHRASE)
    restore_backup(dest, tmp_path / "last", passphrase=PASSPHRASE)
    assert (tmp_path / "last" / _entry(dest, "run-9.txt")["path"]).exists()


CHILD = """
import os, signal, sys
from pathlib import Path
from enclave.backup.store import Store
dest, point = Path(sys.argv[1]), sys.argv[2]
rename, unlink, calls = os.rename, Path.unlink, []
def die():
    os.kill(os.getpid(), signal.SIGKILL)
def renaming(src, dst, *args, **kwargs):
    if point == "before-naming" and str(dst).endswith(".midx"):
        die()
    return rename(src, dst, *args, **kwargs)
def unlinking(self, *args, **kwargs):
    calls.append(self)
    if point == "after-naming" or (point == "mid-removal" and len(calls) == 2):
        die()
    return unlink(self, *args, **kwargs)
os.rename, Path.unlink = renaming, unlinking
store = Store(dest)
with store.locked():
    store.merge_indexes(at=2)
sys.exit(3)
"""


@pytest.mark.parametrize("point", ["before-naming", "after-naming", "mid-removal"])
def test_backup_index_merge_killed_at_any_step_loses_nothing(busy: World, tmp_path: Path, point: str) -> None:
    dest = tmp_path / "dest"
    ids = _small_runs(busy, dest, 4)
    packs = Store(dest).packs
    before = sorted(p.name for p in packs.glob("*.pack"))
    indexes = len(list(packs.glob("*.idx")))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-c", CHILD, str(dest), point], env=env,
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr
    merged = list(packs.glob("*.midx"))
    assert len(merged) == (0 if point == "before-naming" else 1)
    assert len(list(packs.glob("*.idx"))) == indexes - (point == "mid-removal")
    _all_verify(dest, ids)  # whatever the kill left reads the same
    ids.append(_backup(busy, dest).id)  # the next run sweeps and carries on
    assert set(before) <= {p.name for p in packs.glob("*.pack")}  # no pack was lost
    assert not list(Store(dest).tmp.iterdir())
    _all_verify(dest, ids)
    restore_backup(dest, tmp_path / "restored", passphrase=PASSPHRASE)


def test_backup_a_damaged_index_is_never_merged_over_and_its_pack_is_kept(busy: World, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    ids = _small_runs(busy, dest, 3)
    store = Store(dest)
    idx = sorted(store.packs.glob("*.idx"), key=lambda p: p.stat().st_mtime_ns)[-1]
    idx.chmod(0o600)
    idx.write_text("{not json")
    with pytest.raises(BackupDamaged, match="is missing"):
        verify_backup(dest, ids[-1])
    with store.locked():
        assert store.merge_indexes(at=2) == 0
    _backup(busy, dest)  # its sweep must not take the damaged index's pack for an unnamed one
    assert idx.with_suffix(".pack").exists() and idx.read_text() == "{not json"
    verify_backup(dest)  # what the newest run needed and found missing, it stored again


def test_backup_manifests_of_the_first_format_still_verify_restore_and_serve_as_the_previous_one(
        busy: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A destination written before files were listed as rows and the database chunked
    (an "enclave-backup/1" manifest: one object per file entry, the database one object)."""
    from enclave.egress.signing import load_or_create_key, signed_json

    monkeypatch.setattr(backup_create, "RACY_FINE_NS", 200_000_000)
    time.sleep(0.3)
    dest = tmp_path / "dest"
    first = _backup(busy, dest)
    store = Store(dest)
    record = store.read_manifest()["record"]
    database = database_bytes(store, record)
    with store.locked():
        single = store.put_bytes(database)
        store.commit()
    old = dict(record, format="enclave-backup/1", files=manifest_files(record),
               database={k: v for k, v in record["database"].items() if k != "chunks"})
    old.pop("file_fields")
    assert single.sha256 == old["database"]["sha256"] and store.path_of(single.sha256).is_file()
    (store.backups / f"{first.id}.json").write_bytes(signed_json(old, load_or_create_key(busy.settings.keys_dir)))
    assert verify_backup(dest).objects == len(old["files"]) + 2
    restore_backup(dest, tmp_path / "restored", passphrase=PASSPHRASE)
    second = _backup(busy, dest)
    assert second.files_read == 0 and second.files == first.files
    verify_backup(dest)
