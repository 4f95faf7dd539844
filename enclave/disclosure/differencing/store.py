"""The differencing store: ``ENCLAVE_HOME/differencing/<dataset>/``, on the host only.

Nothing here is ever mounted into a container or written into released evidence:

- ``patients.parquet``: the dataset's dense patient index: per fingerprint (the keyed
  hash of the source patient key, ``keys.fingerprints``) its index (the row number) and
  record key. It only grows; appends take ``patients.lock``.
- ``maps/<project>-v<version>.parquet``: the project's pseudonym of each patient of that
  version and its index, so a replay's pseudonyms become indices without the container
  ever seeing another project's pseudonyms or any key.
- ``outputs/<entry>.json|.cells.parquet|.members.parquet``: one checked output: where it
  was submitted, its cells (label, size, shown, margin, parts, sketch) and the members of
  its grid cells (cell, index), sorted, so a cell's members are read without the rest.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from enclave.disclosure.differencing.keys import fingerprints
from enclave.disclosure.differencing.table import Table

STORE_DIR = "differencing"
ROW_GROUP = 65536
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _atomic_parquet(frame: pl.DataFrame, path: Path, **kwargs: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.write_parquet(tmp, **kwargs)
    os.replace(tmp, path)


@dataclass(frozen=True)
class EntryInfo:
    """Where a stored output came from."""

    entry: str
    dataset: str
    project: str
    request_id: int | None
    relpath: str
    sha256: str
    version: int | None
    perturbed: bool

    def describe(self) -> str:
        where = f"request {self.request_id}" if self.request_id is not None else "a check"
        return f"outbox/{self.relpath} of project {self.project} ({where})"


class DifferencingStore:
    """The store of one enclave (``root`` = ``ENCLAVE_HOME/differencing``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def of_home(cls, home: Path) -> DifferencingStore:
        return cls(home / STORE_DIR)

    def _dataset_dir(self, dataset: str) -> Path:
        if not _NAME.match(dataset):
            raise ValueError(f"not a dataset name: {dataset!r}")
        path = self.root / dataset
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    @contextmanager
    def _locked(self, dataset: str) -> Iterator[Path]:
        folder = self._dataset_dir(dataset)
        with open(folder / "patients.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield folder
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # --- the patient index -------------------------------------------------------------

    def patients(self, dataset: str) -> pl.DataFrame:
        """fp (u64), idx (u32), rkey (u8) of every patient indexed so far."""
        path = self._dataset_dir(dataset) / "patients.parquet"
        if not path.exists():
            return pl.DataFrame(schema={"fp": pl.UInt64, "idx": pl.UInt32, "rkey": pl.UInt8})
        return pl.read_parquet(path)

    def index_patients(self, dataset: str, key: bytes, source_keys: list[str]) -> pl.DataFrame:
        """(source, idx, rkey) of these source patient keys, adding the new ones to the index."""
        fps, rks = fingerprints(key, source_keys)
        given = pl.DataFrame({"source": source_keys, "fp": fps, "rkey": rks})
        with self._locked(dataset) as folder:
            known = self.patients(dataset)
            new = given.join(known, on="fp", how="anti").unique("fp", maintain_order=True)
            if new.height:
                start = known.height
                added = new.select("fp", pl.arange(start, start + new.height, dtype=pl.UInt32).alias("idx"), "rkey")
                known = pl.concat([known, added])
                _atomic_parquet(known, folder / "patients.parquet")
        return given.join(known.select("fp", "idx"), on="fp").select("source", "idx", "rkey")

    # --- per project and version: pseudonym -> index ----------------------------------------

    def map_path(self, dataset: str, project: str, version: int) -> Path:
        if not _NAME.match(project):
            raise ValueError(f"not a project slug: {project!r}")
        folder = self._dataset_dir(dataset) / "maps"
        folder.mkdir(exist_ok=True, mode=0o700)
        return folder / f"{project}-v{int(version)}.parquet"

    def save_map(self, dataset: str, project: str, version: int, frame: pl.DataFrame) -> None:
        _atomic_parquet(frame.select("pseudonym", "idx", "rkey"), self.map_path(dataset, project, version))

    def forget_project(self, project: str) -> int:
        """Remove the project's pseudonym maps of every dataset (its data are destroyed: its
        pseudonyms must not be mappable back any more); how many were removed. The fingerprints
        of its released outputs stay, so later tables are still compared with them."""
        if not _NAME.match(project) or not self.root.is_dir():
            return 0
        removed = 0
        own = re.compile(rf"{re.escape(project)}-v[0-9]+\.parquet")  # not "a-v2x-v1" for "a"
        for path in self.root.glob("*/maps/*.parquet"):
            if own.fullmatch(path.name) and path.is_file() and not path.is_symlink():
                path.unlink()
                removed += 1
        return removed

    def load_map(self, dataset: str, project: str, version: int) -> pl.DataFrame | None:
        path = self.map_path(dataset, project, version)
        return pl.read_parquet(path) if path.exists() else None

    # --- outputs ------------------------------------------------------------------------

    def _outputs(self, dataset: str) -> Path:
        folder = self._dataset_dir(dataset) / "outputs"
        folder.mkdir(exist_ok=True, mode=0o700)
        return folder

    @staticmethod
    def entry_id(project: str, request_id: int, relpath: str) -> str:
        return f"{project}-r{request_id}-{hashlib.sha256(relpath.encode()).hexdigest()[:16]}"

    def record(self, info: EntryInfo, table: Table) -> None:
        """Store one output (replacing an earlier record of the same request and file)."""
        folder = self._outputs(info.dataset)
        members = table.grid.sort("cell", "idx")
        # Sorted indices delta-encode to about a byte per member (4 plain); row groups with
        # statistics let a read of a few cells skip the rest.
        target = folder / f"{info.entry}.members.parquet"
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        pq.write_table(members.to_arrow(), tmp, row_group_size=ROW_GROUP, use_dictionary=False, compression="zstd",
                       column_encoding={"cell": "DELTA_BINARY_PACKED", "idx": "DELTA_BINARY_PACKED"})
        os.replace(tmp, target)
        _atomic_parquet(table.cells_frame(), folder / f"{info.entry}.cells.parquet")
        tmp = folder / f".{info.entry}.json.tmp"
        tmp.write_text(json.dumps(info.__dict__), encoding="utf-8")
        os.replace(tmp, folder / f"{info.entry}.json")

    def entries(self, dataset: str) -> list[EntryInfo]:
        """Every output stored for ``dataset``."""
        found = []
        for path in sorted(self._outputs(dataset).glob("*.json")):
            try:
                found.append(EntryInfo(**json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, TypeError):
                continue  # a half-written or foreign file is no record
        return found

    def all_entries(self) -> list[EntryInfo]:
        if not self.root.exists():
            return []
        return [e for d in sorted(p.name for p in self.root.iterdir() if p.is_dir()) for e in self.entries(d)]

    def cells(self, info: EntryInfo) -> pl.DataFrame:
        return pl.read_parquet(self._outputs(info.dataset) / f"{info.entry}.cells.parquet")

    def members(self, info: EntryInfo, grid_cells: list[int]) -> pl.DataFrame:
        """(cell, idx) of these grid cells of a stored output."""
        path = self._outputs(info.dataset) / f"{info.entry}.members.parquet"
        return pl.scan_parquet(path).filter(pl.col("cell").is_in(grid_cells)).collect()

    def size_of(self, info: EntryInfo) -> int:
        folder = self._outputs(info.dataset)
        return sum((folder / f"{info.entry}{s}").stat().st_size for s in (".json", ".cells.parquet", ".members.parquet"))
