"""Security tiers of projects and datasets (``policies/tiers.yaml``)."""

from __future__ import annotations

from pydantic import Field, model_validator

from pathlib import Path

from enclave.policy import StrictModel, load_policy_file


class Tier(StrictModel):
    level: int = Field(ge=0, le=9, description="Higher means more sensitive")
    description: str = Field(min_length=1)
    # How long an admin may open a researcher's server of this tier (enclave.hub.breakglass); 0: never.
    break_glass_minutes: int = Field(0, ge=0, le=480)


class TierPolicy(StrictModel):
    version: str = Field(min_length=1)
    default_tier: str
    tiers: dict[str, Tier] = Field(min_length=1)

    @model_validator(mode="after")
    def _default_is_known(self) -> TierPolicy:
        if self.default_tier not in self.tiers:
            raise ValueError(f"default_tier {self.default_tier!r} is not one of the tiers {sorted(self.tiers)}")
        return self

    def level(self, name: str) -> int:
        return self.tiers[name].level

    def may_hold(self, project_tier: str, dataset_tier: str) -> bool:
        """A project may use a dataset only if its tier is at least as high (fail closed on unknown)."""
        if project_tier not in self.tiers or dataset_tier not in self.tiers:
            return False
        return self.level(project_tier) >= self.level(dataset_tier)


def load_tiers(policies_dir: Path) -> TierPolicy:
    """Read ``tiers.yaml`` from the policy directory."""
    return load_policy_file(Path(policies_dir) / "tiers.yaml", TierPolicy)
