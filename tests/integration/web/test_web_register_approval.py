"""The admin's approval pages say which register fields a proposed project lacks, Approve
refuses it (changing nothing) until they are added in its register details form, and
then approves it."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from enclave.clock import today
from enclave.config import Settings
from enclave.db.models import AuditEvent
from enclave.db.session import unit_of_work
from enclave.enums import ProjectStatus
from enclave.policy import load_policy_file
from enclave.projects import service as projects
from enclave.projects.tiers import TierPolicy
from enclave.users import get_user
from tests.integration.web.test_web_forms import visible_text
from tests.integration.web.test_web_pages_security import signed_in, xsrf_of
from tests.integration.web.world import PREFIX

SLUG = "sepsis"


@pytest.fixture
def bare(world: Settings) -> Settings:
    """A proposed project that states nothing for the register (proposed by its PI on the CLI)."""
    with unit_of_work(world) as s:
        tiers = load_policy_file(world.policies_dir / "tiers.yaml", TierPolicy)
        projects.create_project(s, get_user(s, "eve"), tiers, slug=SLUG, title="Sepsis in the emergency department",
                                pi="eve", lay_summary="Who is treated for sepsis, and how fast.",
                                end_date=today() + dt.timedelta(days=300))
    return world


def _events(settings: Settings, action: str) -> int:
    with unit_of_work(settings) as s:
        return s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action,
                                                                            AuditEvent.project == SLUG))


def _status(settings: Settings) -> ProjectStatus:
    with unit_of_work(settings) as s:
        return projects.get_project(s, SLUG).status


def test_admin_pages_show_missing_register_fields_and_approve_refuses_until_added(client: TestClient, bare: Settings):
    signed_in(client, "t-ada")
    queue = visible_text(client.get(PREFIX + "/admin/applications").text)
    assert ("Approve will refuse: the public register needs this project's public benefit, lawful basis, "
            "data controller, contact, which are missing.") in queue
    assert queue.count("Approve will refuse") == 1  # copd stated everything when it applied
    page = visible_text(client.get(PREFIX + f"/admin/projects/{SLUG}").text)
    assert "needs this project's public benefit, lawful basis, data controller, contact" in page
    assert "Register details" in page and "Save register details" in page

    token = xsrf_of(client, f"/admin/projects/{SLUG}")
    for back in ("applications", ""):
        refused = client.post(PREFIX + f"/admin/projects/{SLUG}/transition", follow_redirects=False,
                              data={"_xsrf": token, "action": "approve", "back": back})
        assert refused.status_code == 400
        said = visible_text(refused.text)
        assert ("this project cannot be approved yet: the public register needs its public benefit, lawful basis, "
                "data controller and contact, which are missing") in said
        assert "--" not in said and "enclave project" not in said  # the web's words, no CLI
    assert _status(bare) is ProjectStatus.PROPOSED and _events(bare, "project.transition") == 0

    # A bad value is shown beside its field with what was typed kept; nothing is saved.
    bad = client.post(PREFIX + f"/admin/projects/{SLUG}/register", follow_redirects=False,
                      data={"_xsrf": token, "public_benefit": "Faster antibiotics.", "contact_email": "Dr Who"})
    assert bad.status_code == 400 and 'id="contact_email-error"' in bad.text and "Faster antibiotics." in bad.text
    assert _events(bare, "project.register") == 0

    saved = client.post(PREFIX + f"/admin/projects/{SLUG}/register", follow_redirects=False, data={
        "_xsrf": token, "public_benefit": "Faster antibiotics for people with sepsis.", "gdpr_article6": "public_task",
        "gdpr_article9": "research_and_statistics", "confidentiality_basis": "section_251", "data_controller": "",
        "contact_email": ""})
    assert saved.status_code == 303 and saved.headers["location"].endswith("?done=register_saved#register")
    page = visible_text(client.get(saved.headers["location"]).text)
    assert "The register details were saved." in page
    assert "needs this project's data controller, contact, which are missing" in page
    assert _events(bare, "project.register") == 1
    still = client.post(PREFIX + f"/admin/projects/{SLUG}/transition", follow_redirects=False,
                        data={"_xsrf": token, "action": "approve"})
    assert still.status_code == 400 and "needs its data controller and contact, which are missing" in still.text

    client.post(PREFIX + f"/admin/projects/{SLUG}/register", follow_redirects=False, data={
        "_xsrf": token, "data_controller": "City NHS Trust", "contact_email": "sepsis-study@city.example"})
    page = visible_text(client.get(PREFIX + f"/admin/projects/{SLUG}").text)
    assert "Approve will refuse" not in page
    approved = client.post(PREFIX + f"/admin/projects/{SLUG}/transition", follow_redirects=False,
                           data={"_xsrf": token, "action": "approve"})
    assert approved.status_code == 303 and _status(bare) is ProjectStatus.APPROVED
    entry = client.get(PREFIX + f"/api/register/{SLUG}").json()
    assert entry["public_benefit"] == "Faster antibiotics for people with sepsis."
    assert entry["data_controller"] == "City NHS Trust" and entry["contact_email"] == "sepsis-study@city.example"
    # Once approved the entry is what was approved: the form is gone and a post is refused.
    assert "Save register details" not in client.get(PREFIX + f"/admin/projects/{SLUG}").text
    late = client.post(PREFIX + f"/admin/projects/{SLUG}/register", follow_redirects=False,
                       data={"_xsrf": token, "data_controller": "Someone else"})
    assert late.status_code == 400 and "its register details are fixed once it is decided" in late.text


def test_applicant_adds_register_details_of_a_proposed_project_before_approval(client: TestClient, bare: Settings):
    signed_in(client, "t-eve")
    assert f'href="/services/enclave/projects/{SLUG}/register"' in client.get(PREFIX + f"/projects/{SLUG}").text
    page = visible_text(client.get(PREFIX + f"/projects/{SLUG}/register").text)
    assert ("An administrator cannot approve this project yet: the public register needs its public benefit, "
            "lawful basis, data controller, contact, which are missing.") in page
    token = xsrf_of(client, f"/projects/{SLUG}/register")
    bad = client.post(PREFIX + f"/projects/{SLUG}/register", follow_redirects=False,
                      data={"_xsrf": token, "gdpr_article6": "because", "data_controller": "City NHS Trust"})
    assert bad.status_code == 400 and 'id="gdpr_article6-error"' in bad.text and "City NHS Trust" in bad.text
    saved = client.post(PREFIX + f"/projects/{SLUG}/register", follow_redirects=False, data={
        "_xsrf": token, "public_benefit": "Faster antibiotics.", "gdpr_article6": "public_task",
        "gdpr_article9": "research_and_statistics", "confidentiality_basis": "section_251",
        "data_controller": "City NHS Trust", "contact_email": "sepsis-study@city.example"})
    assert saved.status_code == 303
    page = visible_text(client.get(saved.headers["location"]).text)
    assert "The register details were saved." in page and "cannot approve" not in page
    with unit_of_work(bare) as s:
        events = list(s.scalars(select(AuditEvent).where(AuditEvent.action == "project.register")))
        assert [e.actor for e in events] == ["eve"]

    # Another researcher, even a member, may not change what the applicant will publish.
    with unit_of_work(bare) as s:
        projects.add_member(s, get_user(s, "ada"), SLUG, "rob")
    signed_in(client, "t-rob")
    other = client.post(PREFIX + f"/projects/{SLUG}/register", follow_redirects=False,
                        data={"_xsrf": xsrf_of(client, f"/projects/{SLUG}/register"), "public_benefit": "Mine."})
    assert other.status_code == 403 and "only its PI, whoever proposed it, or an admin" in other.text
    signed_in(client, "t-ada")
    token = xsrf_of(client, f"/admin/projects/{SLUG}")
    assert client.post(PREFIX + f"/admin/projects/{SLUG}/transition", follow_redirects=False,
                       data={"_xsrf": token, "action": "approve"}).status_code == 303
