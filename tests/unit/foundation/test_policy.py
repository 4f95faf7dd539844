"""Policy files: an unknown key, a bad value or a broken file stops start-up naming file, key, problem."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from enclave.errors import PolicyError
from enclave.policy import load_policies, load_policy_file
from enclave.projects.tiers import TierPolicy

REPO_POLICIES = Path(__file__).resolve().parents[3] / "policies"


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(REPO_POLICIES, target)
    return target


def test_load_policies_repository_defaults_are_valid():
    policies = load_policies(REPO_POLICIES)
    assert policies.tiers.default_tier in policies.tiers.tiers
    assert all(len(d) == 64 for d in policies.versions().values())


def test_load_policy_file_unknown_key_names_file_and_key(policy_dir: Path):
    path = policy_dir / "tiers.yaml"
    path.write_text(path.read_text() + "\nmax_projects: 3\n")
    with pytest.raises(PolicyError) as err:
        load_policy_file(path, TierPolicy)
    message = str(err.value)
    assert str(path) in message and "max_projects" in message and "unknown key" in message
    assert "\n" not in message


def test_load_policy_file_bad_nested_value_names_dotted_key(policy_dir: Path):
    path = policy_dir / "tiers.yaml"
    path.write_text(path.read_text().replace("level: 3", "level: high"))
    with pytest.raises(PolicyError, match=r"tiers\.yaml: tiers\.tier3\.level: .*integer.*'high'"):
        load_policy_file(path, TierPolicy)


def test_load_policy_file_cross_field_problem(policy_dir: Path):
    path = policy_dir / "tiers.yaml"
    path.write_text(path.read_text().replace("default_tier: tier2", "default_tier: tier9"))
    with pytest.raises(PolicyError, match="tier9"):
        load_policy_file(path, TierPolicy)


def test_load_policy_file_broken_yaml_names_line(policy_dir: Path):
    path = policy_dir / "tiers.yaml"
    path.write_text("version: '1'\ntiers:\n  tier1: [unclosed\n")
    with pytest.raises(PolicyError, match="not valid YAML at line"):
        load_policy_file(path, TierPolicy)


def test_load_policy_file_not_a_mapping(policy_dir: Path):
    path = policy_dir / "tiers.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(PolicyError, match="expected a mapping"):
        load_policy_file(path, TierPolicy)


def test_load_policies_missing_file(policy_dir: Path):
    (policy_dir / "tiers.yaml").unlink()
    with pytest.raises(PolicyError, match="tiers.yaml: policy file is missing"):
        load_policies(policy_dir)


def test_load_policies_unknown_file(policy_dir: Path):
    (policy_dir / "tier.yaml").write_text("version: '1'\n")
    with pytest.raises(PolicyError, match="tier.yaml: unknown policy file"):
        load_policies(policy_dir)


def test_load_policies_missing_directory(tmp_path: Path):
    with pytest.raises(PolicyError, match="policy directory not found"):
        load_policies(tmp_path / "nowhere")


def test_tier_policy_may_hold_fails_closed_on_unknown_tier():
    tiers = load_policy_file(REPO_POLICIES / "tiers.yaml", TierPolicy)
    assert tiers.may_hold("tier3", "tier2")
    assert not tiers.may_hold("tier1", "tier2")
    assert not tiers.may_hold("tier3", "secret")
