"""crosstab / pivot_table: checked, suppressed tables from pandas and polars."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import polars as pl
import pytest

from enclave.disclosure import DisclosurePolicy, Verdict
from enclave.disclosure.evidence import read_evidence, sha256_file, sidecar_path
from enclave.disclosure.policy import Rounding
from enclave.errors import InvalidInput
from enclave.safe import crosstab, pivot_table

POLICY = DisclosurePolicy()


def grants(seed: int = 3, rows: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "year": rng.choice([2019, 2020, 2021], rows),
            "grant_type": rng.choice(["A", "B", "C"], rows),
            "income": rng.uniform(1000, 2000, rows),
        }
    )
    # three people with grant type D in 2019: a small cell, one of them very rich
    extra = pd.DataFrame({"year": [2019] * 3, "grant_type": ["D"] * 3, "income": [1e7, 1500.0, 1200.0]})
    return pd.concat([frame, extra], ignore_index=True)


def test_crosstab_counts_match_pandas_where_safe():
    df = grants()
    r = crosstab(df, index="year", columns="grant_type", policy=POLICY)
    expected = pd.crosstab(df["year"], df["grant_type"])
    assert r.status is Verdict.FAIL
    assert r.status == "fail"
    for year in expected.index:
        for gtype in ["A", "B", "C"]:
            assert r.table.loc[year, gtype] == expected.loc[year, gtype]
    assert pd.isna(r.table.loc[2019, "D"])


def test_crosstab_findings_name_cells_as_row_column_tuples():
    r = crosstab(grants(), index="year", columns="grant_type", policy=POLICY)
    by_rule = {f.rule: f for f in r.findings}
    assert by_rule["threshold"].cells == [(2019, "D")]
    # D in 2020 and 2021 is empty: zeros are disclosive by default
    assert set(by_rule["zeros"].cells) == {(2020, "D"), (2021, "D")}
    assert by_rule["zeros"].status is Verdict.FAIL


def test_crosstab_polars_and_pandas_give_the_same_table():
    df = grants()
    a = crosstab(df, index="year", columns="grant_type", values="income", aggfunc="mean", policy=POLICY)
    b = crosstab(pl.from_pandas(df), index="year", columns="grant_type", values="income", aggfunc="mean", policy=POLICY)
    pd.testing.assert_frame_equal(a.table, b.table)
    assert a.status == b.status


@pytest.mark.parametrize("aggfunc", ["mean", "sum", "median", "std", "count", "min", "max"])
def test_crosstab_aggfuncs_match_pandas_on_safe_cells(aggfunc):
    df = grants()
    r = crosstab(df, index="year", columns="grant_type", values="income", aggfunc=aggfunc, policy=POLICY)
    expected = pd.crosstab(df["year"], df["grant_type"], values=df["income"], aggfunc=aggfunc)
    for year in expected.index:
        for gtype in ["A", "B", "C"]:
            assert r.table.loc[year, gtype] == pytest.approx(expected.loc[year, gtype])


def test_crosstab_dominated_cell_fails_nk_and_p_percent():
    df = pd.DataFrame({"year": [2020] * 12 + [2021] * 12, "g": ["A"] * 24,
                       "income": [1e6] + [10.0] * 11 + [100.0] * 12})
    r = crosstab(df, index="year", columns="g", values="income", aggfunc="sum", policy=POLICY)
    rules = {f.rule: f.cells for f in r.findings}
    assert rules["nk_dominance"] == [(2020, "A")]
    assert rules["p_percent"] == [(2020, "A")]
    assert pd.isna(r.table.loc[2020, "A"]) and r.table.loc[2021, "A"] == pytest.approx(1200.0)


def test_crosstab_negative_values_need_review_not_suppression():
    df = pd.DataFrame({"year": [2020] * 15, "g": ["A"] * 15, "change": [-5.0] + [3.0] * 14})
    r = crosstab(df, index="year", columns="g", values="change", aggfunc="mean", policy=POLICY)
    assert r.status is Verdict.REVIEW
    assert r.table.loc[2020, "A"] == pytest.approx((14 * 3 - 5) / 15)


def test_crosstab_missing_values_need_review():
    df = pd.DataFrame({"year": [2020] * 15, "g": ["A"] * 15, "x": [np.nan] + [3.0] * 14})
    r = crosstab(df, index="year", columns="g", values="x", aggfunc="mean", policy=POLICY)
    assert r.status is Verdict.REVIEW
    assert {f.rule for f in r.findings} == {"nk_dominance", "p_percent"}


def test_crosstab_margins_hide_enough_to_protect_small_cell():
    df = grants()
    r = crosstab(df, index="year", columns="grant_type", margins=True, policy=POLICY)
    table = r.table
    assert table.loc["All", "All"] == len(df)
    # the 2019 row total is shown, so at least one more 2019 cell must be hidden
    row = table.loc[2019, ["A", "B", "C", "D"]]
    assert row.isna().sum() >= 2 or pd.isna(table.loc[2019, "All"])
    assert r.secondary


def test_crosstab_rounding_policy_rounds_counts():
    policy = DisclosurePolicy(rounding=Rounding(required=True, base=5))
    r = crosstab(grants(), index="year", columns="grant_type", policy=policy)
    shown = r.table.to_numpy(dtype="float64", na_value=np.nan)
    assert np.all(np.isnan(shown) | (shown % 5 == 0))


def test_pivot_table_several_index_columns():
    df = grants().assign(region=lambda d: np.where(d.index % 2 == 0, "north", "south"))
    r = pivot_table(df, values="income", index=["year", "region"], columns="grant_type", aggfunc="mean", policy=POLICY)
    assert r.table.index.names == ["year", "region"]
    expected = pd.pivot_table(df, values="income", index=["year", "region"], columns="grant_type", aggfunc="mean")
    assert r.table.loc[(2020, "north"), "A"] == pytest.approx(expected.loc[(2020, "north"), "A"])
    assert all(isinstance(row, tuple) and len(row) == 2 for row, _ in r.findings[0].cells)


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda df: crosstab(df, index="nope", columns="grant_type"), "no column"),
        (lambda df: crosstab(df, index="year", columns="grant_type", values="income"), "together"),
        (lambda df: crosstab(df, index="year", columns="grant_type", values="income", aggfunc="mode"), "not supported"),
        (lambda df: crosstab([1, 2], index="year", columns="grant_type"), "DataFrame"),
        (lambda df: crosstab(df.assign(label="x"), index="year", columns="grant_type", values="label", aggfunc="mean"), "not numeric"),
        (lambda df: crosstab(df, index="year", columns="grant_type", values="grant_type", aggfunc="mean"), "label column"),
    ],
)
def test_crosstab_bad_input_is_one_clear_line(call, words):
    with pytest.raises(InvalidInput) as err:
        call(grants())
    assert words in str(err.value) and "\n" not in str(err.value)


def test_save_writes_table_and_matching_evidence(tmp_path, monkeypatch):
    monkeypatch.setenv("ENCLAVE_DATASETS", json.dumps({"grants": "v3"}))
    r = crosstab(grants(), index="year", columns="grant_type", values="income", aggfunc="mean", policy=POLICY)
    out = r.save(tmp_path / "income_by_year.csv")
    evidence = read_evidence(sidecar_path(out))
    assert evidence.output.sha256 == sha256_file(out)
    assert evidence.policy_version == POLICY.version
    assert [d.model_dump() for d in evidence.datasets] == [{"name": "grants", "version": "v3", "view_sha256": None}]
    small = next(c for c in evidence.cells if c.row == [2019] and c.column == ["D"])
    assert small.n == 3 and small.suppressed and small.verdicts["threshold"] == "fail"
    assert small.nk_share == pytest.approx((1e7 + 1500) / (1e7 + 2700))
    text = out.read_text()
    assert text.splitlines()[0] == "year,A,B,C,D"
    assert "2019," in text and text.splitlines()[1].endswith(",")  # the suppressed cell is blank


def test_save_refuses_other_formats(tmp_path):
    r = crosstab(grants(), index="year", columns="grant_type", policy=POLICY)
    with pytest.raises(InvalidInput, match=".csv or .tsv"):
        r.save(tmp_path / "t.xlsx")


def test_crosstab_one_row_group_fails_every_rule_that_applies():
    df = pd.DataFrame({"year": [2020] + [2021] * 20, "g": ["A"] * 21, "income": [500.0] + [10.0] * 20})
    r = crosstab(df, index="year", columns="g", values="income", aggfunc="max", policy=POLICY)
    failing = {f.rule for f in r.findings if (2020, "A") in f.cells}
    assert failing == {"threshold", "nk_dominance", "p_percent"}
    assert pd.isna(r.table.loc[2020, "A"]) and r.table.loc[2021, "A"] == 10.0
