"""The cell-key method and its p-table (policies/differencing.yaml): properties over many
populations (hypothesis), and the loader's refusal of p-tables that break them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from enclave.disclosure.differencing.cellkey import cell_key, perturbation, perturbed
from enclave.disclosure.differencing.policy import CELL_KEYS, DifferencingPolicy
from enclave.errors import PolicyError
from enclave.policy import PolicyContext, load_policy_file

REPO = Path(__file__).resolve().parents[3]
POLICY = load_policy_file(REPO / "policies" / "differencing.yaml", DifferencingPolicy)
PTABLE = POLICY.ptable
record_keys = st.lists(st.integers(0, CELL_KEYS - 1), min_size=0, max_size=300)


@settings(max_examples=400, deadline=None)
@given(count=st.integers(0, 5000), keys=record_keys)
def test_cellkey_perturbation_bounded_nonnegative_and_no_small_counts(count, keys):
    value = perturbed(PTABLE, count, np.array(keys, dtype=np.uint8))
    assert abs(value - count) <= PTABLE.max_perturbation
    assert value >= 0
    assert not 0 < value < PTABLE.smallest_published
    if count == 0:
        assert value == 0  # zeros are never perturbed, so no zero becomes a small count


@settings(max_examples=200, deadline=None)
@given(count=st.integers(1, 5000))
def test_cellkey_each_row_unbiased_over_all_cell_keys(count):
    changes = [perturbation(PTABLE, count, k) for k in range(CELL_KEYS)]
    assert sum(changes) == 0


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(st.integers(0, CELL_KEYS - 1), min_size=1, max_size=200), seed=st.integers(0, 2**32 - 1))
def test_cellkey_same_population_same_noise_in_any_order(keys, seed):
    shuffled = np.random.default_rng(seed).permutation(np.array(keys, dtype=np.uint8))
    count = len(keys)
    assert perturbed(PTABLE, count, np.array(keys, dtype=np.uint8)) == perturbed(PTABLE, count, shuffled)


def test_cellkey_unbiased_over_random_populations():
    # Record keys are uniform random, so the cell key of a population of a few people or
    # more is uniform and the mean change over many cells is near 0 (seeded for repeatability).
    rng = np.random.default_rng(2021)
    for count in (1, 2, 3, 4, 7, 25, 400):
        changes = [perturbation(PTABLE, count, cell_key(rng.integers(0, CELL_KEYS, count))) for _ in range(20000)]
        assert abs(float(np.mean(changes))) < 0.06, count


def test_cellkey_difference_of_nested_perturbed_cells_hides_the_true_difference():
    # Nested populations R ⊂ S with |S \ R| = k: the published difference takes several
    # values for each k, and each published difference is seen for several k.
    rng = np.random.default_rng(7)
    seen: dict[int, set[int]] = {}
    wrong = 0
    trials = 0
    for k in range(1, 6):
        for _ in range(3000):
            r = rng.integers(0, CELL_KEYS, 60)
            s = np.concatenate([r, rng.integers(0, CELL_KEYS, k)])
            observed = perturbed(PTABLE, len(s), s) - perturbed(PTABLE, len(r), r)
            seen.setdefault(observed, set()).add(k)
            wrong += observed != k
            trials += 1
    assert wrong / trials > 0.2  # the published difference is often not the true one
    common = [d for d, ks in seen.items() if 1 <= d <= 5]
    assert common and all(len(seen[d]) >= 3 for d in common)  # any small difference fits several truths


def _with_row(count: int, row: dict[int, int], tmp_path: Path) -> Path:
    data = yaml.safe_load((REPO / "policies" / "differencing.yaml").read_text())
    data["ptable"]["rows"][count] = row
    path = tmp_path / "differencing.yaml"
    path.write_text(yaml.safe_dump(data))
    shutil.copy(REPO / "policies" / "tiers.yaml", tmp_path / "tiers.yaml")  # per_tier names are checked against it
    return path


@pytest.mark.parametrize("count,row,problem", [
    (1, {-1: 170, 2: 86}, "biased"),
    (2, {-2: 88, 1: 166, 5: 2}, "exceeds max_perturbation"),
    (3, {-1: 128, 1: 128}, "below smallest_published"),
    (0, {0: 200, 3: 56}, "zeros are never perturbed"),
    (5, {0: 255}, "add up to 256"),
])
def test_cellkey_ptable_breaking_a_property_refused_on_load(count, row, problem, tmp_path):
    with pytest.raises(PolicyError) as info:
        path = _with_row(count, row, tmp_path)
        load_policy_file(path, DifferencingPolicy, context=PolicyContext(tmp_path))
    message = str(info.value)
    assert problem in message and "\n" not in message and "differencing.yaml" in message
