"""What the test factories put on the public register of the projects they approve.

Approval refuses a project without the register fields the site requires
(``policies/register.yaml``: ``required_at_approval``, all of them by default), so every
fixture that approves a project gives these, through the service layer or the CLI.
"""

from __future__ import annotations

from pathlib import Path

from enclave.register.details import RegisterDetails
from enclave.register.policy import RegisterPolicy, load_register_policy

EXAMPLE_REGISTER = RegisterDetails(
    public_benefit="Better care for patients in the region, from what the study finds.",
    gdpr_article6="public_task", gdpr_article9="research_and_statistics", confidentiality_basis="section_251",
    data_controller="Example NHS Foundation Trust", contact_email="research-office@trust.example")

# The same details as options of 'enclave project create' (or 'register-details').
REGISTER_OPTIONS: list[str] = [
    opt for column, value in EXAMPLE_REGISTER.model_dump(mode="json", exclude={"funders"}).items()
    for opt in ("--" + column.replace("_", "-"), str(value))]


def requiring_nothing(policies_dir: Path) -> RegisterPolicy:
    """The site's register policy with no field required at approval: how a project that
    states nothing (one approved before the rule, or at such a site) reaches the register."""
    return load_register_policy(policies_dir).model_copy(update={"required_at_approval": []})
