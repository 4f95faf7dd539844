"""Each evidence cell lands on the cell of the saved table that shows it (every table shape
enclave.safe writes: one or several index and column levels, margins, a statistic column)."""

from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd
import pytest

from enclave.disclosure import DisclosurePolicy
from enclave.safe import crosstab, pivot_table
from enclave.web.preview import FileView
from enclave.web.readmodels import EvidenceView, _cell_outcome, _place

POLICY = DisclosurePolicy()


def frame(rows: int = 500) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame({"sex": rng.choice(["F", "M"], rows), "band": rng.choice(["0-15", "16-64", "65+"], rows),
                         "region": rng.choice(["N", "S", "E", "W"], rows, p=[0.6, 0.3, 0.08, 0.02]),
                         "year": rng.choice([2021, 2022], rows), "cost": rng.gamma(2.0, 300.0, rows)})


RESULTS = {
    "one level, margins": lambda df: crosstab(df, index="region", columns="sex", margins=True, policy=POLICY),
    "two index levels, margins": lambda df: pivot_table(df, index=["region", "band"], columns="sex", margins=True, policy=POLICY),
    "two column levels, margins": lambda df: pivot_table(df, index="region", columns=["sex", "year"], margins=True, policy=POLICY),
    "a statistic column": lambda df: pivot_table(df, values="cost", index=["region", "band"], aggfunc="mean", policy=POLICY),
}


@pytest.mark.parametrize("shape", list(RESULTS))
def test_evidence_cells_land_where_the_saved_table_shows_them(shape: str):
    result = RESULTS[shape](frame())
    assert any(result.hidden), "the example must have suppressed cells"
    rows = list(csv.reader(io.StringIO(result.render().decode())))
    view = FileView(path="t.csv", kind="table", findings=[], check_status="pass", header=rows[0], rows=rows[1:])
    cells = result.evidence_cells()
    ev = EvidenceView(status="reproduced", reason="", summary="", figures=True,
                      cells=[_cell_outcome(c, POLICY, True) for c in cells])
    _place(ev, view, len(result.analysis["index"]))
    shown_cells = len(view.rows) * (len(view.header) - len(result.analysis["index"]))
    assert len(ev.at) == shown_cells  # every cell of the saved table has its evidence
    for (line, column), cell in ev.at.items():
        text = view.rows[line - 2][view.header.index(column)]
        assert (text == "") == cell.suppressed, (line, column, text, cell)
    assert ev.unplaced == []  # no hidden cell is left without a place
