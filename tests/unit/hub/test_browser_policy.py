"""policies/browser.yaml: strict, per tier, tiers matching tiers.yaml, and what the hub
hands to the container."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from enclave.errors import PolicyError
from enclave.hub.browser_policy import ENV_VAR, from_environment, load_browser_policy

REPO_POLICIES = Path(__file__).resolve().parents[3] / "policies"


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    for name in ("browser.yaml", "tiers.yaml"):
        shutil.copy(REPO_POLICIES / name, tmp_path / name)
    return tmp_path


def test_browser_policy_repository_file_covers_every_tier():
    policy = load_browser_policy(REPO_POLICIES)
    assert set(policy.tiers) == {"tier1", "tier2", "tier3"}
    # Higher tiers are never looser than lower ones.
    t1, t2, t3 = (policy.for_tier(t) for t in ("tier1", "tier2", "tier3"))
    assert t1.contents.max_text_bytes >= t2.contents.max_text_bytes >= t3.contents.max_text_bytes
    assert t1.kernel.iopub_data_rate_limit >= t2.kernel.iopub_data_rate_limit >= t3.kernel.iopub_data_rate_limit
    assert t1.meter.max_bytes_per_window >= t2.meter.max_bytes_per_window >= t3.meter.max_bytes_per_window
    assert t3.terminals is False


def test_browser_policy_unknown_key_is_refused(policy_dir: Path):
    path = policy_dir / "browser.yaml"
    path.write_text(path.read_text().replace("max_text_bytes:", "max_txt_bytes:", 1))
    with pytest.raises(PolicyError, match=r"browser.yaml: tiers\.tier1\.contents\.max_te?xt_bytes"):
        load_browser_policy(policy_dir)


def test_browser_policy_tier_missing_or_extra_is_refused(policy_dir: Path):
    tiers = policy_dir / "tiers.yaml"
    original = tiers.read_text()
    tiers.write_text(original + "  tier4:\n    level: 4\n    description: new\n")
    with pytest.raises(PolicyError, match="'tier4' of tiers.yaml has no browser settings"):
        load_browser_policy(policy_dir)
    tiers.write_text(original.split("  tier3:")[0])
    with pytest.raises(PolicyError, match="'tier3' is not a tier of tiers.yaml"):
        load_browser_policy(policy_dir)


def test_browser_policy_unknown_tier_is_refused():
    with pytest.raises(PolicyError, match="no settings for tier 'secret'"):
        load_browser_policy(REPO_POLICIES).for_tier("secret")


def test_browser_policy_round_trips_through_the_environment():
    tier = load_browser_policy(REPO_POLICIES).for_tier("tier2")
    settings = from_environment(tier.server_environment())
    assert settings == tier.in_server()
    assert "meter" not in tier.server_environment()[ENV_VAR]
    args = tier.server_args()
    assert f"--ZMQChannelsWebsocketConnection.iopub_data_rate_limit={tier.kernel.iopub_data_rate_limit}" in args
    assert "--ServerApp.terminals_enabled=True" in args


@pytest.mark.parametrize("value", [None, "", "{", '{"contents": {}}', '{"contents": 1, "kernel": 2, "terminals": 3}'])
def test_browser_policy_missing_or_bad_environment_fails_closed(value):
    env = {} if value is None else {ENV_VAR: value}
    with pytest.raises(PolicyError, match=ENV_VAR):
        from_environment(env)
