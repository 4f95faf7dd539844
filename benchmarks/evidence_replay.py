"""Benchmark: the cost of verifying a table's evidence by replay, against a fair floor.

The replay (``enclave.egress.replay.Replayer.verify``) reads the sidecar, checks it, starts
a fresh job container, re-runs the query and the table there, and compares the result
with the file. The floor is what any re-run must pay: the same query and table computed in
the same kind of container (same image, same sandbox, same view mounted, started and
removed the same way), with nothing checked or compared. Both are timed in this run,
alternately, and the ratio of their medians is reported; the table computed on the host
in-process is shown for scale.

    .venv/bin/python benchmarks/evidence_replay.py              # 1M-row view, 5 runs each
    .venv/bin/python benchmarks/evidence_replay.py --quick      # 100k rows, 2 runs each

Needs the Docker engine and the notebook image (scripts/build-images.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from enclave.catalog.storage import checksum_files, listing_digest, write_manifest  # noqa: E402
from enclave.disclosure.evidence import sidecar_path  # noqa: E402
from enclave.disclosure.policy import DisclosurePolicy  # noqa: E402
from enclave.egress.policy import EvidencePolicy  # noqa: E402
from enclave.egress.replay import EvidenceStatus, Replayer, view_identity  # noqa: E402
from enclave.sandbox import ContainerPolicy  # noqa: E402

# The floor's container computes exactly what the replay computes, and prints the table.
FLOOR = """
import polars as pl
from enclave.safe import crosstab, query
q = query("bench", "patients").filter(pl.col("age") >= 18)
print(crosstab(q, index="deprivation_decile", columns="sex", margins=True).render().decode()[:80])
"""


def make_view(root: Path, rows: int) -> Path:
    """A view of ``rows`` patients, with the manifest the catalogue writes."""
    rng = np.random.default_rng(7)
    view = root / "bench"
    view.mkdir(parents=True)
    pl.DataFrame({
        "patient_id": [f"P{i:08d}" for i in range(rows)],
        "sex": rng.choice(np.array(["F", "M"]), rows),
        "age": rng.integers(0, 100, rows),
        "deprivation_decile": rng.integers(1, 11, rows),
    }).write_parquet(view / "patients.parquet")
    files = checksum_files(view, ["patients.parquet"])
    write_manifest(view, {"format": 1, "files": files, "sha256": listing_digest(files), "rows": {"patients": rows}})
    os.chmod(view, 0o755)
    (view / "patients.parquet").chmod(0o444)
    return view


def run_container(replayer: Replayer, views: list, command: list[str]) -> None:
    spec = replayer.container_spec(views) | {"command": command, "stdin_open": False}
    container = replayer.client.containers.create(**spec)
    try:
        container.start()
        if container.wait(timeout=600)["StatusCode"] != 0:
            raise SystemExit(f"the floor's container failed: {container.logs().decode()[-400:]}")
    finally:
        container.remove(force=True)


def replay_benchmark(rows: int, repeats: int, image: str) -> dict[str, float]:
    """Median seconds of the replay, of the floor, and of the host-side table; prints a line."""
    import docker

    client = docker.from_env()
    replayer = Replayer(ContainerPolicy(image=image), EvidencePolicy(timeout_seconds=600, mem_limit="4g"), client,
                        container_prefix="enclave-bench-replay-")
    policy = DisclosurePolicy()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        view = make_view(root / "data", rows)
        os.environ["ENCLAVE_DATA_ROOT"] = str(root / "data")
        os.environ["ENCLAVE_DATASETS"] = json.dumps({"bench": "1"})
        from enclave.safe import crosstab, query

        q = query("bench", "patients").filter(pl.col("age") >= 18)
        started = time.perf_counter()
        result = crosstab(q, index="deprivation_decile", columns="sex", margins=True, policy=policy)
        host = time.perf_counter() - started
        path = result.save(root / "table.csv")
        submitted, sidecar = path.read_bytes(), sidecar_path(path).read_bytes()
        views = {"bench": view_identity("bench", view, 1)}
        replays, floors = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            outcome = replayer.verify(submitted, sidecar, path.name, views, policy, "bench")
            replays.append(time.perf_counter() - started)
            if outcome.status is not EvidenceStatus.REPRODUCED:
                raise SystemExit(f"the replay did not reproduce the table: {outcome.reason}")
            started = time.perf_counter()
            run_container(replayer, list(views.values()), ["python", "-c", FLOOR])
            floors.append(time.perf_counter() - started)
    replay, floor = statistics.median(replays), statistics.median(floors)
    print(f"evidence replay of a crosstab over a {rows:,}-row view: {replay:.2f} s; the same query and table "
          f"in the same container, unchecked: {floor:.2f} s; replay / floor = {replay / floor:.2f}x "
          f"(on the host, in-process, the table alone: {host:.2f} s)", flush=True)
    return {"replay": replay, "floor": floor, "host": host}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, help="rows of the view (default 1000000, quick 100000)")
    parser.add_argument("--repeats", type=int, help="runs of each (default 5, quick 2)")
    parser.add_argument("--quick", action="store_true", help="small view, two runs")
    parser.add_argument("--image", default=os.environ.get("ENCLAVE_NOTEBOOK_IMAGE", "enclave-notebook:latest"))
    args = parser.parse_args()
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    replay_benchmark(rows, args.repeats or (2 if args.quick else 5), args.image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
