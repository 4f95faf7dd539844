"""Each rule checked against its definition, including the edge cases."""

from __future__ import annotations

import math

import polars as pl
import pytest

from enclave.disclosure import RULES, DisclosurePolicy, Verdict, evaluate, worst
from enclave.disclosure.policy import NKDominance, Rounding

POLICY = DisclosurePolicy()


def ranks(rule: str, policy: DisclosurePolicy = POLICY, **columns) -> list[int]:
    return RULES[rule].fn(pl.DataFrame(columns), policy)["status"].to_list()


def test_verdict_orders_by_severity_not_alphabet():
    assert Verdict.PASS < Verdict.REVIEW < Verdict.FAIL
    assert max(Verdict.FAIL, Verdict.PASS) is Verdict.FAIL
    assert worst([]) is Verdict.PASS
    assert worst(["pass", Verdict.REVIEW, "pass"]) is Verdict.REVIEW
    assert worst([Verdict.FAIL, Verdict.REVIEW]) is Verdict.FAIL


def test_threshold_fails_between_zero_and_threshold():
    assert ranks("threshold", n=[0, 1, 9, 10, 11]) == [0, 2, 2, 0, 0]


def test_threshold_follows_policy_value():
    assert ranks("threshold", DisclosurePolicy(threshold=3), n=[2, 3]) == [2, 0]


def test_zeros_fail_only_when_policy_holds_them_disclosive():
    assert ranks("zeros", n=[0, 1, 20]) == [2, 0, 0]
    assert ranks("zeros", DisclosurePolicy(zeros_disclosive=False), n=[0, 1]) == [0, 0]


def test_nk_dominance_boundary_is_inclusive():
    # top two = 90 of 100 -> exactly k: fails; 89 of 100 passes
    assert ranks("nk_dominance", n=[20, 20], total=[100.0, 100.0], top1=[60.0, 60.0], topn=[90.0, 89.0]) == [2, 0]


def test_nk_dominance_ties_count_both_tied_contributors():
    # 10 people with 10 each: top two are 20% -> pass; two tied giants dominate -> fail
    assert ranks("nk_dominance", n=[10, 12], total=[100.0, 1010.0], top1=[10.0, 500.0], topn=[20.0, 1000.0]) == [0, 2]


def test_nk_dominance_without_exact_topn_uses_upper_bound():
    # bound min(2*top1, total): 2*30=60 of 100 -> pass; 2*46=92 -> fail (stricter, never looser)
    assert ranks("nk_dominance", n=[20, 20], total=[100.0, 100.0], top1=[30.0, 46.0]) == [0, 2]


def test_nk_dominance_zero_total_passes_and_negatives_need_review():
    result = ranks("nk_dominance", n=[10, 10], total=[0.0, 50.0], top1=[0.0, 40.0], topn=[0.0, 45.0], negatives=[0, 1])
    assert result == [0, Verdict.REVIEW.rank]


def test_dominance_with_missing_values_follows_policy():
    kwargs = dict(n=[10], total=[100.0], top1=[5.0], topn=[10.0], missing=[2])
    assert ranks("nk_dominance", **kwargs) == [1]
    assert ranks("p_percent", DisclosurePolicy(missing_values=Verdict.FAIL), **kwargs) == [2]


def test_nk_policy_n_three():
    policy = DisclosurePolicy(nk_dominance=NKDominance(n=3, k=0.5))
    assert ranks("nk_dominance", policy, n=[20], total=[100.0], top1=[20.0], topn=[50.0]) == [2]


def test_p_percent_formula_and_boundary():
    # (total - top1 - top2) / top1: (100-50-40)/50 = 0.2 pass; (100-60-35)/60 = 0.083 fail
    assert ranks("p_percent", n=[20, 20], total=[100.0, 100.0], top1=[50.0, 60.0], top2=[40.0, 35.0]) == [0, 2]
    # exactly p: (100 - 50 - 45) / 50 = 0.1 -> not below p, passes
    assert ranks("p_percent", n=[20], total=[100.0], top1=[50.0], top2=[45.0]) == [0]


def test_p_percent_single_contributor_fails_and_all_zero_cell_passes():
    assert ranks("p_percent", n=[1, 12], total=[7.0, 0.0], top1=[7.0, 0.0], top2=[0.0, 0.0]) == [2, 0]


def test_p_percent_nan_total_is_not_a_pass_by_accident():
    result = ranks("p_percent", n=[10], total=[math.nan], top1=[5.0], top2=[1.0], missing=[1])
    assert result == [1]


def test_dof_rule():
    assert ranks("dof", dof=[9, 10, 500]) == [2, 0, 0]


def test_rounding_only_when_required():
    assert ranks("rounding", n=[7, 10]) == [0, 0]
    assert ranks("rounding", DisclosurePolicy(rounding=Rounding(required=True, base=5)), n=[7, 10, 0]) == [2, 0, 0]


def test_rules_without_their_inputs_do_not_apply():
    stats = pl.DataFrame({"n": [3]})
    assert RULES["nk_dominance"].fn(stats, POLICY)["status"].to_list() == [0]
    assert RULES["dof"].fn(stats, POLICY)["status"].to_list() == [0]


def test_evaluate_names_cells_and_treats_unknown_rules_as_review():
    stats = pl.DataFrame({"n": [3, 50, 0]})
    cells = [(2019, "A"), (2019, "B"), (2020, "A")]
    evaluation = evaluate(stats, POLICY, ["threshold", "zeros", "made_up"], cells)
    by_rule = {f.rule: f for f in evaluation.findings}
    assert by_rule["threshold"].cells == [(2019, "A")]
    assert by_rule["threshold"].status is Verdict.FAIL
    assert "n=3 < 10" in by_rule["threshold"].message
    assert by_rule["zeros"].cells == [(2020, "A")]
    assert by_rule["made_up"].status is Verdict.REVIEW
    assert evaluation.status is Verdict.FAIL
    assert evaluation.ranks["status"].to_list() == [2, 0, 2]


def test_every_registered_rule_has_the_one_signature():
    stats = pl.DataFrame({"n": [5], "total": [10.0], "top1": [9.0], "dof": [3]})
    for rule in RULES.values():
        result = rule.fn(stats, POLICY)
        assert result.columns == ["status", "reason"]
        assert result.height == 1
