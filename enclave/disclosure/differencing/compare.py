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
bounds have their members read and intersected: a mask over the patient index per new
cell, gathered at each earlier cell's members (linear; polars joins and numpy's sorted
set operations measured 10 to 50 times slower here, see benchmarks/differencing.py).
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
        pairs = _exact(new, infos, store, old, survivors, old_entry, threshold)
    return pairs, Stats(old.height, size_candidates, len(survivors))


def _split(grid: pl.DataFrame) -> dict[int, np.ndarray]:
    """(cell, idx) sorted by cell and idx -> cell -> its sorted indices."""
    cells, idx = grid["cell"].to_numpy(), grid["idx"].to_numpy()
    if not len(cells):
        return {}
    starts = np.flatnonzero(np.r_[True, cells[1:] != cells[:-1]])
    ends = np.r_[starts[1:], len(cells)]
    return {int(cells[a]): idx[a:b] for a, b in zip(starts, ends)}


def _union(arrays: list[np.ndarray]) -> np.ndarray:
    if len(arrays) == 1:
        return arrays[0]
    top = max((int(a[-1]) for a in arrays if len(a)), default=-1)
    mask = np.zeros(top + 1, dtype=bool)
    for a in arrays:
        mask[a] = True
    return np.flatnonzero(mask)


def _exact(new: Table, infos: list[EntryInfo], store: DifferencingStore, old: pl.DataFrame,
           survivors: list[tuple[int, int]], old_entry: np.ndarray, threshold: int) -> list[Pair]:
    """Intersect the surviving pairs' populations: per new cell a mask over the patient
    index, per earlier cell a gather of its members through it (linear in their size)."""
    new_grid = _split(new.grid)
    empty = np.empty(0, dtype=np.uint32)
    by_entry: dict[int, list[tuple[int, int]]] = {}
    for i, row in survivors:
        by_entry.setdefault(int(old_entry[row]), []).append((i, row))
    labels, sizes, parts = old["label"].to_list(), old["n"].to_numpy(), old["parts"].to_list()
    shared: dict[tuple[int, int], int] = {}
    old_members: dict[int, np.ndarray] = {}
    for e, todo in by_entry.items():
        if infos[e].perturbed and new.perturbed:
            continue
        needed = sorted({p for _, row in todo for p in parts[row]})
        grid = _split(store.members(infos[e], needed))
        for _, row in todo:
            if row not in old_members:
                old_members[row] = _union([grid.get(p, empty) for p in parts[row]])
    top = max([0] + [int(a[-1]) + 1 for a in new_grid.values() if len(a)]
              + [int(a[-1]) + 1 for a in old_members.values() if len(a)])
    by_new: dict[int, list[int]] = {}
    for i, row in survivors:
        if row in old_members:
            by_new.setdefault(i, []).append(row)
    mask = np.zeros(top + 1, dtype=bool)
    for i, rows in sorted(by_new.items()):
        members = [new_grid.get(g, empty) for g in new.parts[i]]
        for a in members:
            mask[a] = True
        for row in rows:
            shared[(i, row)] = int(np.count_nonzero(mask[old_members[row]]))
        for a in members:
            mask[a] = False
    pairs = []
    for (i, row), inter in shared.items():
        n, m = int(new.sizes[i]), int(sizes[row])
        difference = n + m - 2 * inter
        if inter >= 1 and 1 <= difference < threshold:
            pairs.append(Pair(new.labels[i], n, infos[int(old_entry[row])], labels[row], m, n - inter, m - inter))
    return pairs
