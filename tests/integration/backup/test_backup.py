"""Backups of a busy enclave: taken while 50 egress actions and a job run, restored into a
fresh home on SQLite and on PostgreSQL with nothing lost and everything verifying;
incremental; a changed byte is caught; links are never followed; keys never in the clear."""

from __future__ import annotations

import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select

from backup_world import PASSPHRASE, World, make_enclave, state_of
from enclave.backup import create as backup_create
from enclave.backup.create import create_backup
from enclave.backup.restore import restore_backup
from enclave.backup.store import Store, manifest_files
from enclave.backup.verify import BackupDamaged, database_bytes, verify_backup
from enclave.config import Settings
from enclave.db.models import EgressRequest
from enclave.db.session import unit_of_work
from enclave.egress import release as release_service
from enclave.egress import review
from enclave.egress import service as egress
from enclave.enums import EgressStatus as S
from enclave.enums import ReviewDecision as D
from enclave.errors import Conflict
from enclave.users import get_user

REPO = Path(__file__).resolve().parents[3]
ENCLAVE = [str(REPO / ".venv" / "bin" / "python"), "-m", "enclave.cli.main"]
N = 50


def _admin(world: World):  # type: ignore[no-untyped-def]
    with unit_of_work(world.settings) as s:
        return get_user(s, "admin")


def _settings(home: Path, db_url: str | None = None) -> Settings:
    return Settings(home=home, db_url=db_url or f"sqlite:///{home / 'enclave.db'}", policies_dir=home / "policies")


def _snapshot_state(dest: Path, backup_id: str, tmp: Path) -> dict:
    """The state recorded in a backup's own database snapshot (as the enclave was at that moment)."""
    store = Store(dest)
    record = store.read_manifest(backup_id)["record"]
    home = tmp / f"snap-{backup_id}"
    home.mkdir()
    (home / "enclave.db").write_bytes(database_bytes(store, record))
    return state_of(_settings(home))


