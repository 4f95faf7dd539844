"""Approval needs the register fields the site requires: each one missing is refused in
one line naming it and its options, and nothing changes; the policy may ask for fewer,
and a name it does not know is refused when it is loaded."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from enclave.db.models import AuditEvent
from enclave.enums import ProjectStatus
from enclave.errors import InvalidInput, InvalidTransition, PermissionDenied, PolicyError
from enclave.policy import load_policies
from enclave.projects import retention
from enclave.projects import service as projects
from enclave.projects.lifecycle import ProjectAction
from enclave.register.details import FIELD_COLUMNS, RegisterChanges, RegisterField
from enclave.register.policy import RegisterPolicy, load_register_policy
from tests.conftest import REPO, Factory
from tests.register_support import EXAMPLE_REGISTER

ALL = EXAMPLE_REGISTER.model_dump(exclude={"funders"})
OPTIONS = {"public_benefit": "--public-benefit", "gdpr_article6": "--gdpr-article6",
           "gdpr_article9": "--gdpr-article9", "confidentiality_basis": "--confidentiality-basis",
           "data_controller": "--data-controller", "contact_email": "--contact-email"}


def _policy(required: list[str]) -> RegisterPolicy:
    return load_register_policy(REPO / "policies").model_copy(
        update={"required_at_approval": [RegisterField(r) for r in required]})


def _stating(factory: Factory, slug: str, columns: dict[str, object]) -> None:
    """A proposed project that states ``columns`` only (added through the service)."""
    factory.project(slug, "pia", register=None)
    if columns:
        projects.amend_register(factory.session, factory.admin, slug, RegisterChanges(**columns))


def _transitions(factory: Factory, slug: str) -> list[AuditEvent]:
    return list(factory.session.scalars(select(AuditEvent).where(AuditEvent.project == slug,
                                                                 AuditEvent.action == "project.transition")))


@pytest.mark.parametrize("field", list(RegisterField))
def test_approval_refuses_each_missing_field_in_one_line_and_changes_nothing(factory: Factory, field: RegisterField):
    columns = FIELD_COLUMNS[field]
    _stating(factory, "study", {k: v for k, v in ALL.items() if k not in columns})
    with pytest.raises(InvalidTransition) as refused:
        projects.transition_project(factory.session, factory.admin, "study", ProjectAction.APPROVE)
    line = str(refused.value)
    words = field.value.replace("_", " ") if field is not RegisterField.CONTACT else "contact"
    assert line.startswith(f"project study cannot be approved: the public register needs its {words}, which is "
                           "missing; add it with 'enclave project register-details study ")
    assert "\n" not in line and all(OPTIONS[c] in line for c in columns)
    assert not any(o in line for c, o in OPTIONS.items() if c not in columns)
    assert "register details form" in refused.value.web and "--" not in refused.value.web
    assert projects.get_project(factory.session, "study").status is ProjectStatus.PROPOSED
    assert _transitions(factory, "study") == []


@pytest.mark.parametrize("column", FIELD_COLUMNS[RegisterField.LAWFUL_BASIS])
def test_approval_needs_every_part_of_the_lawful_basis(factory: Factory, column: str):
    _stating(factory, "study", {k: v for k, v in ALL.items() if k != column})
    with pytest.raises(InvalidTransition, match=rf"needs its lawful basis, which is missing; .* {OPTIONS[column]} \.\.\.'"):
        projects.transition_project(factory.session, factory.admin, "study", ProjectAction.APPROVE)


def test_approval_names_every_missing_field_together(factory: Factory):
    _stating(factory, "study", {})
    with pytest.raises(InvalidTransition, match="needs its public benefit, lawful basis, data controller and contact, "
                                                "which are missing"):
        projects.transition_project(factory.session, factory.admin, "study", ProjectAction.APPROVE)


def test_approval_with_every_field_lists_the_project(factory: Factory):
    _stating(factory, "study", ALL)
    projects.transition_project(factory.session, factory.admin, "study", ProjectAction.APPROVE)
    assert projects.get_project(factory.session, "study").status is ProjectStatus.APPROVED


def test_policy_may_require_fewer_fields(factory: Factory):
    _stating(factory, "study", {"public_benefit": "Better care."})
    projects.transition_project(factory.session, factory.admin, "study", ProjectAction.APPROVE,
                                register_policy=_policy(["public_benefit"]))
    _stating(factory, "other", {"data_controller": "City NHS Trust"})
    with pytest.raises(InvalidTransition, match="needs its public benefit, which is missing"):
        projects.transition_project(factory.session, factory.admin, "other", ProjectAction.APPROVE,
                                    register_policy=_policy(["public_benefit", "data_controller"]))
    projects.transition_project(factory.session, factory.admin, "other", ProjectAction.APPROVE,
                                register_policy=_policy([]))


def test_move_project_reads_the_sites_policy(factory: Factory, tmp_path: Path):
    """The CLI, console and API approve through move_project, which reads register.yaml."""
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    settings = dataclasses.replace(factory.settings, policies_dir=policies)
    _stating(factory, "study", {"contact_email": "team@trust.example"})
    with pytest.raises(InvalidTransition, match="needs its public benefit, lawful basis and data controller"):
        retention.move_project(factory.session, factory.admin, settings, "study", ProjectAction.APPROVE)
    text = (policies / "register.yaml").read_text()
    (policies / "register.yaml").write_text(text.replace(
        "required_at_approval: [public_benefit, lawful_basis, data_controller, contact]",
        "required_at_approval: [contact]"))
    retention.move_project(factory.session, factory.admin, settings, "study", ProjectAction.APPROVE)
    assert projects.get_project(factory.session, "study").status is ProjectStatus.APPROVED


@pytest.mark.parametrize("value, says", [
    ("[public_benefit, funders]", "required_at_approval.1: Input should be 'public_benefit', 'lawful_basis', "
                                  "'data_controller' or 'contact' (got 'funders')"),
    ("[Contact]", "(got 'Contact')"),
    ("public_benefit", "required_at_approval"),
    ("[contact, contact]", "name each field once"),
])
def test_policy_refuses_an_unknown_or_repeated_field_when_loaded(tmp_path: Path, value: str, says: str):
    shutil.copytree(REPO / "policies", tmp_path / "policies")
    path = tmp_path / "policies" / "register.yaml"
    text = path.read_text()
    assert "required_at_approval: [public_benefit, lawful_basis, data_controller, contact]" in text
    path.write_text(text.replace("[public_benefit, lawful_basis, data_controller, contact]", value))
    with pytest.raises(PolicyError) as refused:
        load_register_policy(tmp_path / "policies")
    assert says in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(PolicyError):
        load_policies(tmp_path / "policies")  # and so 'enclave policy check' refuses it too


def test_policy_without_the_key_requires_every_field(tmp_path: Path):
    shutil.copytree(REPO / "policies", tmp_path / "policies")
    path = tmp_path / "policies" / "register.yaml"
    path.write_text("\n".join(line for line in path.read_text().splitlines()
                              if not line.startswith("required_at_approval")))
    assert load_register_policy(tmp_path / "policies").required_at_approval == list(RegisterField)
    assert load_register_policy(REPO / "policies").required_at_approval == list(RegisterField)


def test_register_details_are_amended_by_the_pi_or_an_admin_while_proposed_and_audited(factory: Factory):
    factory.project("study", "pia", register=None)
    pia, other = factory.get("pia"), factory.user("olly")
    projects.amend_register(factory.session, pia, "study", RegisterChanges(public_benefit="Better care."))
    with pytest.raises(PermissionDenied, match="only its PI, whoever proposed it, or an admin"):
        projects.amend_register(factory.session, other, "study", RegisterChanges(public_benefit="Mine."))
    with pytest.raises(InvalidInput, match="nothing to change"):
        projects.amend_register(factory.session, factory.admin, "study", RegisterChanges(public_benefit="Better care."))
    rest = {k: v for k, v in ALL.items() if k != "public_benefit"}
    projects.amend_register(factory.session, factory.admin, "study", RegisterChanges(**rest))
    events = list(factory.session.scalars(select(AuditEvent).where(AuditEvent.action == "project.register")))
    assert [(e.actor, sorted(e.details["changed"])) for e in events] == [
        ("pia", ["public_benefit"]),
        ("root-admin", ["confidentiality_basis", "contact_email", "data_controller", "gdpr_article6", "gdpr_article9"])]
    projects.transition_project(factory.session, factory.admin, "study", ProjectAction.APPROVE)
    with pytest.raises(InvalidTransition, match="is approved: its register details are fixed"):
        projects.amend_register(factory.session, factory.admin, "study", RegisterChanges(public_benefit="Later."))
    assert projects.get_project(factory.session, "study").public_benefit == "Better care."


def test_register_changes_check_what_is_given_as_the_application_does():
    with pytest.raises(ValueError, match="give one email address"):
        RegisterChanges(contact_email="not an address")
    with pytest.raises(ValueError, match="choose one of: consent"):
        RegisterChanges(gdpr_article6="6(1)(e)")
    assert RegisterChanges(contact_email="Team@Trust.Example").given() == {"contact_email": "team@trust.example"}
