"""Benchmark: a full backup of an enclave against ``tar`` of the same tree, and an
incremental backup after 1% of the data changed, side by side in one run.

    .venv/bin/python benchmarks/backup.py                  # 1 GB enclave, 3 runs
    .venv/bin/python benchmarks/backup.py --size-mb 100 --runs 1

The enclave is real (a migrated database, an admin, a project) with its workspace filled
with files of mixed sizes (random bytes, so nothing compresses or deduplicates). Full
backup and tar alternate run by run, both with the tree in the page cache, each into a
fresh folder on the same disk. The backup syncs its objects to disk before it writes its
manifest (a backup in the page cache is not yet a backup), so tar followed by ``sync`` is
shown too. Goals: the full backup at least 0.8 of tar's speed, the
incremental one under 5% of the full backup's time. Prints numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from enclave.backup.create import create_backup  # noqa: E402
from enclave.clock import today  # noqa: E402
from enclave.config import Settings  # noqa: E402
from enclave.db.session import unit_of_work, upgrade  # noqa: E402
from enclave.enums import Role  # noqa: E402
from enclave.projects import service as projects  # noqa: E402
from enclave.projects.tiers import load_tiers  # noqa: E402
from enclave.users import add_user  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PASSPHRASE = "benchmark passphrase, not a real one"
# (file size, share of the bytes): many small notebooks and outputs, some large tables.
MIX = [(64 << 10, 0.10), (1 << 20, 0.30), (16 << 20, 0.60)]


def build(root: Path, size: int) -> tuple[Settings, list[Path]]:
    home = root / "home"
    settings = Settings(home=home, db_url=f"sqlite:///{home / 'enclave.db'}", policies_dir=REPO / "policies")
    upgrade(settings)
    with unit_of_work(settings) as s:
        admin = add_user(s, None, "admin", {Role.ADMIN})
        add_user(s, admin, "rita", {Role.RESEARCHER}, today() + dt.timedelta(days=365))
        projects.create_project(s, admin, load_tiers(settings.policies_dir), slug="bench", title="Benchmark",
                                pi="rita", lay_summary="A benchmark.", end_date=today() + dt.timedelta(days=30))
    files = []
    for file_size, share in MIX:
        folder = settings.workspaces_dir / "bench" / f"files-{file_size >> 10}k"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(max(1, int(size * share) // file_size)):
            path = folder / f"part-{i:05}.bin"
            path.write_bytes(os.urandom(file_size))
            files.append(path)
    return settings, files


def tree_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in home.rglob("*") if p.is_file() and not p.is_symlink())


def time_tar(home: Path, out: Path, sync: bool = False) -> float:
    start = time.perf_counter()
    subprocess.run(["tar", "-cf", str(out), "-C", str(home), "."], check=True)
    if sync:  # what the backup also does before its manifest: the bytes reach the disk
        subprocess.run(["sync", "-f", str(out)], check=True)
    return time.perf_counter() - start


def time_backup(settings: Settings, admin, dest: Path) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = create_backup(settings, admin, dest, passphrase=PASSPHRASE)
    return time.perf_counter() - start, result.bytes_read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024, help="Data in the enclave (default 1024).")
    parser.add_argument("--runs", type=int, default=3, help="Runs of each measurement (default 3).")
    parser.add_argument("--dir", type=Path, default=None, help="Scratch folder (default: a temporary one).")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="enclave-bench-backup-", dir=args.dir))
    console = Console()
    try:
        settings, files = build(scratch, args.size_mb << 20)
        with unit_of_work(settings) as s:
            from enclave.users import get_user
            admin = get_user(s, "admin")
        total = tree_bytes(settings.home)
        time_tar(settings.home, scratch / "warm.tar")  # page cache warm for both
        (scratch / "warm.tar").unlink()
        tars, synced, fulls, incs, inc_read = [], [], [], [], []
        for run in range(args.runs):
            out = scratch / f"run-{run}.tar"
            tars.append(time_tar(settings.home, out))
            out.unlink()
            synced.append(time_tar(settings.home, out, sync=True))
            out.unlink()
            dest = scratch / f"dest-{run}"
            fulls.append(time_backup(settings, admin, dest)[0])
            # 1% of the bytes change: whole files rewritten, as a notebook run rewrites its outputs.
            changed, budget = 0, total // 100
            for path in files[run::max(1, args.runs)]:
                if changed >= budget:
                    break
                data = os.urandom(path.stat().st_size)
                path.write_bytes(data)
                changed += len(data)
            seconds, read = time_backup(settings, admin, dest)
            incs.append(seconds)
            inc_read.append(read)
            shutil.rmtree(dest)
        tar_s, full_s, inc_s = statistics.median(tars), statistics.median(fulls), statistics.median(incs)
        table = Table(title=f"Backup of a {total / 2**20:.0f} MiB enclave, median of {args.runs} run(s)")
        for column in ("measure", "seconds", "MiB/s", "result", "goal"):
            table.add_column(column)
        sync_s = statistics.median(synced)
        table.add_row("tar of the same tree", f"{tar_s:.2f}", f"{total / 2**20 / tar_s:.0f}", "baseline", "")
        table.add_row("tar, then sync to disk", f"{sync_s:.2f}", f"{total / 2**20 / sync_s:.0f}", "", "")
        table.add_row("enclave backup create (full)", f"{full_s:.2f}", f"{total / 2**20 / full_s:.0f}",
                      f"{tar_s / full_s:.2f} of tar's speed ({sync_s / full_s:.2f} of tar+sync)", "at least 0.8")
        table.add_row(f"incremental after a 1% change (read {statistics.median(inc_read) / 2**20:.0f} MiB)",
                      f"{inc_s:.2f}", "", f"{100 * inc_s / full_s:.1f}% of the full backup", "under 5%")
        console.print(table)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