def _egress_load(world: World, backups_taken: list[str], waves: int = 4) -> None:
    """50 concurrent egress actions: submissions, votes and releases at once, in waves.

    Wave k starts only once k backups have finished, so however slow the machine, at least
    ``waves - 1`` backups begin while the load is still going (no race on timing)."""
    for i in range(N):
        world.write(f"load/t{i}.csv", f"region,count\nnorth,{100 + i}\nsouth,{200 + i}\n".encode())

    def create_and_submit(i: int) -> int:
        with world.uow() as s:
            rita = get_user(s, "rita")
            rid = egress.create_request(s, rita, world.env, world.slug, f"table {i}").id
            egress.add_files(s, rita, world.env, rid, [f"load/t{i}.csv"], "main", "counts by region", "over 10")
        with world.uow() as s:
            egress.submit_request(s, get_user(s, "rita"), world.env, rid)
        for name in ("ria", "rob"):
            with world.uow() as s:
                review.vote(s, get_user(s, name), world.env, rid, f"load/t{i}.csv", D.APPROVE, "ok")
        with world.uow() as s:
            release_service.release_request(s, get_user(s, "rex"), world.env, rid)
        return rid

    ids: list[int] = []
    bounds = [N * k // waves for k in range(waves + 1)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        for k in range(waves):
            deadline = time.monotonic() + 600
            while len(backups_taken) < k:
                assert time.monotonic() < deadline, f"no backup finished in 10 minutes (wave {k})"
                time.sleep(0.05)
            ids += [f.result() for f in [pool.submit(create_and_submit, i) for i in range(bounds[k], bounds[k + 1])]]
    assert len(set(ids)) == N


@pytest.mark.slow
def test_backup_during_egress_load_and_a_running_job_restores_on_sqlite_and_postgresql(
        busy: World, tmp_path: Path, pg_url: str) -> None:
    dest = tmp_path / "dest"
    admin = _admin(busy)
    with ThreadPoolExecutor(max_workers=1) as pool:
        during: list[str] = []
        load = pool.submit(_egress_load, busy, during)
        while not load.done():
            during.append(create_backup(busy.settings, admin, dest, passphrase=PASSPHRASE).id)
            time.sleep(0.3)
        load.result()
    after = create_backup(busy.settings, admin, dest, passphrase=PASSPHRASE).id
    # Every backup taken during the load is whole and consistent: no release without its
    # record and files, no vote without its file, the audit chain intact.
    assert len(during) >= 3, "the load ended before three backups were taken during it"
    for backup_id in (during[0], during[len(during) // 2], during[-1]):
        result = verify_backup(dest, backup_id)
        assert result.audit_events > 0
    mid = during[len(during) // 2]
    mid_state = _snapshot_state(dest, mid, tmp_path)
    source_state = state_of(busy.settings)
    assert source_state["audit"][:len(mid_state["audit"])] == mid_state["audit"]  # a moment of the real history
    assert any(r[1] == "running" for r in mid_state["jobs"])

    on_sqlite = restore_backup(dest, tmp_path / "restored-sqlite", backup_id=mid, passphrase=PASSPHRASE)
    restored = state_of(_settings(on_sqlite.home))
    assert {k: v for k, v in restored.items() if k != "audit"} == {k: v for k, v in mid_state.items() if k != "audit"}
    assert restored["audit"][:-1] == mid_state["audit"]  # plus the restore's own event
    released = sum(1 for r in mid_state["requests"] if r[1] == "released")
    assert on_sqlite.releases == released and on_sqlite.dataset_versions == 1

    on_pg = restore_backup(dest, tmp_path / "restored-pg", db_url=pg_url, backup_id=after, passphrase=PASSPHRASE)
    restored = state_of(_settings(on_pg.home, pg_url))
    source_state = state_of(busy.settings)
    assert {k: v for k, v in restored.items() if k != "audit"} == {k: v for k, v in source_state.items() if k != "audit"}
    assert len([r for r in restored["requests"] if r[1] == "released"]) == N + 2 == on_pg.releases
    # The restored enclave works: the CLI's own checks pass on it, and new events chain on.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env.update(ENCLAVE_HOME=str(on_pg.home), ENCLAVE_DB_URL=pg_url, ENCLAVE_POLICIES=str(on_pg.home / "policies"))
    verified = subprocess.run([*ENCLAVE, "--as", "admin", "audit", "verify"], env=env, capture_output=True, text=True)
    assert verified.returncode == 0, verified.stderr
    with unit_of_work(_settings(on_pg.home, pg_url)) as s:
        some = s.scalars(select(EgressRequest).where(EgressRequest.status == S.RELEASED)).first()
        assert some is not None and some.release_record_path.startswith(str(on_pg.home))
    record = subprocess.run([*ENCLAVE, "egress", "verify", some.release_record_path], env=env, capture_output=True, text=True)
    assert record.returncode == 0, record.stderr


def test_backup_second_run_of_an_unchanged_enclave_copies_no_file_data(busy: World, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backup_create, "RACY_FINE_NS", 200_000_000)  # the files are older than that
    time.sleep(0.3)
    dest = tmp_path / "dest"
    first = create_backup(busy.settings, _admin(busy), dest, passphrase=PASSPHRASE)
    assert first.bytes_written > 300_000 and first.files_read == first.files
    second = create_backup(busy.settings, _admin(busy), dest, passphrase=PASSPHRASE)
    assert (second.files, second.bytes_total) == (first.files, first.bytes_total)
    assert second.files_read == second.bytes_read == second.bytes_written == second.objects_written == 0
    # One changed file is read and stored again, nothing else.
    busy.write("notes/changed.txt", b"a new line of notes\n")
    third = create_backup(busy.settings, _admin(busy), dest, passphrase=PASSPHRASE)
    assert (third.files_read, third.objects_written) == (1, 1)
    verify_backup(dest)


def test_backup_a_rewrite_that_keeps_size_and_mtime_is_still_stored(busy: World, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A workspace file rewritten in place with its size and modification time put back (as
    anyone in the container can do) changes its change time: the next run reads it again."""
    monkeypatch.setattr(backup_create, "RACY_FINE_NS", 200_000_000)
    path = busy.write("notes/same-size.txt", b"A" * 4096)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns - 10**10))
    time.sleep(0.3)
    dest = tmp_path / "dest"
    create_backup(busy.settings, _admin(busy), dest, passphrase=PASSPHRASE)
    old = path.stat()
    time.sleep(0.3)
    path.write_bytes(b"B" * 4096)
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns, path.stat().st_ino) == (old.st_size, old.st_mtime_ns, old.st_ino)
    second = create_backup(busy.settings, _admin(busy), dest, passphrase=PASSPHRASE)
    assert second.files_read == 1
    entry = next(f for f in manifest_files(Store(dest).read_manifest()["record"]) if f["path"].endswith("notes/same-size.txt"))
    assert Store(dest).read_bytes(entry["sha256"]) == b"B" * 4096


def test_backup_a_file_written_just_before_the_run_is_read_again_next_time(busy: World, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A file changed within racy_ns of being read could change again within the same clock
    tick unseen: it gets no stat key, so the next run reads it rather than trusting it."""
    monkeypatch.setattr(backup_create, "RACY_FINE_NS", 60_000_000_000)  # "just" on a slow machine too
    busy.write("notes/fresh.txt", b"just written\n")
    dest = tmp_path / "dest"
    create_backup(busy.settings, _admin(busy), dest, passphrase=PASSPHRASE)
    entry = next(f for f in manifest_files(Store(dest).read_manifest()["record"]) if f["path"].endswith("notes/fresh.txt"))
    assert entry["stat"] is None
    second = create_backup(busy.settings, _admin(busy), dest, passphrase=PASSPHRASE)
    assert second.files_read >= 1


def test_backup_a_changed_byte_is_caught_by_verify(busy: World, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    create_backup(busy.settings, _admin(busy), dest, passphrase=PASSPHRASE)
    record = Store(dest).read_manifest()["record"]
    entry = next(f for f in manifest_files(record) if f["path"].endswith("big.bin"))
    where = Store(dest).locate(entry["sha256"])
    assert where is not None and where.path.parent.name == "packs"  # files' bytes are packed
    where.path.chmod(0o600)
    data = bytearray(where.path.read_bytes())
    data[where.offset + 1000] ^= 1
    where.path.write_bytes(bytes(data))
    env = {k: v for k, v in os.environ.items()}
    result = subprocess.run([*ENCLAVE, "backup", "verify", str(dest), "--quiet"], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: backup {record['id']}: workspaces/heart-study/outbox/notes/big.bin is damaged "
        f"(object {entry['sha256'][:12]}: its sha256 or size differs)"]
    with pytest.raises(BackupDamaged):
        restore_backup(dest, tmp_path / "restored", passphrase=PASSPHRASE)
    assert not (tmp_path / "restored" / "enclave.db").exists()


def test_backup_an_altered_manifest_or_database_is_caught(busy: World, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    backup_id = create_backup(busy.settings, _admin(busy), dest, passphrase=PASSPHRASE).id
    path = dest / "backups" / f"{backup_id}.json"
    original = path.read_text()
    envelope = json.loads(original)
    envelope["record"]["files"] = envelope["record"]["files"][1:]  # someone drops a file from the list
    path.write_text(json.dumps(envelope))
    with pytest.raises(BackupDamaged, match="manifest does not verify"):
        verify_backup(dest)
    path.write_text(original)
    verify_backup(dest)
    # A chunk of the database changed in place (its object keeps its name): caught by its checksum.
    sha, _size = envelope["record"]["database"]["chunks"][-1]
    where = Store(dest).locate(sha)
    assert where is not None
    where.path.chmod(0o600)
    data = bytearray(where.path.read_bytes())
    data[where.offset + 100] ^= 0xFF
    where.path.write_bytes(bytes(data))
    with pytest.raises(BackupDamaged, match="the database is damaged"):
        verify_backup(dest)


def test_backup_never_follows_links_and_never_stores_keys_in_the_clear(busy: World, tmp_path: Path) -> None:
    secret = tmp_path / "outside-secret.txt"
    secret.write_bytes(b"THIS-IS-OUTSIDE-THE-ENCLAVE-" * 10)
    (busy.outbox / "link-out").symlink_to(secret)
    (busy.outbox / "link-dir").symlink_to(busy.settings.catalog_dir, target_is_directory=True)
    os.mkfifo(busy.outbox / "a-fifo")
    dest = tmp_path / "dest"
    result = create_backup(busy.settings, _admin(busy), dest, passphrase=PASSPHRASE)
    skipped = {s["path"]: s["reason"] for s in result.skipped}
    for name in ("link-out", "link-dir", "a-fifo"):
        assert f"workspaces/heart-study/outbox/{name}" in skipped
    keys = [p for p in busy.settings.keys_dir.rglob("*") if p.is_file() and p.suffix == ".key"]
    assert len(keys) >= 2  # the signing key and the project's pseudonym key
    blobs = [p.read_bytes() for p in dest.rglob("*") if p.is_file()]
    for needle in [secret.read_bytes()[:40], *(k.read_bytes() for k in keys)]:
        assert not any(needle in blob for blob in blobs)
    restored = restore_backup(dest, tmp_path / "restored", passphrase=PASSPHRASE)
    for key in keys:
        twin = restored.home / key.relative_to(busy.settings.home)
        assert twin.read_bytes() == key.read_bytes() and (twin.stat().st_mode & 0o077) == 0
    assert not os.path.lexists(restored.home / "workspaces/heart-study/outbox/link-out")


def test_backup_keeps_names_that_are_not_utf8_byte_for_byte(busy: World, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A member can give a workspace file any bytes as its name (from a kernel or a terminal).
    Such a name must neither stop the enclave's backups nor be lost: it is backed up, verified,
    recognised as unchanged next time and restored byte for byte, and messages show it as \\xNN."""
    monkeypatch.setattr(backup_create, "RACY_FINE_NS", 200_000_000)
    outbox = os.fsencode(busy.outbox)
    folder = os.path.join(outbox, b"r\xe9sultats-\xff")  # Latin-1 and a byte no encoding has
    os.mkdir(folder)
    names = {os.path.join(folder, b"table-\xfe.csv"): b"a,b\n1,2\n",
             os.path.join(outbox, b"caf\xc3\xa9-\x80.txt"): b"mixed: valid UTF-8, then a stray byte\n",
             os.path.join(outbox, "r\u00e9sum\u00e9.txt".encode()): b"valid UTF-8 stays as it is\n"}
    for name, data in names.items():
        with open(name, "wb") as out:
            out.write(data)
    os.symlink(busy.settings.catalog_dir, os.path.join(outbox, b"link-\xff"))
    time.sleep(0.3)
    dest = tmp_path / "dest"
    first = create_backup(busy.settings, _admin(busy), dest, passphrase=PASSPHRASE)
    assert {"path": "workspaces/heart-study/outbox/link-\\xff",
            "reason": "symbolic link: never followed or copied"} in first.skipped
    raw = next((dest / "backups").glob("*.json")).read_bytes()
    raw.decode("utf-8")  # the manifest is UTF-8 JSON however the files are named
    assert json.loads(raw)["record"]["id"] == first.id
    verify_backup(dest)
    second = create_backup(busy.settings, _admin(busy), dest, passphrase=PASSPHRASE)
    assert second.files == first.files and second.files_read == 0
    restored = restore_backup(dest, tmp_path / "restored", passphrase=PASSPHRASE)
    home = os.fsencode(busy.settings.home)
    for name, data in names.items():
        twin = os.fsencode(restored.home) + name[len(home):]
        with open(twin, "rb") as back:
            assert back.read() == data
    assert not os.path.lexists(os.fsencode(restored.home) + os.path.join(outbox, b"link-\xff")[len(home):])


def test_backup_leaves_the_access_time_of_what_it_reads(busy: World, tmp_path: Path) -> None:
    """Reading for a backup is no use of a file: its access time stays as it was (which an
    audit of who read what may rely on), and no inode is written for it."""
    path = busy.write("notes/read-me.txt", b"some notes\n")
    before = path.stat()
    os.utime(path, ns=(before.st_mtime_ns - 10**12, before.st_mtime_ns))  # older than its change: relatime would update it
    old_atime = path.stat().st_atime_ns
    result = create_backup(busy.settings, _admin(busy), tmp_path / "dest", passphrase=PASSPHRASE)
    assert result.files_read > 0
    assert path.stat().st_atime_ns == old_atime
    with open(path, "rb") as plain:  # an ordinary read does update it here: the check can fail
        plain.read()
    assert path.stat().st_atime_ns != old_atime


def test_backup_restore_refuses_a_non_empty_home_and_a_wrong_passphrase(busy: World, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    create_backup(busy.settings, _admin(busy), dest, passphrase=PASSPHRASE)
    home = tmp_path / "taken"
    home.mkdir()
    (home / "something.txt").write_text("keep me")
    with pytest.raises(Conflict, match="is not empty"):
        restore_backup(dest, home, passphrase=PASSPHRASE)
    assert sorted(p.name for p in home.iterdir()) == ["something.txt"]
    from enclave.errors import InvalidInput
    with pytest.raises(InvalidInput, match="wrong passphrase"):
        restore_backup(dest, tmp_path / "fresh", passphrase="not the passphrase at all")
    assert not (tmp_path / "fresh").exists()


def test_backup_of_a_postgresql_enclave_restores_onto_sqlite(tmp_path: Path, pg_url: str) -> None:
    world = make_enclave(tmp_path / "home", REPO / "policies", db_url=pg_url)
    dest = tmp_path / "dest"
    create_backup(world.settings, _admin(world), dest, passphrase=PASSPHRASE)
    assert Store(dest).read_manifest()["record"]["database"]["format"] == "pg_dump"
    restored = restore_backup(dest, tmp_path / "restored", passphrase=PASSPHRASE)  # its rows, read without a server
    source, copy = state_of(world.settings), state_of(_settings(restored.home))
    assert {k: v for k, v in copy.items() if k != "audit"} == {k: v for k, v in source.items() if k != "audit"}
    assert copy["audit"][:-1] == source["audit"][:len(copy["audit"]) - 1]
    assert restored.releases == 2


def test_backup_of_a_postgresql_enclave_is_a_pg_dump_restored_with_pg_restore(
        tmp_path: Path, pg_url: str, second_pg_url: str) -> None:
    """On PostgreSQL the backup holds a pg_dump of one snapshot: verify reads its rows
    without a server, and a restore with --db-url loads it with pg_restore, the paths moved
    to the new home and the immutability triggers back in place. A restore killed after
    pg_restore committed (simulated by loading the dump as that run would have) is
    completed by the next run, which only adds its audit event."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from enclave.backup import pgdump
    from enclave.db.session import engine_for

    world = make_enclave(tmp_path / "home", REPO / "policies", db_url=pg_url)
    dest = tmp_path / "dest"
    create_backup(world.settings, _admin(world), dest, passphrase=PASSPHRASE)
    store = Store(dest)
    record = store.read_manifest()["record"]
    assert record["database"]["format"] == "pg_dump"
    dumped = database_bytes(store, record)
    assert dumped.startswith(b"PGDMP")  # pg_dump's custom format
    result = verify_backup(dest)
    assert result.releases == 2 and result.dataset_versions == 1 and result.audit_events == record["audit_head"]["seq"]

    home = tmp_path / "restored"
    (tmp_path / "db.dump").write_bytes(dumped)
    pgdump.restore_to_postgresql(tmp_path / "db.dump", second_pg_url, pgdump.path_updates(
        {"egress_requests": ("release_record_path",)}, record["source"]["home"], home, []))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env["ENCLAVE_BACKUP_PASSPHRASE"] = PASSPHRASE
    done = subprocess.run([*ENCLAVE, "backup", "restore", str(dest), "--to", str(home), "--db-url", second_pg_url,
                           "--quiet"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "2 release record(s) and 1 dataset version(s) verify" in done.stdout
    source, copy = state_of(world.settings), state_of(_settings(home, second_pg_url))
    assert {k: v for k, v in copy.items() if k != "audit"} == {k: v for k, v in source.items() if k != "audit"}
    assert copy["audit"][:-1] == source["audit"][:len(copy["audit"]) - 1]
    with unit_of_work(_settings(home, second_pg_url)) as s:
        paths = [r.release_record_path for r in s.scalars(select(EgressRequest).where(EgressRequest.status == S.RELEASED))]
        assert paths and all(p.startswith(f"{home}/") for p in paths)
        from enclave.enums import Role
        from enclave.users import add_user
        add_user(s, get_user(s, "admin"), "newcomer", {Role.RESEARCHER})  # the sequences carry on
    engine = engine_for(second_pg_url)
    for sql in ("UPDATE audit_events SET actor = 'mallory' WHERE seq = 1", "DELETE FROM audit_events WHERE seq = 1"):
        with pytest.raises(DBAPIError), engine.begin() as conn:
            conn.execute(text(sql))
    env.update(ENCLAVE_HOME=str(home), ENCLAVE_DB_URL=second_pg_url, ENCLAVE_POLICIES=str(home / "policies"))
    verified = subprocess.run([*ENCLAVE, "--as", "admin", "audit", "verify"], env=env, capture_output=True, text=True)
    assert verified.returncode == 0, verified.stderr
    # A database that holds anything else is refused, and nothing in it changes.
    again = subprocess.run([*ENCLAVE, "backup", "restore", str(dest), "--to", str(tmp_path / "third"), "--db-url",
                            second_pg_url, "--quiet"], env=env, capture_output=True, text=True)
    assert again.returncode == 1 and again.stderr.strip().splitlines() == [
        "error: the database at --db-url is not empty: restore into a new, empty database (nothing was changed)"]


def test_backup_restored_home_serves_the_enclave(busy: World, tmp_path: Path) -> None:
    """What the hub loads at start-up loads from the restored home: the whole policy set
    and the web service (its register lists the project)."""
    from fastapi.testclient import TestClient

    from enclave.policy import load_policies
    from enclave.web.app import create_app
    from tests.integration.web.world import PREFIX, authenticator

    create_backup(busy.settings, _admin(busy), tmp_path / "dest", passphrase=PASSPHRASE)
    restored = restore_backup(tmp_path / "dest", tmp_path / "restored", passphrase=PASSPHRASE)
    assert restored.policies_dir is not None
    load_policies(restored.policies_dir)
    client = TestClient(create_app(_settings(restored.home), authenticator()), raise_server_exceptions=False)
    page = client.get(PREFIX + "/register")
    assert page.status_code == 200 and "Heart study" in page.text


def test_backup_refuses_a_destination_inside_the_home_and_keys_it_cannot_seal(busy: World, tmp_path: Path) -> None:
    from enclave.errors import InvalidInput

    inside = busy.settings.home / "backups"
    with pytest.raises(InvalidInput, match="inside ENCLAVE_HOME"):
        create_backup(busy.settings, _admin(busy), inside, passphrase=PASSPHRASE)
    assert not inside.exists()
    env = {k: v for k, v in os.environ.items() if k != "ENCLAVE_BACKUP_PASSPHRASE"}
    result = subprocess.run([*ENCLAVE, "--as", "admin", "backup", "create", str(tmp_path / "dest")], env=env,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: set ENCLAVE_BACKUP_PASSPHRASE (or run in a terminal to be asked) for the passphrase that seals the keys"]
    assert not (tmp_path / "dest").exists()


def test_backup_keeps_the_differencing_store_so_a_restored_enclave_still_compares(busy: World, tmp_path: Path) -> None:
    """Who was in each cell of earlier outputs lives outside the database: without it a
    restored enclave would pass the difference of two tables it released before."""
    from enclave.disclosure.differencing.store import STORE_DIR

    store = busy.settings.home / STORE_DIR / "cardio"
    store.mkdir(parents=True)
    (store / "cells-r1.parquet").write_bytes(b"fingerprints of request 1")
    create_backup(busy.settings, _admin(busy), tmp_path / "dest", passphrase=PASSPHRASE)
    restored = restore_backup(tmp_path / "dest", tmp_path / "restored", passphrase=PASSPHRASE)
    assert (restored.home / STORE_DIR / "cardio" / "cells-r1.parquet").read_bytes() == b"fingerprints of request 1"
