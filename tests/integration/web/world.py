"""A small enclave for web tests, built through the service layer, and the tokens the
test authenticator resolves for each kind of caller."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from enclave.applications import ProjectApplication, apply_for_project
from enclave.clock import today
from enclave.config import Settings
from enclave.db.models import Grant, User
from sqlalchemy import select
from enclave.db.session import unit_of_work, upgrade
from enclave.enums import Role
from enclave.policy import load_policy_file
from enclave.projects import service as projects
from enclave.projects.lifecycle import ProjectAction
from enclave.projects.tiers import TierPolicy
from enclave.register.details import RegisterDetails
from enclave.users import add_user
from enclave.web.auth import HUB_ROLE_ADMIN, HUB_ROLE_REVIEW
from enclave.web.testing import StaticTokenAuthenticator
from tests.register_support import requiring_nothing

REPO = Path(__file__).resolve().parents[3]
NOTEBOOK = ('{"cells": [{"cell_type": "code", "execution_count": null, "metadata": {"tags": ["parameters"]}, '
            '"outputs": [], "source": ["min_age = 18"]}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
PREFIX = "/services/enclave"

# token -> (hub user, hub roles/scopes on the token)
TOKENS: dict[str, tuple[str, set[str]]] = {
    "t-ada": ("ada", {HUB_ROLE_ADMIN}),            # enclave admin, hub admin role
    "t-rita": ("rita", {HUB_ROLE_REVIEW}),         # reviewer
    "t-rudy": ("rudy", {HUB_ROLE_REVIEW}),         # a second reviewer
    "t-rob": ("rob", set()),                       # researcher, PI of asthma
    "t-ria": ("ria", set()),                       # researcher, member of asthma
    "t-eve": ("eve", set()),                       # researcher, PI of diabetes and copd (another team)
    "t-mal": ("mal", {HUB_ROLE_ADMIN}),            # hub says admin, enclave says researcher
    "t-ann": ("ann", set()),                       # enclave admin without the hub's admin role
    "t-nick": ("nick", {HUB_ROLE_ADMIN}),          # a hub user unknown to the enclave
}


# What the register publishes of asthma (diabetes states nothing: the register says so).
REGISTER = RegisterDetails(
    public_benefit="Fewer children admitted to hospital with asthma.", gdpr_article6="public_task",
    gdpr_article9="research_and_statistics", confidentiality_basis="section_251",
    data_controller="University Hospital NHS Trust", contact_email="asthma-study@hospital.example",
    funders="Asthma Research Charity")
# The same answers as the apply form posts them.
REGISTER_FORM = {k: str(v) for k, v in REGISTER.model_dump().items()}


def build_world(home: Path) -> Settings:
    """Users, projects in several states and one pending application."""
    settings = Settings(home=home, db_url=f"sqlite:///{home / 'enclave.db'}", policies_dir=REPO / "policies")
    upgrade(settings)
    tiers = load_policy_file(settings.policies_dir / "tiers.yaml", TierPolicy)
    later = today() + dt.timedelta(days=365)
    with unit_of_work(settings) as s:
        ada = add_user(s, None, "ada", {Role.ADMIN}, later)
        add_user(s, ada, "ann", {Role.ADMIN}, later)
        add_user(s, ada, "rita", {Role.REVIEWER}, later)
        add_user(s, ada, "rudy", {Role.REVIEWER}, later)
        for name in ("rob", "ria", "eve", "mal", "rex"):
            add_user(s, ada, name, {Role.RESEARCHER}, later)
        for slug, pi, title in (("asthma", "rob", "Asthma outcomes in children"),
                                ("diabetes", "eve", "Type 2 diabetes and kidney disease")):
            projects.create_project(s, ada, tiers, slug=slug, title=title, pi=pi,
                                    lay_summary=f"A study of {title.lower()}.", end_date=later,
                                    organisation="University Hospital", purpose="Improve care.",
                                    lawful_basis="REC 24/AB/0001", register=REGISTER if slug == "asthma" else None)
            # diabetes states nothing: approved as a site that requires nothing would.
            policy = None if slug == "asthma" else requiring_nothing(REPO / "policies")
            projects.transition_project(s, ada, slug, ProjectAction.APPROVE, register_policy=policy)
            projects.transition_project(s, ada, slug, ProjectAction.ACTIVATE)
        projects.add_member(s, ada, "asthma", "ria")
        eve = projects.get_project(s, "diabetes").pi
        apply_for_project(s, eve, tiers, ProjectApplication(
            slug="copd", title="COPD admissions and air quality", purpose="Link admissions to pollution.",
            lay_summary="Does air pollution send people with COPD to hospital?", lawful_basis="6(1)(e), 9(2)(j)",
            organisation="City University", datasets_wanted=["hes-apc"], team=["rex"],
            end_date=later, **REGISTER.model_dump()))
    _catalogue(settings)
    outbox = settings.workspaces_dir / "asthma" / "outbox"
    outbox.mkdir(parents=True)
    (outbox / "admissions.csv").write_text("age_band,admissions\n0-4,120\n5-9,3\n10-14,85\n")
    (outbox / "notes.txt").write_text("Model converged after 12 iterations.\n")
    for slug in ("asthma", "diabetes"):  # a notebook each workspace may submit as a job
        notebooks = settings.workspaces_dir / slug / "notebooks"
        notebooks.mkdir(parents=True, exist_ok=True)
        (notebooks / "analysis.ipynb").write_text(NOTEBOOK)
    return settings


def _catalogue(settings: Settings) -> None:
    """One synthetic dataset, granted to asthma until soon (so the dashboard shows it)."""
    from enclave.catalog import service as catalog
    from enclave.demo.synthetic import generate, write_csv

    source = settings.home.parent / "demo-csv"
    write_csv(generate(60, seed=5), source)
    with unit_of_work(settings) as s:
        ada = s.scalars(select(User).where(User.name == "ada")).one()
        catalog.ingest_dataset(s, ada, settings, source, "hospital-episodes", description="Synthetic hospital episodes")
        catalog.add_grant(s, ada, settings, "asthma", "hospital-episodes", expires=today() + dt.timedelta(days=20))


def copy_world(template: Settings, home: Path) -> Settings:
    """A private copy of a built world (building one takes a second; copying, a moment)."""
    import shutil

    home.mkdir(parents=True)
    for part in template.home.glob("enclave.db*"):  # the database and its write-ahead log
        shutil.copy2(part, home / part.name)
    for folder in ("workspaces", "catalog", "views", "keys"):
        if (template.home / folder).exists():
            shutil.copytree(template.home / folder, home / folder, symlinks=True)
    settings = Settings(home=home, db_url=f"sqlite:///{home / 'enclave.db'}", policies_dir=template.policies_dir)
    # Grants record their view's absolute path: point the copy's at its own views, so a test
    # that revokes a grant (and deletes its view) never touches the template others copy.
    with unit_of_work(settings) as s:
        for grant in s.scalars(select(Grant).where(Grant.view_path.is_not(None))):
            if grant.view_path.startswith(str(template.home)):
                grant.view_path = str(home) + grant.view_path[len(str(template.home)):]
    return settings


def authenticator() -> StaticTokenAuthenticator:
    return StaticTokenAuthenticator(TOKENS, running=3)
