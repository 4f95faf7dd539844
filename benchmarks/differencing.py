"""Differencing check: a new 100-cell table against 1,000 earlier releases of 100 cells
each over a 1M-patient dataset (goal: under 5 s on the project's 2-core machine), and the
store's size per release.

    .venv/bin/python benchmarks/differencing.py                 # 1M patients, 1,000 releases
    .venv/bin/python benchmarks/differencing.py --releases 100  # quicker

Each earlier release is a 10 x 10 table (two random attributes of a random cohort of 60 to
100% of the patients); a few of them are the new table's cohort with a few people more or
less, so the check has real pairs to find. The store is written untimed through the
store's own code; past --distinct unrelated tables the releases are hard-linked copies of
them (each still read and compared as its own release), which keeps the setup short. Timed (medians of --runs): the check (``compare``: metadata of every
release, size pre-filter, sketch bound, exact joins for the survivors), and as the baseline
in the same run the plain approach the pre-filters replace: one polars join of the new
table's members with every release's members (measured on --baseline-releases releases
and scaled linearly to all). Prints both, their ratio, and the store's bytes per release.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from enclave.disclosure.differencing.compare import compare  # noqa: E402
from enclave.disclosure.differencing.store import DifferencingStore, EntryInfo  # noqa: E402
from enclave.disclosure.differencing.table import build_table  # noqa: E402


class Cell:
    def __init__(self, row, column, margin=False):  # type: ignore[no-untyped-def]
        self.row, self.column, self.margin, self.suppressed = row, column, margin, False


def table_cells(cohort: np.ndarray, a: np.ndarray, b: np.ndarray):  # type: ignore[no-untyped-def]
    """A 10 x 10 table of ``cohort`` by attributes a, b (0..9 each), with margins."""
    cells, members = [], []
    key = a[cohort] * 10 + b[cohort]
    order = np.argsort(key, kind="stable")
    bounds = np.searchsorted(key[order], np.arange(101))
    for k in range(100):
        cells.append(Cell([int(k // 10)], [int(k % 10)]))
        members.append(np.sort(cohort[order[bounds[k]:bounds[k + 1]]]).astype(np.uint32))
    for r in range(10):
        cells.append(Cell([r], ["All"], margin=True))
        members.append(None)
    for c in range(10):
        cells.append(Cell(["All"], [c], margin=True))
        members.append(None)
    cells.append(Cell(["All"], ["All"], margin=True))
    members.append(None)
    return cells, members


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--releases", type=int, default=1000)
    parser.add_argument("--related", type=int, default=5, help="earlier releases nested with the new table")
    parser.add_argument("--distinct", type=int, default=40, help="distinct unrelated releases (the rest are copies)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline-releases", type=int, default=20)
    parser.add_argument("--threshold", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(15)
    n = args.patients
    attrs = [rng.integers(0, 10, n) for _ in range(6)]
    everyone = np.arange(n, dtype=np.uint32)
    base = everyone[rng.random(n) < 0.8]

    with tempfile.TemporaryDirectory(prefix="enclave-diffbench-") as tmp:
        store = DifferencingStore(Path(tmp))
        infos = []
        t0 = time.perf_counter()
        outputs = store.root / "demo" / "outputs"
        for i in range(args.releases):
            info = EntryInfo(f"p-r{i}", "demo", "p", i + 1, f"t{i}.csv", "0" * 64, 1, False)
            infos.append(info)
            if i >= args.related + args.distinct:
                # Copies of the distinct unrelated tables (as hard links: the check reads each
                # as its own release, the setup does not pay 0.5 s per table).
                source = infos[args.related + (i % args.distinct)]
                for suffix in (".cells.parquet", ".members.parquet"):
                    (outputs / f"{info.entry}{suffix}").hardlink_to(outputs / f"{source.entry}{suffix}")
                (outputs / f"{info.entry}.json").write_text(json.dumps(info.__dict__))
                continue
            if i < args.related:  # the new cohort with a few people more or less
                extra = rng.choice(np.setdiff1d(everyone, base, assume_unique=True), 3 + i, replace=False)
                cohort = np.union1d(base, extra).astype(np.uint32)
                a, b = attrs[0], attrs[1]
            else:
                cohort = everyone[rng.random(n) < rng.uniform(0.6, 1.0)]
                a, b = attrs[rng.integers(0, 6)], attrs[rng.integers(0, 6)]
            store.record(info, build_table(*table_cells(cohort, a, b)))
        written = time.perf_counter() - t0
        size = sum(store.size_of(e) for e in infos[: args.related + args.distinct]) / min(len(infos), args.related + args.distinct)
        new = build_table(*table_cells(base, attrs[0], attrs[1]))
        print(f"store: {args.releases} releases of 100 cells (+21 margins) over {n:,} patients written in "
              f"{written:.1f} s; {size / 1e6:.2f} MB per release on disk")

        times, found = [], None
        for _ in range(args.runs):
            t = time.perf_counter()
            pairs, stats = compare(new, infos, store, args.threshold)
            times.append(time.perf_counter() - t)
            found = (len(pairs), stats)
        check = statistics.median(times)
        pairs_found, stats = found
        print(f"check: {check:.2f} s (median of {args.runs}: {', '.join(f'{x:.2f}' for x in times)}); "
              f"{stats.earlier_cells:,} earlier cells, {stats.size_candidates:,} after the size filter, "
              f"{stats.sketch_candidates:,} after the sketch bound, {pairs_found} differencing pairs")

        k = min(args.baseline_releases, len(infos))
        mine = new.members(list(range(len(new.labels)))).rename({"cell": "new"})
        base_times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            for info in infos[:k]:
                cells = store.cells(info)
                grid = store.members(info, list(range(100)))
                parts = cells.select("cell", "parts").explode("parts").rename({"cell": "old", "parts": "part"})
                old = parts.join(grid.rename({"cell": "part"}), on="part").select("old", "idx").unique()
                mine.join(old, on="idx").group_by("new", "old").len()
            base_times.append((time.perf_counter() - t) * len(infos) / k)
        baseline = statistics.median(base_times)
        print(f"baseline (every cell pair intersected by one join, {k} releases scaled to {len(infos)}): "
              f"{baseline:.1f} s; check / baseline = {check / baseline:.3f}")
        print(f"goal: check under 5 s: {'met' if check < 5 else 'NOT met'}")


if __name__ == "__main__":
    main()
