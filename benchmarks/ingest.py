"""Benchmark: dataset ingest against a bare polars CSV-to-Parquet conversion, and view
materialisation, side by side in one run.

    .venv/bin/python benchmarks/ingest.py                 # 1 GB CSV, 10M-row view, 3 runs
    .venv/bin/python benchmarks/ingest.py --size 50MB --view-rows 500000 --runs 1

Each measurement runs in a fresh child process so that its peak memory (max RSS) is its
own. Ingest and baseline alternate run by run, so machine noise hits both alike; the
table reports medians of wall-clock and CPU seconds and the speed ratio for both (goal:
ingest at least 0.8 of the baseline). On a shared, busy machine the CPU ratio is the
steadier of the two.
Never a timed test: this prints numbers, it does not assert them.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from enclave.catalog.dictionary import DataDictionary, parse_dictionary  # noqa: E402
from enclave.catalog.ingest import build_version  # noqa: E402
from enclave.catalog.readers import SourceFormat  # noqa: E402
from enclave.catalog.views import materialise_view, resolve_view  # noqa: E402

TESTS = ["HB", "WBC", "NA", "K", "CREA", "CRP", "HBA1C", "GLU"]
UNITS = ["g/L", "10*9/L", "mmol/L", "mmol/L", "umol/L", "mg/L", "mmol/mol", "mmol/L"]
CHUNK_ROWS = 1_000_000


def dictionary() -> DataDictionary:
    """The benchmark table's dictionary: a laboratory-results extract."""
    col = lambda t, i, **kw: {"type": t, "identifier": i, "description": "benchmark column", **kw}  # noqa: E731
    return parse_dictionary({
        "description": "Benchmark laboratory results",
        "tables": {"lab_results": {
            "description": "One row per result",
            "primary_key": ["result_id"],
            "columns": {
                "result_id": col("integer", "quasi", key="lab_result", nullable=False),
                "patient_id": col("string", "direct", key="patient", nullable=False),
                "test_code": col("string", "none", nullable=False),
                "value": col("float", "none"),
                "unit": col("string", "none"),
                "taken_at": col("datetime", "quasi", nullable=False),
                "abnormal_flag": col("string", "none", values=["L", "N", "H"]),
                "comment": col("string", "none"),
            },
        }},
    })


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?)b?\s*", text.lower())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: write e.g. 1GB, 200MB, 50MB")
    return int(float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[match.group(2)])


