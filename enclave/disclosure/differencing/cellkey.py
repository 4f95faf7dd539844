"""The cell-key method: the same people always get the same noise.

Every patient has a fixed record key r in 0..255 (``keys.fingerprints``, on the host).
A cell's key is the sum of its contributors' record keys modulo 256:
``ckey = (Σ r_i) mod 256``. Its published count is ``n + p(n, ckey)``, where the p-table
(``policies/differencing.yaml``) lists for each count ``n`` how many of the 256 cell keys
get each perturbation; the cell keys are dealt out in order of the perturbation (the
smallest first). Because the record keys are fixed and random, a cell key is uniform on
0..255 for any population of a few people or more, so the noise follows the p-table's row
(unbiased, bounded); and because it depends only on who is in the cell, the same
population gets the same noise in every table, so repeating a query yields nothing new.
"""

from __future__ import annotations

import numpy as np

from enclave.disclosure.differencing.policy import CELL_KEYS, PTable


def cell_key(record_keys: np.ndarray) -> int:
    """The cell key of a population with these record keys."""
    return int(np.asarray(record_keys, dtype=np.uint64).sum() % CELL_KEYS)


def perturbation(ptable: PTable, count: int, ckey: int) -> int:
    """The change the p-table gives a cell of ``count`` with cell key ``ckey``."""
    if count <= 0:
        return 0
    if not 0 <= ckey < CELL_KEYS:
        raise ValueError(f"cell key {ckey} outside 0..{CELL_KEYS - 1}")
    position = 0
    for change, keys in sorted(ptable.row(count).items()):
        position += keys
        if ckey < position:
            return change
    raise AssertionError("a checked p-table row uses every cell key")


def perturbed(ptable: PTable, count: int, record_keys: np.ndarray) -> int:
    """``count`` as published for a cell whose contributors have ``record_keys``."""
    return count + perturbation(ptable, count, cell_key(record_keys))
