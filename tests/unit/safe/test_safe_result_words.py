"""SafeResult says both verdicts in words: the raw table's and the saved table's."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from enclave.disclosure import DisclosurePolicy, Verdict
from enclave.disclosure.evidence import EvidenceCell
from enclave.disclosure.outcome import CellVerdicts, table_outcome
from enclave.safe import crosstab, histogram, ols

POLICY = DisclosurePolicy()
BARE_FAIL = re.compile(r"(^|\n)\s*(status: )?fail\b")


def grants(rows: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"year": rng.choice([2019, 2020, 2021], rows), "grant_type": rng.choice(["A", "B", "C"], rows)})
    # three grants of type D in 2019 (a cell below 10); none in 2020 and 2021 (two zeros)
    extra = pd.DataFrame({"year": [2019] * 3, "grant_type": ["D"] * 3})
    return pd.concat([frame, extra], ignore_index=True)


def test_safe_result_summary_says_raw_fails_and_saved_is_safe():
    r = crosstab(grants(), index="year", columns="grant_type", policy=POLICY)
    assert r.status is Verdict.FAIL  # the raw table, as computed
    assert r.saved_status is Verdict.PASS  # what save writes: every failing cell suppressed
    assert r.summary == "1 cell below 10 and 2 zeros suppressed: the saved table is safe."
    assert str(r) == r.summary


def test_safe_result_repr_never_prints_a_bare_fail_for_a_table_that_passes_once_saved():
    r = crosstab(grants(), index="year", columns="grant_type", margins=True, policy=POLICY)
    assert r.saved_status is Verdict.PASS
    for shown in (repr(r), r._repr_html_(), str(r)):
        assert not BARE_FAIL.search(shown), shown
        assert "the saved table is safe" in shown
    assert "raw table (as computed): fail · saved table (after suppression): pass" in repr(r)
    # margins: secondary suppression is said too, and the hidden cells read "suppressed"
    assert re.search(r"\d+ more cells? hidden to protect them", r.summary)
    assert "suppressed" in repr(r).split("\n", 3)[-1]


def test_safe_result_summary_counts_follow_the_policy_threshold():
    r = crosstab(grants(), index="year", columns="grant_type", policy=DisclosurePolicy(threshold=250))
    below = sum(1 for c in r.evidence_cells() if c.verdicts.get("threshold") is Verdict.FAIL)
    assert below > 1
    assert r.summary.startswith(f"{below} cells below 250 and 2 zeros suppressed")


def test_safe_result_summary_of_a_clean_table_and_of_a_review():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.choice(["x", "y"], 400), "b": rng.choice(["u", "v"], 400), "v": rng.normal(50, 5, 400)})
    clean = crosstab(df, index="a", columns="b", policy=POLICY)
    assert clean.status is Verdict.PASS and clean.saved_status is Verdict.PASS
    assert clean.summary == "No cell fails the rules (4 cells checked): the saved table is safe."
    edges = histogram(df, "v", bins=4, policy=POLICY)  # edges from the data: a person must judge them
    assert edges.saved_status is Verdict.REVIEW
    assert edges.summary.endswith("the saved table needs a reviewer's judgement.")
    assert "bin edges: review" in edges.summary


def test_safe_result_model_with_too_few_degrees_of_freedom_is_suppressed_in_words():
    df = pd.DataFrame({"y": [1.0, 2.0, 2.5, 4.0], "x": [0.0, 1.0, 2.0, 3.0]})
    r = ols(df, "y ~ x", policy=POLICY)
    assert r.status is Verdict.FAIL
    assert r.summary == "1 model with too few residual degrees of freedom suppressed: the saved table is safe."


def _cell(status: Verdict, suppressed: bool, **verdicts: Verdict) -> CellVerdicts:
    return CellVerdicts(verdicts=verdicts, status=status, suppressed=suppressed)


def test_table_outcome_a_failing_cell_shown_makes_the_saved_table_fail():
    cells = [_cell(Verdict.FAIL, False, threshold=Verdict.FAIL), _cell(Verdict.FAIL, True, zeros=Verdict.FAIL),
             _cell(Verdict.PASS, False, threshold=Verdict.PASS)]
    outcome = table_outcome(cells, 10)
    assert (outcome.raw, outcome.saved, outcome.exposed) == (Verdict.FAIL, Verdict.FAIL, 1)
    assert outcome.sentence() == "1 cell below 10 and 1 zero fail the rules and 1 cell of them is shown: the saved table is not safe."


def test_table_outcome_reads_evidence_cells_and_fails_closed_on_nothing():
    cells = [EvidenceCell(row=[1], column=["a"], n=3, verdicts={"threshold": Verdict.FAIL}, status=Verdict.FAIL, suppressed=True),
             EvidenceCell(row=[1], column=["b"], n=30, verdicts={"threshold": Verdict.PASS}, status=Verdict.PASS, suppressed=True)]
    outcome = table_outcome(cells, 10)
    assert (outcome.raw, outcome.saved, outcome.protective) == (Verdict.FAIL, Verdict.PASS, 1)
    assert table_outcome([], 10).saved is Verdict.REVIEW