def write_csv(path: Path, size: int, progress: Progress) -> int:
    """Append synthetic chunks until the file reaches ``size`` bytes; returns rows written."""
    rng = np.random.default_rng(42)
    task = progress.add_task("generating CSV", total=size)
    rows = 0
    with open(path, "wb") as fh:
        while fh.tell() < size:
            n = CHUNK_ROWS
            test = rng.integers(0, len(TESTS), n)
            value = np.round(rng.lognormal(2.0, 0.8, n), 2)
            frame = pl.DataFrame({
                "result_id": np.arange(rows + 1, rows + n + 1, dtype=np.int64),
                "patient_id": rng.integers(1, max(2, size // 2000), n),
                "test_code": np.array(TESTS)[test],
                "value": value,
                "unit": np.array(UNITS)[test],
                "taken_at": rng.integers(1_500_000_000, 1_730_000_000, n) * 1_000_000,
                "abnormal_flag": np.where(value < 3, "L", np.where(value > 20, "H", "N")),
                "comment": np.where(rng.random(n) < 0.05, "haemolysed sample", ""),
            }).with_columns(
                pl.format("P{}", pl.col("patient_id").cast(pl.String).str.zfill(8)).alias("patient_id"),
                pl.col("taken_at").cast(pl.Datetime("us")),
            )
            frame.write_csv(fh, include_header=rows == 0, datetime_format="%Y-%m-%d %H:%M:%S")
            rows += n
            progress.update(task, completed=min(fh.tell(), size))
    return rows


def _peak_mb() -> float:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec.
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _baseline(csv: Path, out: Path) -> dict[str, Any]:
    start, cpu = time.perf_counter(), _cpu()
    pl.scan_csv(csv).sink_parquet(out / "baseline.parquet")
    return {"seconds": time.perf_counter() - start, "cpu": _cpu() - cpu, "peak_mb": _peak_mb()}


def _ingest(csv: Path, out: Path) -> dict[str, Any]:
    stage = out / "version"
    stage.mkdir()
    start, cpu = time.perf_counter(), _cpu()
    built = build_version(csv, dictionary(), stage, fmt=SourceFormat.CSV, optouts=["P00000001", "P00000002"])
    return {"seconds": time.perf_counter() - start, "cpu": _cpu() - cpu, "peak_mb": _peak_mb(),
            "rows": built.row_count, "sha256": built.sha256}


def _view(version: Path, sha: str, rows: int, out: Path) -> dict[str, Any]:
    d = dictionary()
    spec = resolve_view(d, ["lab_results.*"], [f"lab_results: result_id <= {rows}"])
    start, cpu = time.perf_counter(), _cpu()
    result = materialise_view(version, sha, d, spec, b"k" * 32, ["P00000003"], out / "view" / "lab", progress=None)
    return {"seconds": time.perf_counter() - start, "cpu": _cpu() - cpu, "peak_mb": _peak_mb(),
            "rows": result.rows["lab_results"]}


def _child(kind: str, args: tuple, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    fn = {"baseline": _baseline, "ingest": _ingest, "view": _view}[kind]
    queue.put(fn(*args))


def measure(kind: str, *args: Any) -> dict[str, Any]:
    """Run one measurement in a fresh process (its own peak memory)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(kind, args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=parse_size, default=parse_size("1GB"), help="CSV size, e.g. 1GB (default), 50MB")
    parser.add_argument("--view-rows", type=int, default=10_000_000, help="rows in the materialised view (default 10M; capped at the CSV's rows)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement; medians are reported")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch directory (default: a temporary one)")
    args = parser.parse_args(argv)
    console = Console()
    work = Path(tempfile.mkdtemp(prefix="enclave-bench-", dir=args.workdir))
    try:
        csv = work / "lab_results.csv"
        with Progress(console=console, transient=True) as progress:
            rows = write_csv(csv, args.size, progress)
        console.print(f"CSV: {csv.stat().st_size / 1e6:.0f} MB, {rows:,} rows; {args.runs} run(s) each")
        base, ours = [], []
        for run in range(args.runs):
            for kind, bucket in (("baseline", base), ("ingest", ours)):
                out = work / f"{kind}-{run}"
                out.mkdir()
                bucket.append(measure(kind, csv, out))
                if not (kind == "ingest" and run == args.runs - 1):
                    shutil.rmtree(out)
        version = work / f"ingest-{args.runs - 1}" / "version"
        view_rows = min(args.view_rows, rows)
        views = []
        for run in range(args.runs):
            out = work / f"view-{run}"
            out.mkdir()
            views.append(measure("view", version, ours[-1]["sha256"], view_rows, out))
            shutil.rmtree(out)
        med = lambda runs, key: statistics.median(r[key] for r in runs)  # noqa: E731
        mb = csv.stat().st_size / 1e6
        table = Table(title="Ingest vs bare polars CSV -> Parquet (medians)", title_justify="left")
        for column in ["", "wall s", "CPU s", "MB/s", "rows/s", "peak MB"]:
            table.add_column(column, justify="right" if column else "left")
        for label, runs in (("polars scan_csv -> sink_parquet", base), ("enclave ingest (validate, opt-outs, stats, sha256)", ours)):
            s = med(runs, "seconds")
            table.add_row(label, f"{s:.2f}", f"{med(runs, 'cpu'):.2f}", f"{mb / s:.0f}", f"{rows / s:,.0f}", f"{med(runs, 'peak_mb'):.0f}")
        wall = med(base, "seconds") / med(ours, "seconds")
        cpu = med(base, "cpu") / med(ours, "cpu")
        verdict = lambda r: "met" if r >= 0.8 else "NOT met"  # noqa: E731
        table.add_row("speed ratio ingest/baseline (goal >= 0.80)", f"{wall:.2f} {verdict(wall)}", f"{cpu:.2f} {verdict(cpu)}",
                      "", "", "", end_section=True)
        s = med(views, "seconds")
        table.add_row(f"view materialisation ({views[0]['rows']:,} rows, pseudonymised)", f"{s:.2f}",
                      f"{med(views, 'cpu'):.2f}", "", f"{views[0]['rows'] / s:,.0f}", f"{med(views, 'peak_mb'):.0f}")
        console.print(table)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
