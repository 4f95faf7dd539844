"""Comparing a new table's cells with the cells of earlier tables of the same dataset.

Two shown cells S (new) and R (earlier) are a *differencing pair* when they overlap
(|S ∩ R| ≥ 1) and their populations differ by at least one and fewer than ``threshold``
people: 1 ≤ |S Δ R| < threshold. Subtracting the two published counts then tells the
count of a group smaller than the threshold (for nested cells, exactly |S \\ R|). A cell
whose figure is not published (suppressed, and a total with a suppressed part and no
shown margin) takes part in no pair: its count is unknown, so nothing can be subtracted
from it. A cell equal to an earlier one (|S Δ R| = 0, a re-release) reveals nothing new.
When both cells were published with cell-key noise the difference is noise and no pair
is reported.

Fast path: |S Δ R| ≥ | |S| - |R| | (sizes, a sorted search), and ≥ the L1 distance of
the two cells' bucket sketches (``table.BUCKETS`` counts each); only pairs passing both
bounds have their members read and intersected (a polars join on the patient index).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import polars as pl

from enclave.disclosure.differencing.store import DifferencingStore, EntryInfo
from enclave.disclosure.differencing.table import BUCKETS, Table


@dataclass(frozen=True)
class Pair:
    """A new cell and an earlier cell whose difference is a small group of people."""

    cell: str
    n: int
    earlier: EntryInfo
    earlier_cell: str
    earlier_n: int
    only_new: int
    only_earlier: int

    @property
    def difference(self) -> int:
        return self.only_new + self.only_earlier


@dataclass(frozen=True)
class Stats:
    """How much work the comparison did (for the benchmark)."""

    earlier_cells: int
    size_candidates: int
    sketch_candidates: int


def _shown_cells(table: Table) -> np.ndarray:
    return np.flatnonzero(table.shown & (table.sizes > 0))


def compare(new: Table, earlier: Iterable[EntryInfo], store: DifferencingStore, threshold: int) -> tuple[list[Pair], Stats]:
    """Every differencing pair between ``new`` and the stored ``earlier`` outputs."""
    infos = list(earlier)
    frames = []
    for e, info in enumerate(infos):
        cells = store.cells(info).filter(pl.col("shown") & (pl.col("n") > 0))
        frames.append(cells.with_columns(pl.lit(e, dtype=pl.UInt32).alias("entry")))
    mine = _shown_cells(new)
    if not frames or mine.size == 0:
        return [], Stats(0, 0, 0)
    old = pl.concat(frames).sort("n")
    old_n = old["n"].to_numpy()
    old_sketch = old["sketch"].to_numpy().reshape(-1, BUCKETS).astype(np.int32)
    old_entry = old["entry"].to_numpy()
    old_cell = old["cell"].to_numpy()
    size_candidates = 0
    survivors: list[tuple[int, int]] = []  # (new cell, row of ``old``)
    for i in mine:
        n = int(new.sizes[i])
        lo, hi = np.searchsorted(old_n, n - threshold + 1, "left"), np.searchsorted(old_n, n + threshold - 1, "right")
        if hi <= lo:
            continue
        size_candidates += hi - lo
        l1 = np.abs(old_sketch[lo:hi] - new.sketches[i]).sum(axis=1)
        for row in np.flatnonzero(l1 < threshold) + lo:
            survivors.append((int(i), int(row)))
    pairs: list[Pair] = []
    if survivors:
        pairs = _exact(new, infos, store, old, survivors, old_entry, old_cell, threshold)
    return pairs, Stats(old.height, size_candidates, len(survivors))


def _exact(new: Table, infos: list[EntryInfo], store: DifferencingStore, old: pl.DataFrame,
           survivors: list[tuple[int, int]], old_entry: np.ndarray, old_cell: np.ndarray,
           threshold: int) -> list[Pair]:
    new_cells = sorted({i for i, _ in survivors})
    new_members = new.members(new_cells).rename({"cell": "new_cell"})
    by_entry: dict[int, list[tuple[int, int]]] = {}
    for i, row in survivors:
        by_entry.setdefault(int(old_entry[row]), []).append((i, row))
    labels, sizes, parts = old["label"].to_list(), old["n"].to_numpy(), old["parts"].to_list()
    pairs = []
    for e, todo in by_entry.items():
        info = infos[e]
        if info.perturbed and new.perturbed:
            continue
        rows = sorted({row for _, row in todo})
        wanted = pl.DataFrame({"old_row": [r for r in rows for _ in parts[r]],
                               "part": [p for r in rows for p in parts[r]]},
                              schema={"old_row": pl.UInt32, "part": pl.UInt32})
        grid = store.members(info, sorted(set(wanted["part"].to_list())))
        old_members = wanted.join(grid.rename({"cell": "part"}), on="part").select("old_row", "idx").unique()
        check = pl.DataFrame({"new_cell": [i for i, _ in todo], "old_row": [r for _, r in todo]},
                             schema={"new_cell": pl.UInt32, "old_row": pl.UInt32})
        common = (check.join(new_members, on="new_cell").join(old_members, on=["old_row", "idx"])
                  .group_by("new_cell", "old_row").len())
        shared = {(a, b): c for a, b, c in common.iter_rows()}
        for i, row in todo:
            inter = shared.get((i, row), 0)
            n, m = int(new.sizes[i]), int(sizes[row])
            difference = n + m - 2 * inter
            if inter >= 1 and 1 <= difference < threshold:
                pairs.append(Pair(new.labels[i], n, info, labels[row], m, n - inter, m - inter))
    return pairs
