"""``kill -9`` (a real process, SIGKILL) in the middle of a backup and of a restore: the
earlier backups stay intact, and the next run completes and verifies."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from backup_world import PASSPHRASE, World
from enclave.audit import verify_chain
from enclave.backup.create import create_backup
from enclave.backup.store import Store, manifest_files
from enclave.backup.verify import verify_backup
from enclave.config import Settings
from enclave.db.session import unit_of_work
from enclave.users import get_user

REPO = Path(__file__).resolve().parents[3]
ENCLAVE = [str(REPO / ".venv" / "bin" / "python"), "-m", "enclave.cli.main"]


def _env(world: World) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env.update(ENCLAVE_HOME=str(world.settings.home), ENCLAVE_POLICIES=str(REPO / "policies"),
               ENCLAVE_BACKUP_PASSPHRASE=PASSPHRASE)
    return env


def _kill_when(args: list[str], env: dict[str, str], ready: Callable[[], bool]) -> None:
    process = subprocess.Popen([*ENCLAVE, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not ready():
        if process.poll() is not None:
            pytest.fail(f"the run ended before it could be killed: {process.stderr.read().decode()[-500:]}")
        assert time.monotonic() < deadline
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL


def _grow(world: World, files: int = 40, size: int = 2 << 20) -> None:
    for i in range(files):
        world.write(f"bulk/part-{i:03}.bin", os.urandom(size))


def _unnamed(dest: Path) -> int:
    """Files a run has written but not yet made durable and named (objects get their
    names in one batch at the end)."""
    return sum(1 for _ in (dest / "tmp").iterdir())


def test_backup_killed_midway_leaves_earlier_backups_intact_and_the_next_run_completes(busy: World, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    with unit_of_work(busy.settings) as s:
        admin = get_user(s, "admin")
    first = create_backup(busy.settings, admin, dest, passphrase=PASSPHRASE).id
    _grow(busy)
    _kill_when(["--as", "admin", "backup", "create", str(dest), "--quiet"], _env(busy),
               lambda: _unnamed(dest) >= 2)  # both workers' packs
    assert Store(dest).manifest_ids() == [first]  # no half backup is listed
    assert verify_backup(dest, first).id == first
    done = subprocess.run([*ENCLAVE, "--as", "admin", "backup", "create", str(dest), "--quiet"], env=_env(busy),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    ids = Store(dest).manifest_ids()
    assert len(ids) == 2 and ids[0] == first
    record = Store(dest).read_manifest(ids[1])["record"]
    assert sum(1 for f in manifest_files(record) if "/bulk/" in f["path"]) == 40
    # every file, each chunk of the database, the sealed keys
    assert verify_backup(dest, ids[1]).objects == len(record["files"]) + len(record["database"]["chunks"]) + 1
    assert not list((dest / "tmp").iterdir()), "what the killed run left was not swept"


@pytest.mark.parametrize("phase", ["files", "database"])
def test_backup_restore_killed_midway_completes_on_the_next_run(busy: World, tmp_path: Path, phase: str) -> None:
    _grow(busy, files=20)
    dest = tmp_path / "dest"
    with unit_of_work(busy.settings) as s:
        admin = get_user(s, "admin")
    create_backup(busy.settings, admin, dest, passphrase=PASSPHRASE)
    home = tmp_path / "restored"
    bulk = home / "workspaces" / "heart-study" / "outbox" / "bulk"
    ready = (lambda: bulk.is_dir() and sum(1 for _ in bulk.iterdir()) >= 5) if phase == "files" \
        else (lambda: (home / "enclave.db").exists())
    args = ["backup", "restore", str(dest), "--to", str(home), "--quiet"]
    _kill_when(args, _env(busy), ready)
    assert (home / ".restore-in-progress").exists()
    done = subprocess.run([*ENCLAVE, *args], env=_env(busy), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "audit chain of" in done.stdout and "2 release record(s) and 1 dataset version(s) verify" in done.stdout
    assert not (home / ".restore-in-progress").exists()
    assert sum(1 for _ in bulk.iterdir()) == 20
    restored = Settings(home=home, db_url=f"sqlite:///{home / 'enclave.db'}", policies_dir=home / "policies")
    with unit_of_work(restored) as s:
        assert verify_chain(s).ok
