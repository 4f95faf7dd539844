from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from enclave.disclosure import DisclosurePolicy, Verdict
from enclave.errors import InvalidInput
from enclave.safe import describe, histogram, logit, ols

POLICY = DisclosurePolicy()


def people(rows: int = 200, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(20, 80, rows)
    return pd.DataFrame({"age": age, "income": 1000 + 30 * age + rng.normal(0, 50, rows),
                         "smoker": (rng.random(rows) < 0.4).astype(int)})


def test_describe_matches_pandas_and_never_shows_extremes():
    df = people()
    r = describe(df, ["age", "income"], policy=POLICY)
    assert r.status is Verdict.PASS
    assert "min" not in r.table.columns and "max" not in r.table.columns
    assert r.table.loc["income", "mean"] == pytest.approx(df["income"].mean())
    assert r.table.loc["age", "50%"] == pytest.approx(df["age"].median())
    assert r.table.loc["age", "count"] == 200


def test_describe_suppresses_column_with_too_few_values():
    df = people(rows=6)
    r = describe(pl.from_pandas(df), ["income"], policy=POLICY)
    assert r.status is Verdict.FAIL
    assert r.table.loc["income"].isna().all()
    assert ("income", "count") in r.findings[0].cells


def test_histogram_counts_and_suppresses_small_bins():
    df = pd.DataFrame({"x": [1.0] * 3 + [15.0] * 20 + [25.0] * 30})
    r = histogram(df, "x", bins=3, range=(0, 30), policy=POLICY)
    assert r.table["count"].tolist()[1:] == [20, 30]
    assert pd.isna(r.table["count"].iloc[0])
    assert r.status is Verdict.FAIL


def test_histogram_without_range_needs_review_for_extreme_edges():
    r = histogram(people(), "age", bins=4, policy=POLICY)
    assert r.status is Verdict.REVIEW
    assert [f.rule for f in r.findings] == ["bin_edges"]


def test_ols_passes_with_enough_dof_and_matches_statsmodels():
    df = people()
    r = ols(df, "income ~ age", policy=POLICY)
    assert r.status is Verdict.PASS
    assert r.table.loc["age", "coef"] == pytest.approx(30, rel=0.05)
    assert r.extra["summary"] and r.analysis["dof"] == 198


def test_ols_with_too_few_dof_fails_and_hides_coefficients():
    r = ols(people(rows=11), "income ~ age + smoker", policy=POLICY)
    assert r.analysis["dof"] == 8
    assert r.status is Verdict.FAIL and r.findings[0].rule == "dof"
    assert r.table.isna().all().all() and r.extra["summary"] is None


def test_logit_dof_check():
    df = people()
    assert logit(df, "smoker ~ age", policy=POLICY).status is Verdict.PASS


def test_regression_bad_formula_is_one_line():
    with pytest.raises(InvalidInput, match="column names"):
        ols(people(), "income ~ nonexistent", policy=POLICY)
    with pytest.raises(InvalidInput, match="outcome ~"):
        ols(people(), "income", policy=POLICY)
