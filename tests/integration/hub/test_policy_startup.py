"""The hub does not start with a broken policy set, and says why in one line naming the
file and the key (a misspelt tier, a missing file, an unknown key)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def _start_hub(tmp_path: Path, policies: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    # Ports nobody listens on: the hub must stop while reading its configuration.
    env.update(ENCLAVE_HOME=str(tmp_path / "home"), ENCLAVE_POLICIES=str(policies), PYTHONPATH=str(REPO),
               ENCLAVE_HUB_PORT="1", ENCLAVE_HUB_API_PORT="2", ENCLAVE_PROXY_API_PORT="3")
    return subprocess.run([str(REPO / ".venv" / "bin" / "jupyterhub"), "-f", str(REPO / "jupyterhub_config.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def _misspelt_tier(policies: Path) -> str:
    path = policies / "egress.yaml"
    path.write_text(path.read_text().replace("    tier3: 3", "    teir3: 3"))
    return "egress.yaml: reviews.per_tier.teir3: 'teir3' is not a tier of tiers.yaml"


def _missing_file(policies: Path) -> str:
    (policies / "egress.yaml").unlink()
    return "egress.yaml: policy file is missing"


def _unknown_key(policies: Path) -> str:
    path = policies / "browser.yaml"
    path.write_text(path.read_text().replace("    terminals: false", "    terminal: false"))
    return "browser.yaml: tiers.tier3.terminal: unknown key"


@pytest.mark.parametrize("mistake", [_misspelt_tier, _missing_file, _unknown_key], ids=lambda m: m.__name__)
def test_hub_config_start_up_refuses_a_broken_policy_set_in_one_line(tmp_path: Path, mistake) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    says = mistake(policies)
    result = _start_hub(tmp_path, policies)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-3000:]
    lines = [line for line in output.splitlines() if says in line]
    assert len(lines) == 1 and lines[0].startswith("the hub cannot start: "), output[-3000:]
    assert not (tmp_path / "home" / "hub").exists() or not any((tmp_path / "home" / "hub").glob("*.pid"))
