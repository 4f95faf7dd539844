"""Benchmark: a full backup of an enclave against ``tar`` of the same tree, and an
incremental backup after 1% of the data changed, side by side in one run.

    .venv/bin/python benchmarks/backup.py                  # 1 GB enclave, 9 runs
    .venv/bin/python benchmarks/backup.py --size-mb 100 --runs 3

The enclave is real (a migrated database, an admin, a project) with its workspace filled
with files of mixed sizes (random bytes, so nothing compresses or deduplicates). Each run
times tar, tar followed by ``sync -f`` and a full backup of the same tree (their order
alternates run by run), then rewrites 1% of the bytes and times an incremental backup.
Everything starts from the page cache (warmed once, and by one untimed backup that also
pays Python's imports), each into a fresh folder on the same disk, and the disk is synced
(untimed) before every measurement, so none pays for another's writes. A backup must be
on disk before its manifest names it: it ends by fsyncing the few files it wrote (its
packs, database copy, keys, manifest) and their folders, so it is compared with tar
followed by ``sync -f`` (both on disk), and, without that time (both in the page
cache), with plain tar. Medians are printed with the ratios.
Goals: the full backup at least 0.8 of tar's speed, the incremental one under 5% of the
full backup's time. The CPU time of tar and of the full backup is printed too: on a
shared machine the wall-clock ratio depends on how many cores are free (tar uses one, the
backup two), the CPU time does not. Prints numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
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

from enclave.backup.create import RACY_NS, create_backup  # noqa: E402
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


def settle() -> None:
    """Flush what earlier steps left dirty, so the next measurement pays only its own writes."""
    os.sync()


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


CPU: dict[str, list[float]] = {"tar": [], "backup": []}


def time_tar(home: Path, out: Path, sync: bool = False) -> float:
    settle()
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(["tar", "-cf", str(out), "-C", str(home), "."], check=True)
    if not sync:
        CPU["tar"].append(cpu_seconds(resource.RUSAGE_CHILDREN) - cpu)
    if sync:  # what the backup also does before its manifest: the bytes reach the disk
        subprocess.run(["sync", "-f", str(out)], check=True)
    return time.perf_counter() - start


def time_backup(settings: Settings, admin, dest: Path) -> tuple[float, float, int, int]:  # type: ignore[no-untyped-def]
    """(seconds, of which waiting for the disk, bytes read, database bytes written)."""
    settle()
    cpu = cpu_seconds(resource.RUSAGE_SELF)
    start = time.perf_counter()
    result = create_backup(settings, admin, dest, passphrase=PASSPHRASE)
    seconds = time.perf_counter() - start
    CPU["backup"].append(cpu_seconds(resource.RUSAGE_SELF) - cpu)
    return seconds, result.sync_seconds, result.bytes_read, result.database_bytes_written


def fmt(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024, help="Data in the enclave (default 1024).")
    parser.add_argument("--runs", type=int, default=9,
                        help="Runs of each measurement (default 9: a shared machine's disk is noisy, "
                             "and the median of more runs is steadier).")
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
        time_backup(settings, admin, scratch / "warm-dest")  # imports paid, not timed
        shutil.rmtree(scratch / "warm-dest")
        time.sleep(RACY_NS / 1e9)  # the tree is older than a backup's "just written" window
        CPU["tar"].clear()
        CPU["backup"].clear()
        tars, synced, fulls, fulls_unsynced, incs, inc_read, inc_db = [], [], [], [], [], [], []
        full_cpu: list[float] = []
        inc_cpu: list[float] = []
        for run in range(args.runs):
            out, dest = scratch / f"run-{run}.tar", scratch / f"dest-{run}"

            def tar_pair() -> None:
                tars.append(time_tar(settings.home, out))
                out.unlink()
                synced.append(time_tar(settings.home, out, sync=True))
                out.unlink()

            def full() -> None:
                seconds, waiting, _, _ = time_backup(settings, admin, dest)
                full_cpu.append(CPU["backup"][-1])
                fulls.append(seconds)
                fulls_unsynced.append(seconds - waiting)

            for step in ((tar_pair, full) if run % 2 == 0 else (full, tar_pair)):
                step()
            # 1% of the bytes change: whole files rewritten, as a notebook run rewrites its outputs.
            changed, budget = 0, total // 100
            for path in files[run::max(1, args.runs)]:
                if changed >= budget:
                    break
                data = os.urandom(path.stat().st_size)
                path.write_bytes(data)
                changed += len(data)
            seconds, _, read, db_written = time_backup(settings, admin, dest)
            incs.append(seconds)
            inc_cpu.append(CPU["backup"][-1])
            inc_read.append(read)
            inc_db.append(db_written)
            shutil.rmtree(dest)
        med = statistics.median
        tar_s, sync_s, full_s, bare_s, inc_s = med(tars), med(synced), med(fulls), med(fulls_unsynced), med(incs)
        mib = total / 2**20
        table = Table(title=f"Backup of a {mib:.0f} MiB enclave, median of {args.runs} run(s)")
        for column in ("measure", "seconds", "MiB/s", "result", "goal"):
            table.add_column(column)
        table.add_row("tar (in the page cache, no sync)", f"{tar_s:.2f}", f"{mib / tar_s:.0f}", "baseline", "")
        table.add_row("tar, then sync -f (on disk)", f"{sync_s:.2f}", f"{mib / sync_s:.0f}", "baseline", "")
        table.add_row("full backup, without its syncs", f"{bare_s:.2f}", f"{mib / bare_s:.0f}",
                      f"{tar_s / bare_s:.2f} of tar's speed", "at least 0.8")
        table.add_row("full backup (on disk)", f"{full_s:.2f}", f"{mib / full_s:.0f}",
                      f"{sync_s / full_s:.2f} of tar+sync's speed", "at least 0.8")
        table.add_row(f"incremental after a 1% change (read {med(inc_read) / 2**20:.0f} MiB, wrote "
                      f"{med(inc_db) / 2**10:.0f} KiB of database chunks, on disk)",
                      f"{inc_s:.3f}", "", f"{100 * inc_s / full_s:.1f}% of the full backup", "under 5%")
        console.print(table)
        load = os.getloadavg()[0]
        console.print(f"CPU time (median): tar {med(CPU['tar']):.2f} s, full backup {med(full_cpu):.2f} s, incremental "
                      f"{med(inc_cpu):.3f} s ({100 * med(inc_cpu) / med(full_cpu):.1f}% of the full backup's); on two free "
                      f"cores, were CPU all that counted, the backup would run at {2 * med(CPU['tar']) / med(full_cpu):.2f} of "
                      f"tar's speed (load average at the end {load:.1f} on {os.cpu_count()} cores)")
        console.print(f"runs (s): tar {fmt(tars)}; tar+sync {fmt(synced)}; full {fmt(fulls)}; "
                      f"full without syncs {fmt(fulls_unsynced)}; incremental {' '.join(f'{v:.3f}' for v in incs)}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
