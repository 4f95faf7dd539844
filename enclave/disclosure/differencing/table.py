"""A checked table as populations: who is in each cell, margins and totals included.

The grid cells' members come from the replay (mapped to the store's dense patient
indices). Every row, column and the whole grid also count as cells: an explicit margin of
the file, or a total anyone can add up from the shown cells of its row (a total is
*shown* when the file shows it or shows every cell in it). Each cell keeps a sketch, its
members' counts in :data:`BUCKETS` buckets; the L1 distance of two sketches is a lower
bound of the two populations' symmetric difference, which lets the comparison skip
unrelated cells without reading their members.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

BUCKETS = 64
MARGIN = "All"


def buckets(idx: np.ndarray) -> np.ndarray:
    """The sketch bucket of each patient index (a multiplicative hash: spread, fixed)."""
    return ((idx.astype(np.uint64) * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)) >> np.uint64(26)


@dataclass
class Table:
    """Cells (grid first, then margins and totals) with sizes, visibility and members."""

    labels: list[str]
    sizes: np.ndarray  # int64, distinct patients per cell
    shown: np.ndarray  # bool: the cell's figure can be read from the output
    margin: np.ndarray  # bool: a margin or total (a union of grid cells)
    parts: list[list[int]]  # grid cells each cell is the union of
    sketches: np.ndarray  # (cells, BUCKETS) int32
    grid: pl.DataFrame  # cell (u32), idx (u32): the members of the grid cells
    perturbed: bool = False

    def members(self, cells: list[int]) -> pl.DataFrame:
        """(cell, idx) for these cells: unions of their grid cells, each patient once."""
        pairs = [(c, g) for c in cells for g in self.parts[c]]
        if not pairs:
            return pl.DataFrame(schema={"cell": pl.UInt32, "idx": pl.UInt32})
        wanted = pl.DataFrame({"cell": [p[0] for p in pairs], "part": [p[1] for p in pairs]},
                              schema={"cell": pl.UInt32, "part": pl.UInt32})
        return (wanted.join(self.grid.rename({"cell": "part"}), on="part")
                .select("cell", "idx").unique())

    def cells_frame(self) -> pl.DataFrame:
        """The cells as a frame (what the store keeps beside the members)."""
        return pl.DataFrame({
            "cell": np.arange(len(self.labels), dtype=np.uint32), "label": self.labels,
            "n": self.sizes.astype(np.int64), "shown": self.shown, "margin": self.margin,
            "parts": [list(map(int, p)) for p in self.parts],
            "sketch": self.sketches,
        }, schema_overrides={"parts": pl.List(pl.UInt32), "sketch": pl.Array(pl.Int32, BUCKETS)})


def _text(values: list[Any]) -> str:
    return "/".join(str(v) for v in values)


def build_table(cells: list[Any], members: list[np.ndarray | None], perturbed: bool = False) -> Table:
    """The table of ``cells`` (EvidenceCell-like: row, column, margin, suppressed) whose grid
    cells have ``members`` (sorted unique patient indices; None for margins)."""
    grid_ids = [i for i, c in enumerate(cells) if not c.margin]
    grid_cells = [cells[i] for i in grid_ids]
    shown_grid = [not c.suppressed for c in grid_cells]
    labels = [f"{_text(c.row)} / {_text(c.column)}" for c in grid_cells]
    parts: list[list[int]] = [[g] for g in range(len(grid_cells))]
    shown = list(shown_grid)
    is_margin = [False] * len(grid_cells)

    explicit: dict[tuple[str, str], bool] = {}
    for c in cells:
        if c.margin:
            key = ("row", _text(c.row)) if c.column == [MARGIN] and c.row != [MARGIN] else \
                  ("column", _text(c.column)) if c.row == [MARGIN] and c.column != [MARGIN] else ("all", "")
            explicit[key] = not c.suppressed
    groups: dict[tuple[str, str], list[int]] = {}
    for g, c in enumerate(grid_cells):
        groups.setdefault(("row", _text(c.row)), []).append(g)
        groups.setdefault(("column", _text(c.column)), []).append(g)
        groups.setdefault(("all", ""), []).append(g)
    seen: set[tuple[int, ...]] = set()
    for (kind, value), members_of in groups.items():
        if len(members_of) < 2 or tuple(members_of) in seen:
            continue  # the same population as its one cell, or as another total
        seen.add(tuple(members_of))
        total_shown = explicit.get((kind, value), False) or all(shown_grid[g] for g in members_of)
        labels.append(f"{value} / {MARGIN}" if kind == "row" else f"{MARGIN} / {value}" if kind == "column"
                      else f"{MARGIN} / {MARGIN}")
        parts.append(members_of)
        shown.append(total_shown)
        is_margin.append(True)

    arrays = [np.asarray(members[i] if members[i] is not None else [], dtype=np.uint32) for i in grid_ids]
    lengths = [len(a) for a in arrays]
    grid = pl.DataFrame({"cell": np.repeat(np.arange(len(arrays), dtype=np.uint32), lengths),
                         "idx": np.concatenate(arrays) if arrays else np.empty(0, dtype=np.uint32)},
                        schema={"cell": pl.UInt32, "idx": pl.UInt32})
    sizes = np.zeros(len(labels), dtype=np.int64)
    sketches = np.zeros((len(labels), BUCKETS), dtype=np.int32)
    top = max((int(a[-1]) for a in arrays if len(a)), default=-1)
    for c, members_of in enumerate(parts):
        if len(members_of) == 1:
            union = arrays[members_of[0]]
        else:  # a mask over the indices: linear, where sorting the concatenation is not
            mask = np.zeros(top + 1, dtype=bool)
            for g in members_of:
                mask[arrays[g]] = True
            union = np.flatnonzero(mask).astype(np.uint32)
        sizes[c] = len(union)
        sketches[c] = np.bincount(buckets(union).astype(np.int64), minlength=BUCKETS)
    return Table(labels, sizes, np.asarray(shown, dtype=bool), np.asarray(is_margin, dtype=bool), parts,
                 sketches, grid, perturbed)
