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


def test_policy_mounted_site_file_wins_over_the_environment(tmp_path, monkeypatch):
    # What a workspace container sees: the site's copy mounted; a researcher's own file
    # named in the environment is not used where the site's is mounted.
    site = tmp_path / "etc-enclave-policies"
    site.mkdir()
    (site / "disclosure.yaml").write_text("threshold: 15\nversion: site-1\n")
    own = tmp_path / "mine.yaml"
    own.write_text("threshold: 1\nversion: mine\n")
    monkeypatch.setenv("ENCLAVE_DISCLOSURE_POLICY", str(own))
    assert load_disclosure_policy(site=site / "disclosure.yaml").version == "site-1"
    # An explicit path is still what the caller asked for (the replay refuses its tables).
    assert load_disclosure_policy(own, site=site / "disclosure.yaml").version == "mine"
    # Nothing mounted (a laptop): the environment, else the defaults.
    assert load_disclosure_policy(site=tmp_path / "absent" / "disclosure.yaml").version == "mine"
    monkeypatch.delenv("ENCLAVE_DISCLOSURE_POLICY")
    assert load_disclosure_policy(site=tmp_path / "absent" / "disclosure.yaml") == DisclosurePolicy()


def test_policy_mounted_folder_without_its_file_is_an_error_not_the_defaults(tmp_path):
    site = tmp_path / "etc-enclave-policies"
    site.mkdir()
    with pytest.raises(PolicyError, match="disclosure.yaml"):
        load_disclosure_policy(site=site / "disclosure.yaml")


def test_policy_is_frozen():
    with pytest.raises(Exception):
        DisclosurePolicy().threshold = 3  # type: ignore[misc]
