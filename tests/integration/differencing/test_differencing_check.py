"""The differencing check on submit: every attack class flagged, safe look-alikes not.

Each case releases (puts under review) one table and submits a second whose cells are
each safe; the pair is flagged when some cell's population differs from an earlier
cell's by 1 to 9 people. How many people differ is computed from the data here, so the
tests say what they exercise.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from enclave.safe import crosstab, pivot_table, query

from .conftest import Enclave, differencing

REF = dt.date(2024, 12, 31)
AGE = ((pl.lit(REF) - pl.col("date_of_birth")).dt.total_days() // 365.25).cast(pl.Int64)


def cohort(max_age: int, min_age: int = 40):
    band = ((pl.col("age") // 20) * 20).cast(pl.Int64)
    return (query("demo", "patients").with_columns(age=AGE).filter(pl.col("age").is_between(min_age, max_age))
            .with_columns(age_band=pl.format("{}-{}", band, band + 19)).select("patient_id", "sex", "age", "age_band"))


def patients(enclave: Enclave) -> pl.DataFrame:
    return query("demo", "patients").with_columns(age=AGE).collect()


def top_age_with_few(frame: pl.DataFrame) -> int:
    """The youngest age from 60 on held by 1 to 9 people: bands ending a year apart differ by them."""
    counts = frame.group_by("age").len().filter(pl.col("len").is_between(1, 9) & (pl.col("age") >= 60)).sort("age")
    assert counts.height, "the synthetic data has no thinly held old age"
    return int(counts["age"][0])


def test_differencing_nested_age_bands_flagged(enclave: Enclave):
    age = top_age_with_few(patients(enclave))
    enclave.save("cardio", "by_band_a.csv", crosstab(cohort(age - 1), index="age_band", columns="sex"))
    _, first = enclave.submit("cardio", "by_band_a.csv")
    assert differencing(first["by_band_a.csv"]) is None
    enclave.save("cardio", "by_band_b.csv", crosstab(cohort(age), index="age_band", columns="sex"))
    rid, second = enclave.submit("cardio", "by_band_b.csv")
    result = second["by_band_b.csv"]
    assert result["evidence"]["status"] == "reproduced"
    finding = differencing(result)
    assert finding is not None and finding["status"] == "fail" and result["status"] == "fail"
    assert "outbox/by_band_a.csv of project cardio" in finding["message"]
    assert any(p["cell"].startswith("60-79") and 1 <= p["difference"] <= 9 and p["only_earlier"] == 0
               for p in finding["pairs"])


def test_differencing_shifted_date_window_flagged(enclave: Enclave):
    born = patients(enclave)["date_of_birth"]
    start, end = dt.date(1950, 1, 1), dt.date(1970, 1, 1)
    for days in range(1, 120):
        shift = dt.timedelta(days=days)
        moved = int(((born >= start) & (born < start + shift)).sum() + ((born >= end) & (born < end + shift)).sum())
        if 2 <= moved <= 8:
            break
    else:
        pytest.fail("no shift of the window moves 2 to 8 people")
    def window(a: dt.date, b: dt.date):
        return query("demo", "patients").filter(pl.col("date_of_birth").is_between(a, b, closed="left"))
    enclave.save("cardio", "w1.csv", crosstab(window(start, end), index="sex", columns="deprivation_decile", margins=True))
    enclave.submit("cardio", "w1.csv")
    enclave.save("cardio", "w2.csv", crosstab(window(start + shift, end + shift), index="sex",
                                              columns="deprivation_decile", margins=True))
    _, second = enclave.submit("cardio", "w2.csv")
    finding = differencing(second["w2.csv"])
    assert finding is not None
    # Overlapping, not nested: people only in the new window and people only in the old one.
    assert any(p["only_here"] > 0 and p["only_earlier"] > 0 for p in finding["pairs"])


def test_differencing_cohort_minus_one_category_flagged(enclave: Enclave):
    frame = patients(enclave)
    small = frame.group_by("ethnicity").len().filter(pl.col("len").is_between(1, 9)).sort("len")["ethnicity"][0]
    everyone = query("demo", "patients").filter(pl.col("date_of_birth") < dt.date(2000, 1, 1))
    enclave.save("cardio", "all.csv", crosstab(everyone, index="deprivation_decile", columns="sex"))
    enclave.submit("cardio", "all.csv")
    enclave.save("cardio", "minus.csv", crosstab(everyone.filter(pl.col("ethnicity") != small),
                                                 index="deprivation_decile", columns="sex"))
    _, second = enclave.submit("cardio", "minus.csv")
    finding = differencing(second["minus.csv"])
    assert finding is not None and all(p["only_here"] == 0 for p in finding["pairs"])


def test_differencing_same_cohort_across_two_projects_flagged(enclave: Enclave):
    age = top_age_with_few(patients(enclave))
    enclave.as_project("renal")
    enclave.save("renal", "bands.csv", crosstab(cohort(age - 1), index="age_band", columns="sex"))
    _, first = enclave.submit("renal", "bands.csv")
    assert first["bands.csv"]["evidence"]["status"] == "reproduced"
    enclave.as_project("cardio")
    enclave.save("cardio", "bands.csv", crosstab(cohort(age), index="age_band", columns="sex"))
    _, second = enclave.submit("cardio", "bands.csv")
    finding = differencing(second["bands.csv"])
    assert finding is not None
    assert {p["earlier"]["project"] for p in finding["pairs"]} == {"renal"}


def test_differencing_cell_recoverable_from_released_margin_flagged(enclave: Enclave):
    # The earlier table hides its small U cells but shows each band's total (a margin);
    # the new one counts F and M per band: total minus the new cell is the hidden U cell.
    group = cohort(110, 0)
    earlier = crosstab(group, index="age_band", columns="sex", margins=True)
    assert earlier.suppressed, "some U cells must be small enough to be hidden"
    enclave.save("cardio", "with_margins.csv", earlier)
    enclave.submit("cardio", "with_margins.csv")
    enclave.save("cardio", "no_u.csv", pivot_table(group.filter(pl.col("sex") != "U"), index="age_band"))
    _, second = enclave.submit("cardio", "no_u.csv")
    finding = differencing(second["no_u.csv"])
    assert finding is not None
    assert any(p["earlier_cell"].endswith("/ All") and p["only_here"] == 0 for p in finding["pairs"])


def test_differencing_unrelated_tables_not_flagged(enclave: Enclave):
    young = query("demo", "patients").filter(pl.col("date_of_birth") >= dt.date(1980, 1, 1))
    old = query("demo", "patients").filter(pl.col("date_of_birth") < dt.date(1960, 1, 1))
    enclave.save("cardio", "young.csv", crosstab(young, index="deprivation_decile", columns="sex", margins=True))
    enclave.submit("cardio", "young.csv")
    enclave.save("cardio", "old.csv", crosstab(old, index="deprivation_decile", columns="sex", margins=True))
    _, second = enclave.submit("cardio", "old.csv")
    assert second["old.csv"]["evidence"]["status"] == "reproduced"
    assert differencing(second["old.csv"]) is None


def test_differencing_rerelease_of_same_table_not_flagged(enclave: Enclave):
    table = crosstab(cohort(95), index="age_band", columns="sex", margins=True)
    enclave.save("cardio", "same.csv", table)
    enclave.submit("cardio", "same.csv")
    _, again = enclave.submit("cardio", "same.csv")  # the same bytes in a second request
    assert again["same.csv"]["evidence"]["status"] == "reproduced"
    assert differencing(again["same.csv"]) is None
