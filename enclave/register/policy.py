"""``policies/register.yaml``: what the public register says on the enclave's behalf."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, HttpUrl, field_validator

from enclave.policy import StrictModel, load_policy_file
from enclave.register.details import EMAIL_RE, RegisterField


class OptOut(StrictModel):
    applied: bool = Field(description="Whether the national data opt-out is applied to every dataset")
    text: str = Field(min_length=1, max_length=4000, description="How a member of the public opts out")
    url: HttpUrl | None = Field(default=None, description="Where to opt out")


class RegisterPolicy(StrictModel):
    publisher: str = Field(min_length=1, max_length=200, description="Who runs the enclave and its register")
    contact_email: str = Field(min_length=3, max_length=254, description="The register's own contact")
    opt_out: OptOut
    data_location: str = Field(min_length=1, max_length=500)
    data_sensitivity: str = Field(min_length=1, max_length=100)
    processing: str = Field(min_length=1, max_length=2000)
    privacy_enhancements: str = Field(min_length=1, max_length=2000)
    required_at_approval: list[RegisterField] = Field(
        default_factory=lambda: list(RegisterField),
        description="The register fields a project must have before it may be approved (default: all)")

    @field_validator("contact_email")
    @classmethod
    def _one_mailbox(cls, value: str) -> str:
        if not EMAIL_RE.fullmatch(value):
            raise ValueError("give one email address such as transparency@example.org")
        return value


    @field_validator("required_at_approval")
    @classmethod
    def _each_once(cls, value: list[RegisterField]) -> list[RegisterField]:
        if len(set(value)) != len(value):
            raise ValueError("name each field once")
        return value


def load_register_policy(policies_dir: Path) -> RegisterPolicy:
    return load_policy_file(Path(policies_dir) / "register.yaml", RegisterPolicy)
