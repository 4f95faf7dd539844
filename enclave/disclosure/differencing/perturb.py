"""Applying the cell-key method to a reproduced count table (host side).

The replay reproduced the table and named each grid cell's patients; the host knows every
patient's record key. Each shown count (margins included) becomes ``n + p(n, ckey)``
(``cellkey``), with ckey the sum of the record keys of the cell's distinct patients mod
256. The file is rewritten cell by cell: row labels and header as they were, hidden cells
still empty. Anything the host cannot place (a label it does not find) refuses the whole
table: a table that should carry noise never leaves without it.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from enclave.disclosure.differencing.cellkey import perturbed
from enclave.disclosure.differencing.policy import PTable

MARGIN = "All"


class CannotPerturb(Exception):
    """The table cannot be given cell-key noise (the reason is the message)."""


@dataclass(frozen=True)
class Perturbed:
    data: bytes
    shown: int
    changed: int


def _column_text(column: list[Any]) -> str:
    return " | ".join(str(p) for p in column if str(p)) if len(column) > 1 else str(column[0])


def cell_parts(cells: list[Any]) -> list[list[int]]:
    """Per evidence cell, the grid cells (indices among non-margin cells) it is the union of."""
    grid = [c for c in cells if not c.margin]
    out = []
    g = 0
    for c in cells:
        if not c.margin:
            out.append([g])
            g += 1
        elif c.row == [MARGIN] or (c.row and c.row[0] == MARGIN and all(v == "" for v in c.row[1:])):
            out.append([i for i, x in enumerate(grid) if c.column == [MARGIN] or x.column == c.column])
        else:
            out.append([i for i, x in enumerate(grid) if x.row == c.row])
    return out


def perturb_counts(data: bytes, separator: str, analysis: dict[str, Any], cells: list[Any],
                   idx: list[np.ndarray | None], rkeys: list[np.ndarray | None], ptable: PTable,
                   rounding_base: int | None) -> Perturbed:
    """``data`` (the table's bytes) with every shown count given cell-key noise.

    ``idx``/``rkeys``: per evidence cell, its patients' indices and record keys (None for
    margins, which are unions of the grid cells)."""
    if analysis.get("values") is not None and analysis.get("aggfunc") != "count":
        raise CannotPerturb("the cell-key method applies to count tables only")
    n_index = len(analysis.get("index") or [])
    try:
        rows = list(csv.reader(io.StringIO(data.decode("utf-8")), delimiter=separator))
    except (UnicodeDecodeError, csv.Error):
        raise CannotPerturb("the table cannot be read back") from None
    if not rows or n_index < 1:
        raise CannotPerturb("the table has no header or no row labels")
    header = rows[0]
    columns = {name: j for j, name in enumerate(header) if j >= n_index}
    lines = {tuple(r[:n_index]): i for i, r in enumerate(rows[1:], start=1)}
    grid_idx = [a for c, a in zip(cells, idx) if not c.margin]
    grid_rk = [r for c, r in zip(cells, rkeys) if not c.margin]
    synthetic = not analysis.get("columns")
    shown = changed = 0
    for cell, parts in zip(cells, cell_parts(cells)):
        if cell.suppressed or cell.n is None:
            continue
        if synthetic and cell.margin and cell.column == [MARGIN] and cell.row != [MARGIN]:
            continue  # a one-column table shows no row totals
        row_key = tuple(str(v) for v in cell.row) if len(cell.row) == n_index else \
            tuple([str(cell.row[0])] + [""] * (n_index - 1))
        line, column = lines.get(row_key), columns.get(_column_text(cell.column))
        if line is None or column is None:
            raise CannotPerturb(f"cell {'/'.join(map(str, cell.row))} x {_column_text(cell.column)} is not where "
                                "the table should hold it")
        if rows[line][column] == "":
            continue
        members = [(grid_idx[g], grid_rk[g]) for g in parts if grid_idx[g] is not None]
        if len(members) == 1:
            keys = members[0][1]
        else:
            pairs = np.concatenate([np.stack([m[0].astype(np.int64), m[1].astype(np.int64)]) for m in members], axis=1) \
                if members else np.empty((2, 0), dtype=np.int64)
            _, first = np.unique(pairs[0], return_index=True)
            keys = pairs[1][first]
        value = perturbed(ptable, int(cell.n), keys)
        if rounding_base:
            value = int(np.floor(value / rounding_base + 0.5) * rounding_base)
        shown += 1
        if str(value) != rows[line][column]:
            changed += 1
        rows[line][column] = str(value)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=separator, lineterminator="\n")
    writer.writerows(rows)
    return Perturbed(out.getvalue().encode("utf-8"), shown, changed)
