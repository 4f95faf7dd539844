"""Cell-level decisions of enclave.safe.crosstab against acro on the same tables.

acro runs in its own venv (``scripts/install-acro.sh``) through ``scripts/acro_crosstab.py``.
Every intended difference is listed in docs/disclosure.md ("Differences from acro"); the
tables below avoid none of them silently: each test states which rules must agree.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from enclave.disclosure import DisclosurePolicy
from enclave.safe import crosstab

REPO = Path(__file__).resolve().parents[2]
ACRO_PYTHON = REPO / ".venv-acro" / "bin" / "python"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not ACRO_PYTHON.exists(), reason="acro is not installed: run scripts/install-acro.sh"),
]

POLICY = DisclosurePolicy()


def acro_cells(tmp_path: Path, frame: pd.DataFrame, *args: str) -> dict[str, set[tuple]]:
    data = tmp_path / "data.parquet"
    frame.to_parquet(data)
    done = subprocess.run([str(ACRO_PYTHON), str(REPO / "scripts" / "acro_crosstab.py"), str(data), *args],
                          capture_output=True, text=True, timeout=300, check=True)
    checks = json.loads(done.stdout.strip().splitlines()[-1])["checks"]
    return {name: {tuple(cell) for cell in cells} for name, cells in checks.items()}


def ours(frame: pd.DataFrame, *args: str) -> dict[str, set[tuple]]:
    index, columns = args[:2]
    values, aggfunc = (args[2], args[3]) if len(args) == 4 else (None, None)
    result = crosstab(frame, index=index, columns=columns, values=values, aggfunc=aggfunc, policy=POLICY)
    found: dict[str, set[tuple]] = {}
    for finding in result.findings:
        found.setdefault(finding.rule, set()).update(finding.cells)
    return found


def frames() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(11)
    rows = 3000
    base = pd.DataFrame({
        "year": rng.choice([2018, 2019, 2020, 2021], rows, p=[0.4, 0.3, 0.29, 0.01]),
        "grant_type": rng.choice(["A", "B", "C", "D", "E"], rows, p=[0.5, 0.3, 0.15, 0.04, 0.01]),
        "income": rng.lognormal(10, 1.2, rows),
    })
    dominated = base.copy()
    # a few giants in some cells; one tie of two equal giants
    dominated.loc[0, "income"] = 5e9
    dominated.loc[[1, 2], "income"] = 2e9
    dominated.loc[[1, 2], ["year", "grant_type"]] = [2019, "C"]
    return {"skewed": base, "dominated": dominated}


@pytest.mark.parametrize("name", ["skewed", "dominated"])
def test_acro_parity_counts(tmp_path, name):
    frame = frames()[name]
    theirs = acro_cells(tmp_path, frame, "year", "grant_type")
    mine = ours(frame, "year", "grant_type")
    # acro counts zeros under its threshold check; enclave reports them under "zeros"
    assert theirs["MinimumThresholdCheck"] | theirs.get("PresenceOfZeroCheck", set()) == mine.get("threshold", set()) | mine.get("zeros", set())
    assert mine.get("threshold", set()) == {c for c in theirs["MinimumThresholdCheck"]} - mine.get("zeros", set())


@pytest.mark.parametrize("name", ["skewed", "dominated"])
@pytest.mark.parametrize("aggfunc", ["mean", "sum"])
def test_acro_parity_dominance(tmp_path, name, aggfunc):
    frame = frames()[name]
    theirs = acro_cells(tmp_path, frame, "year", "grant_type", "income", aggfunc)
    mine = ours(frame, "year", "grant_type", "income", aggfunc)
    assert theirs["NKCheck"] == mine.get("nk_dominance", set())
    assert theirs["PPercentCheck"] == mine.get("p_percent", set())
    assert theirs["MinimumThresholdCheck"] == mine.get("threshold", set()) | mine.get("zeros", set())


def test_acro_parity_negative_values_need_review_in_both(tmp_path):
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"year": rng.choice([2020, 2021], 400), "grant_type": rng.choice(["A", "B"], 400),
                          "income": rng.normal(100, 10, 400)})
    frame.loc[0, ["year", "grant_type", "income"]] = [2020, "A", -50.0]
    theirs = acro_cells(tmp_path, frame, "year", "grant_type", "income", "mean")
    result = crosstab(frame, index="year", columns="grant_type", values="income", aggfunc="mean", policy=POLICY)
    review = {c for f in result.findings if f.status == "review" for c in f.cells}
    assert theirs["NKCheck"] == theirs["PPercentCheck"] == review == {(2020, "A")}
