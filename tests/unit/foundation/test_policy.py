"""Policy files: an unknown key, a bad value or a broken file stops start-up naming file, key, problem."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from enclave.config import Settings
from enclave.egress.policy import EgressEnv, EgressPolicy
from enclave.errors import PolicyError
from enclave.policy import POLICY_FILES, Reference, load_policies, load_policy_file
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


# --- Fail closed everywhere: missing files and references between files -------------------

ENCLAVE = [sys.executable, "-m", "enclave.cli.main"]


def _policy_check(directory: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    return subprocess.run([*ENCLAVE, "policy", "check", str(directory)], env=env, capture_output=True,
                          text=True, timeout=60)


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def _misspell_egress_tier(policy_dir: Path) -> str:
    path = policy_dir / "egress.yaml"
    text = path.read_text()
    assert "    tier3: 3" in text
    path.write_text(text.replace("    tier3: 3", "    teir3: 3"))
    return "egress.yaml: reviews.per_tier.teir3: 'teir3' is not a tier of tiers.yaml"


def _misspell_browser_tier(policy_dir: Path) -> str:
    path = policy_dir / "browser.yaml"
    text = path.read_text()
    assert "\n  tier2:\n" in text
    path.write_text(text.replace("\n  tier2:\n", "\n  tier_2:\n"))
    return "browser.yaml: tiers.tier_2: 'tier_2' is not a tier of tiers.yaml"


def _unknown_egress_key(policy_dir: Path) -> str:
    path = policy_dir / "egress.yaml"
    path.write_text(path.read_text().replace("  per_tier:", "  per_teir:"))
    return "egress.yaml: reviews.per_teir: unknown key"


MISTAKES = {
    "egress per_tier": _misspell_egress_tier,
    "browser tiers": _misspell_browser_tier,
    "unknown key": _unknown_egress_key,
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_load_policies_refuses_each_mistake_naming_file_and_key(policy_dir: Path, mistake: str):
    says = MISTAKES[mistake](policy_dir)
    with pytest.raises(PolicyError) as err:
        load_policies(policy_dir)
    assert says in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("filename", sorted(POLICY_FILES))
def test_load_policies_missing_file_is_an_error_naming_it(policy_dir: Path, filename: str):
    (policy_dir / filename).unlink()
    with pytest.raises(PolicyError, match=f"{filename}: policy file is missing"):
        load_policies(policy_dir)


def test_egress_env_has_no_built_in_defaults_for_a_missing_file(policy_dir: Path, tmp_path: Path):
    settings = Settings(home=tmp_path / "home", db_url="sqlite://", policies_dir=policy_dir)
    assert EgressEnv.load(settings).policy.reviews.required_for("tier3") == 3
    (policy_dir / "egress.yaml").unlink()
    with pytest.raises(PolicyError, match="egress.yaml: policy file is missing"):
        EgressEnv.load(settings)
    shutil.copy(REPO_POLICIES / "egress.yaml", policy_dir / "egress.yaml")
    (policy_dir / "disclosure.yaml").unlink()
    with pytest.raises(PolicyError, match="disclosure.yaml: policy file is missing"):
        EgressEnv.load(settings)


def test_egress_env_checks_per_tier_against_tiers_yaml(policy_dir: Path, tmp_path: Path):
    says = _misspell_egress_tier(policy_dir)
    settings = Settings(home=tmp_path / "home", db_url="sqlite://", policies_dir=policy_dir)
    with pytest.raises(PolicyError, match=says.split(": ", 1)[1]):
        EgressEnv.load(settings)


def test_a_tier_reference_needs_the_tiers_file_beside_it(tmp_path: Path):
    (tmp_path / "egress.yaml").write_text("reviews:\n  per_tier:\n    tier1: 2\n")
    with pytest.raises(PolicyError, match="tiers.yaml: policy file is missing"):
        load_policy_file(tmp_path / "egress.yaml", EgressPolicy)


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_cli_policy_check_catches_each_mistake_in_one_line(policy_dir: Path, mistake: str):
    assert _policy_check(policy_dir).returncode == 0
    says = MISTAKES[mistake](policy_dir)
    assert says in _one_error_line(_policy_check(policy_dir))


def test_cli_policy_check_catches_a_missing_file_in_one_line(policy_dir: Path):
    (policy_dir / "egress.yaml").unlink()
    assert "egress.yaml: policy file is missing" in _one_error_line(_policy_check(policy_dir))


def test_cli_every_command_starts_only_with_valid_policies(policy_dir: Path, tmp_path: Path):
    says = _misspell_egress_tier(policy_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env.update(ENCLAVE_HOME=str(tmp_path / "home"), ENCLAVE_POLICIES=str(policy_dir))
    result = subprocess.run([*ENCLAVE, "job", "worker", "--once"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert says in _one_error_line(result)


def _references(annotation: object) -> list[Reference]:
    """Every Reference marker inside a type (Annotated metadata, at any depth)."""
    found = [m for m in getattr(annotation, "__metadata__", ()) if isinstance(m, Reference)]
    for arg in typing.get_args(annotation):
        found += _references(arg)
    return found


def _models_inside(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_inside(arg)]


def test_every_tier_field_of_every_policy_file_is_checked_against_tiers_yaml():
    """A policy model's field that names tiers (a per-tier map, a tier value) must use
    TierName, so the loader checks it: a new policy file cannot forget the check."""
    unchecked = []
    for filename, target in POLICY_FILES.items():
        if filename == "tiers.yaml":
            continue  # it defines the tier names (and checks its own default_tier)
        module_name, _, class_name = target.partition(":")
        todo, seen = [getattr(importlib.import_module(module_name), class_name)], set()
        while todo:
            model = todo.pop()
            if model in seen:
                continue
            seen.add(model)
            for name, field in model.model_fields.items():
                todo += _models_inside(field.annotation)
                refs = _references(field.annotation) + [m for m in field.metadata if isinstance(m, Reference)]
                if "tier" in name.lower() and not any(r.kind == "tier" for r in refs):
                    unchecked.append(f"{filename}: {model.__name__}.{name}")
    assert not unchecked, f"tier fields not typed TierName: {unchecked}"
