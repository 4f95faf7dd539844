"""The demo enclave that ``make up`` starts: people, two projects, synthetic data, grants.

Everything goes through the real service functions (and so into the audit log). Running
it again changes nothing and prints the same sign-in details. Demo passwords and
authenticator secrets are kept in ``$ENCLAVE_HOME/demo-accounts.json`` (0600) so that the
sign-in page can be tried at once; a real enclave never writes such a file.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from enclave.catalog import service as catalog
from enclave.clock import today
from enclave.config import Settings
from enclave.db.models import User
from enclave.db.session import unit_of_work
from enclave.demo.synthetic import generate, write_csv
from enclave.enums import ProjectStatus, Role
from enclave.errors import InvalidInput, NotFound
from enclave.hub import signin
from enclave.projects import service as projects
from enclave.projects.lifecycle import ProjectAction
from enclave.projects.retention import move_project
from enclave.projects.tiers import load_tiers
from enclave.register.details import RegisterDetails
from enclave.users import add_user, find_user


@dataclass(frozen=True)
class DemoPerson:
    name: str
    roles: tuple[Role, ...]
    about: str


PEOPLE: tuple[DemoPerson, ...] = (
    DemoPerson("admin", (Role.ADMIN,), "admin: approves projects, curates data, grants access"),
    DemoPerson("ada", (Role.RESEARCHER,), "researcher, PI of project 'cardio'"),
    DemoPerson("grace", (Role.RESEARCHER,), "researcher, PI of project 'diabetes' (another project)"),
    DemoPerson("rita", (Role.REVIEWER,), "output reviewer"),
    DemoPerson("rex", (Role.REVIEWER,), "second, independent output reviewer"),
)

PROJECTS = (
    dict(slug="cardio", title="Heart failure readmissions", pi="ada", organisation="Leeds Teaching Hospitals",
         lay_summary="Which patients admitted with heart failure come back to hospital within 30 days, and why.",
         purpose="Service evaluation of readmission after heart failure admissions.",
         lawful_basis="REC 26/YH/0042; CAG 26/CAG/0011",
         register=RegisterDetails(
             public_benefit="Fewer emergency readmissions after heart failure, by finding who needs follow-up.",
             gdpr_article6="public_task", gdpr_article9="research_and_statistics", confidentiality_basis="section_251",
             data_controller="Leeds Teaching Hospitals NHS Trust", contact_email="cardio-study@leeds.example",
             funders="British Heart Research Fund")),
    dict(slug="diabetes", title="Type 2 diabetes and kidney function", pi="grace", organisation="University of Leeds",
         lay_summary="How kidney function changes in people with type 2 diabetes over time.",
         purpose="Observational research on laboratory trends.",
         lawful_basis="REC 26/YH/0077",
         register=RegisterDetails(
             public_benefit="Earlier care for people with diabetes whose kidneys are starting to fail.",
             gdpr_article6="public_task", gdpr_article9="research_and_statistics",
             confidentiality_basis="not_confidential", data_controller="University of Leeds",
             contact_email="diabetes-research@leeds.example")),
)

# What each project is approved to see of the demo dataset (data minimisation).
GRANTS = {
    "cardio": dict(columns=["patients.sex", "patients.date_of_birth", "patients.ethnicity",
                            "patients.deprivation_decile", "patients.patient_id", "admissions.*", "diagnoses.*"],
                   where=[]),
    "diabetes": dict(columns=["patients.sex", "patients.patient_id", "patients.deprivation_decile",
                              "lab_results.*", "prescriptions.*"], where=[]),
}

DATASET = "demo"


def _accounts_file(settings: Settings) -> Path:
    return settings.home / "demo-accounts.json"


def _load_accounts(settings: Settings) -> dict[str, dict[str, str]]:
    path = _accounts_file(settings)
    return json.loads(path.read_text()) if path.exists() else {}


def _save_accounts(settings: Settings, accounts: dict[str, dict[str, str]]) -> None:
    path = _accounts_file(settings)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(accounts, fh, indent=2)
    os.replace(tmp, path)


def setup_demo(settings: Settings, patients: int = 2000) -> dict[str, dict[str, str]]:
    """Create (or find) the demo people, projects, dataset and grants; return the accounts."""
    settings.home.mkdir(parents=True, exist_ok=True)
    accounts = _load_accounts(settings)
    end = today() + dt.timedelta(days=365)

    with unit_of_work(settings) as session:
        admin = find_user(session, "admin")
        if admin is None:
            others = session.query(User).count()
            if others:
                raise InvalidInput("this enclave already has users but no 'admin': the demo needs a fresh ENCLAVE_HOME")
            admin = add_user(session, None, "admin", {Role.ADMIN}, end)
        for person in PEOPLE:
            user = find_user(session, person.name) or add_user(session, admin, person.name, set(person.roles), end)
            if person.name not in accounts or user.password_hash is None or user.totp_secret is None:
                password = secrets.token_urlsafe(12)
                actor = None if person.name == "admin" and admin.totp_secret is None else admin
                signin.set_password(session, actor, person.name, password)
                enrolment = signin.enrol_totp(session, actor, person.name)
                accounts[person.name] = {"password": password, "totp_secret": enrolment.secret, "about": person.about}
        _save_accounts(settings, accounts)

    tiers = load_tiers(settings.policies_dir)
    with unit_of_work(settings) as session:
        admin = find_user(session, "admin")
        for spec in PROJECTS:
            slug = spec["slug"]
            try:
                project = projects.get_project(session, slug)
            except NotFound:
                project = projects.create_project(session, admin, tiers, end_date=end, **spec)
            if project.status is ProjectStatus.PROPOSED:
                move_project(session, admin, settings, slug, ProjectAction.APPROVE)
            if project.status is ProjectStatus.APPROVED:
                # As in the console: the first activation gives the workspace the example notebooks.
                move_project(session, admin, settings, slug, ProjectAction.ACTIVATE)

    source = settings.home / "demo-source"
    if not source.exists():
        stage = settings.home / ".demo-source-staging"
        if stage.exists():
            shutil.rmtree(stage)
        write_csv(generate(patients, seed=2026), stage)
        stage.rename(source)
    with unit_of_work(settings) as session:
        admin = find_user(session, "admin")
        if not any(d.name == DATASET for d in catalog.list_datasets(session, admin)):
            catalog.ingest_dataset(session, admin, settings, source, DATASET,
                                   description="Synthetic hospital records for the demo (no real person)")
    with unit_of_work(settings) as session:
        admin = find_user(session, "admin")
        for slug, grant in GRANTS.items():
            project = projects.get_project(session, slug)
            if not catalog.live_grants(session, project):
                catalog.add_grant(session, admin, settings, slug, DATASET, expires=end - dt.timedelta(days=1),
                                  columns=grant["columns"], where=grant["where"])
    return accounts


def current_code(settings: Settings, name: str) -> str:
    """A one-time code of a demo account that the next sign-in accepts (demo accounts
    only). A code signs in once: after a sign-in in the current 30-second step this is
    the next step's code, and if that was used too it waits until it is accepted."""
    accounts = _load_accounts(settings)
    if name not in accounts:
        raise InvalidInput(f"{name!r} is not a demo account: demo accounts are {', '.join(sorted(accounts)) or 'not set up'}")
    with unit_of_work(settings) as session:
        user = find_user(session, name)
        last_step = user.totp_last_step if user is not None else None
    code, wait = signin.unused_totp(accounts[name]["totp_secret"], last_step, dt.datetime.now(dt.UTC))
    if wait:
        time.sleep(wait)
    return code
