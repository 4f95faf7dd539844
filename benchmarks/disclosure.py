"""Benchmark: enclave.safe.crosstab against acro and a bare polars group-by; CSV checking speed.

Run from the repository root (acro comparisons need scripts/install-acro.sh first):

    .venv/bin/python benchmarks/disclosure.py              # 1M and 10M rows, 200 MB CSV
    .venv/bin/python benchmarks/disclosure.py --quick      # 100k rows, 20 MB CSV, one repeat
    .venv/bin/python benchmarks/disclosure.py --rows 2000000 --csv-mb 50 --no-acro

Every figure is a median of --repeats runs (acro: one run, timed inside its process without
import and file reading) and ratios are taken within this one run, since machines are noisy.
Goals: >= 20x faster than acro at 10M rows, <= 2x the bare group-by, >= 100 MB/s CSV checks.
Last, the evidence replay's cost against the same query in the same container
(benchmarks/evidence_replay.py; --no-replay skips it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from enclave.disclosure import DisclosurePolicy, check_file  # noqa: E402
from enclave.disclosure.policy import CheckerLimits  # noqa: E402
from enclave.safe import crosstab  # noqa: E402

ACRO_PYTHON = REPO / ".venv-acro" / "bin" / "python"


def make_frame(rows: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame({
        "year": rng.integers(2000, 2020, rows),
        "grant_type": rng.choice(np.array(["A", "B", "C", "D", "E"]), rows),
        "income": rng.lognormal(10, 1, rows),
    })


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bare_groupby(frame: pl.DataFrame, engine: str) -> pl.DataFrame:
    """The floor: the same table (count and mean per cell) with no checks at all."""
    query = frame.lazy().group_by(["year", "grant_type"]).agg(pl.len(), pl.col("income").mean())
    return query.collect(engine=engine)


def acro_seconds(frame: pl.DataFrame, workdir: Path) -> float | None:
    if not ACRO_PYTHON.exists():
        return None
    data = workdir / "frame.parquet"
    frame.write_parquet(data)
    done = subprocess.run([str(ACRO_PYTHON), str(REPO / "scripts" / "acro_crosstab.py"), str(data),
                           "year", "grant_type", "income", "mean"], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def make_csv(path: Path, megabytes: int) -> None:
    """An aggregate-looking table (labels, counts >= 10, means) of about ``megabytes``."""
    rng = np.random.default_rng(1)
    rows_per_mb = 30_500
    rows = megabytes * rows_per_mb
    frame = pl.DataFrame({
        "region": rng.choice(np.array(["North East", "North West", "London", "South West", "Wales"]), rows),
        "year": rng.integers(2000, 2024, rows),
        "age_band": rng.choice(np.array(["0-17", "18-39", "40-64", "65+"]), rows),
        "count": rng.integers(10, 100_000, rows),
        "mean_cost": np.round(rng.lognormal(7, 1, rows), 2),
    })
    frame.write_csv(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", help="frame sizes (default 1000000 10000000)")
    parser.add_argument("--quick", action="store_true", help="small sizes and one repeat")
    parser.add_argument("--repeats", type=int, help="runs per figure (default 3, quick 1)")
    parser.add_argument("--csv-mb", type=int, help="size of the CSV to check (default 200, quick 20)")
    parser.add_argument("--no-acro", action="store_true", help="skip acro")
    parser.add_argument("--no-replay", action="store_true",
                        help="skip the evidence replay (needs the Docker engine and the notebook image)")
    args = parser.parse_args()
    sizes = args.rows or ([100_000] if args.quick else [1_000_000, 10_000_000])
    repeats = args.repeats or (1 if args.quick else 3)
    csv_mb = args.csv_mb or (20 if args.quick else 200)
    policy = DisclosurePolicy()

    print(f"{'rows':>11} {'enclave s':>10} {'bare s':>9} {'vs bare':>8} {'acro s':>9} {'acro/enclave':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for rows in sizes:
            frame = make_frame(rows)
            ours = median_seconds(lambda: crosstab(frame, index="year", columns="grant_type", values="income",
                                                   aggfunc="mean", policy=policy), repeats)
            # the faster of polars' two engines, so the floor is a real floor
            floor = min(median_seconds(lambda: bare_groupby(frame, "in-memory"), repeats),
                        median_seconds(lambda: bare_groupby(frame, "streaming"), repeats))
            theirs = None if args.no_acro else acro_seconds(frame, workdir)
            acro_text = f"{theirs:9.2f} {theirs / ours:12.1f}x" if theirs else f"{'n/a':>9} {'n/a':>13}"
            print(f"{rows:>11,} {ours:10.3f} {floor:9.3f} {ours / floor:7.1f}x {acro_text}", flush=True)

        path = workdir / "aggregate.csv"
        make_csv(path, csv_mb)
        size_mb = path.stat().st_size / 1e6
        limits = CheckerLimits(max_rows=100_000_000, max_file_bytes=4 * 1024**3)
        csv_policy = DisclosurePolicy(checker=limits)
        report = check_file(path, csv_policy)
        seconds = median_seconds(lambda: check_file(path, csv_policy), repeats)
        parse = median_seconds(lambda: pl.read_csv(path.read_bytes(), infer_schema_length=10_000), repeats)
        print(f"\negress check of a {size_mb:.0f} MB CSV: {seconds:.2f} s = {size_mb / seconds:.0f} MB/s "
              f"(verdict {report.status}, {len(report.findings)} finding(s))")
        print(f"floor: reading and parsing it with polars alone: {parse:.2f} s = {size_mb / parse:.0f} MB/s "
              f"(check / parse = {seconds / parse:.1f}x)")
    if not args.no_replay:
        from benchmarks.evidence_replay import replay_benchmark

        print()
        replay_benchmark(100_000 if args.quick else 1_000_000, 2 if args.quick else 5,
                         os.environ.get("ENCLAVE_NOTEBOOK_IMAGE", "enclave-notebook:latest"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
