from pathlib import Path

import pytest

from enclave.disclosure import DisclosurePolicy, load_disclosure_policy
from enclave.errors import PolicyError

REPO = Path(__file__).resolve().parents[3]


def test_policy_file_in_repo_equals_guidance_defaults():
    assert load_disclosure_policy(REPO / "policies" / "disclosure.yaml") == DisclosurePolicy()


def test_policy_defaults_follow_guidance():
    p = DisclosurePolicy()
    assert (p.threshold, p.zeros_disclosive, p.nk_dominance.n, p.nk_dominance.k, p.p_percent, p.dof) == (10, True, 2, 0.9, 0.1, 10)
    assert p.rounding.base == 5 and p.negative_values == "review"


def test_policy_unknown_nested_key_is_one_line_error(tmp_path):
    path = tmp_path / "disclosure.yaml"
    path.write_text("nk_dominance:\n  n: 2\n  kk: 0.5\n")
    with pytest.raises(PolicyError) as err:
        load_disclosure_policy(path)
    assert "nk_dominance.kk" in str(err.value) and "\n" not in str(err.value)


def test_policy_unknown_file_type_rejected(tmp_path):
    path = tmp_path / "disclosure.yaml"
    path.write_text("checker:\n  allowed_types: [csv, exe]\n")
    with pytest.raises(PolicyError, match="exe"):
        load_disclosure_policy(path)


def test_policy_from_environment(tmp_path, monkeypatch):
    path = tmp_path / "d.yaml"
    path.write_text("threshold: 20\nversion: site-7\n")
    monkeypatch.setenv("ENCLAVE_DISCLOSURE_POLICY", str(path))
    assert load_disclosure_policy().threshold == 20
    monkeypatch.delenv("ENCLAVE_DISCLOSURE_POLICY")
    assert load_disclosure_policy() == DisclosurePolicy()


def test_policy_is_frozen():
    with pytest.raises(Exception):
        DisclosurePolicy().threshold = 3  # type: ignore[misc]
