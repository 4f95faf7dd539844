"""Property: no suppressed cell of a table with margins can be worked out from what is shown.

A suppressed cell is recoverable exactly when its unit vector lies in the row space of the
equations the shown margins give over the hidden cells; the test decides that with ranks,
independently of the bridge argument the implementation uses.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enclave.disclosure import DisclosurePolicy
from enclave.safe import crosstab
from enclave.safe.suppression import protect

POLICY = DisclosurePolicy()


def recoverable(hidden: np.ndarray) -> list[tuple[int, int]]:
    """Hidden cells of an (R+1)x(C+1) grid with margins that the shown values determine."""
    rows, cols = hidden.shape
    unknowns = [tuple(map(int, rc)) for rc in zip(*np.nonzero(hidden))]
    if not unknowns:
        return []
    position = {cell: k for k, cell in enumerate(unknowns)}
    equations = []
    for r in range(rows):  # sum of inner cells of row r minus its margin = 0
        eq = np.zeros(len(unknowns))
        for c in range(cols):
            if (r, c) in position:
                eq[position[(r, c)]] = -1.0 if c == cols - 1 else 1.0
        equations.append(eq)
    for c in range(cols):
        eq = np.zeros(len(unknowns))
        for r in range(rows):
            if (r, c) in position:
                eq[position[(r, c)]] = -1.0 if r == rows - 1 else 1.0
        equations.append(eq)
    system = np.array(equations)
    base_rank = np.linalg.matrix_rank(system)
    found = []
    for cell, k in position.items():
        unit = np.zeros(len(unknowns))
        unit[k] = 1.0
        if np.linalg.matrix_rank(np.vstack([system, unit])) == base_rank:
            found.append(cell)
    return found


grids = st.integers(2, 5).flatmap(
    lambda r: st.integers(2, 5).flatmap(
        lambda c: st.lists(st.lists(st.integers(0, 40), min_size=c, max_size=c), min_size=r, max_size=r)
    )
)


@settings(max_examples=300, deadline=None)
@given(grids)
def test_protect_leaves_no_hidden_cell_recoverable(inner):
    inner = np.array(inner, dtype=float)
    full = np.zeros((inner.shape[0] + 1, inner.shape[1] + 1))
    full[:-1, :-1] = inner
    full[:-1, -1] = inner.sum(axis=1)
    full[-1, :-1] = inner.sum(axis=0)
    full[-1, -1] = inner.sum()
    primary = full < POLICY.threshold
    hidden = protect(full, primary)
    assert np.all(hidden[primary])
    assert recoverable(hidden) == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grids)
def test_crosstab_with_margins_never_lets_small_cell_be_recovered(inner):
    rows = [(r, c) for r, line in enumerate(inner) for c, count in enumerate(line) for _ in range(count)]
    if not rows:
        return
    df = pd.DataFrame(rows, columns=["r", "c"])
    result = crosstab(df, index="r", columns="c", margins=True, policy=POLICY)
    shown = result.table.to_numpy(dtype="float64", na_value=np.nan)
    hidden = np.isnan(shown)
    truth = pd.crosstab(df["r"], df["c"], margins=True).to_numpy(dtype="float64")
    # every shown cell is the true count, and no shown cell is under the threshold or zero
    assert np.array_equal(shown[~hidden], truth[~hidden])
    assert np.all(shown[~hidden] >= POLICY.threshold)
    assert recoverable(hidden) == []


def test_oracle_sees_recoverable_patterns():
    lone = np.zeros((3, 3), dtype=bool)
    lone[0, 0] = True
    assert recoverable(lone) == [(0, 0)]
    square = lone.copy()
    square[0, 1] = square[1, 0] = square[1, 1] = True
    assert recoverable(square) == []
    # two protected squares joined by one more hidden cell: that cell is a bridge
    bridged = np.zeros((5, 5), dtype=bool)
    bridged[0:2, 0:2] = True
    bridged[2:4, 2:4] = True
    bridged[1, 2] = True
    assert recoverable(bridged) == [(1, 2)]
    assert recoverable(protect(np.ones((5, 5)), bridged)) == []
