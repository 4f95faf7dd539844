"""A register world: the egress world's active project with a dataset and a released
request, plus projects in every other status. Built once through the service layer."""

from __future__ import annotations

import datetime as dt
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from enclave.clock import today
from enclave.config import Settings
from enclave.db.session import unit_of_work, upgrade
from enclave.enums import EgressStatus, Role
from enclave.projects import service as projects
from enclave.projects.lifecycle import ProjectAction
from enclave.projects.tiers import load_tiers
from enclave.register.details import RegisterDetails
from enclave.users import add_user, get_user
from tests.register_support import EXAMPLE_REGISTER, requiring_nothing

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "egress"))
from egress_world import build_world, to_state  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
DETAILS = RegisterDetails(
    public_benefit="Better care after heart attacks for everyone in the region.", gdpr_article6="public_task",
    gdpr_article9="research_and_statistics", confidentiality_basis="not_confidential",
    data_controller="Northern Heart NHS Foundation Trust", contact_email="Heart-Research@Trust.example",
    funders="British Cardiac Fund; Regional Health Board")
# People whose names must never reach the register (the PI, a member, the suspension's reason).
QUIET = ("quillfeather", "yarrowby")


@dataclass
class RegisterWorld:
    settings: Settings
    released_request: int


def _project(s, admin, slug: str, title: str, pi: str, **kw) -> None:  # type: ignore[no-untyped-def]
    projects.create_project(s, admin, load_tiers(REPO / "policies"), slug=slug, title=title, pi=pi,
                            lay_summary=f"Lay summary of {title.lower()}.", end_date=today() + dt.timedelta(days=200),
                            **kw)


@pytest.fixture(scope="session")
def register_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    from enclave.catalog import service as catalog
    from enclave.demo.synthetic import generate, write_csv

    home = tmp_path_factory.mktemp("register-template") / "home"
    settings = Settings(home=home, db_url=f"sqlite:///{home / 'enclave.db'}", policies_dir=REPO / "policies")
    upgrade(settings)
    world = build_world(settings)  # heart-study: active, PI rita
    source = home.parent / "csv"
    write_csv(generate(40, seed=3), source)
    year = today() + dt.timedelta(days=365)
    with unit_of_work(settings) as s:
        admin = get_user(s, "admin")
        for name in QUIET:
            add_user(s, admin, name, {Role.RESEARCHER}, year)
        catalog.ingest_dataset(s, admin, settings, source, "cardiac-audit",
                               description="National audit of heart attack admissions, 2015-2024")
        catalog.add_grant(s, admin, settings, "heart-study", "cardiac-audit", expires=today() + dt.timedelta(days=90))
        heart = projects.get_project(s, "heart-study")
        for field, value in DETAILS.model_dump().items():  # the egress world's project states its basis
            setattr(heart, field, value)
        heart.purpose, heart.organisation, heart.lawful_basis = ("Model readmission risk after myocardial "
                                                                 "infarction.", "Northern University",
                                                                 "REC 21/NE/0101; 21/CAG/0077")
        _project(s, admin, "kidney-care", "Kidney function in diabetes", "quillfeather",
                 organisation="Southern Renal Institute", purpose="Track eGFR decline 100% of the time_x.")
        projects.add_member(s, admin, "kidney-care", "yarrowby")
        # Approved where the site requires nothing: the register says what it does not state.
        for action in (ProjectAction.APPROVE, ProjectAction.ACTIVATE):
            projects.transition_project(s, admin, "kidney-care", action,
                                        register_policy=requiring_nothing(REPO / "policies"))
        projects.transition_project(s, admin, "kidney-care", ProjectAction.SUSPEND,
                                    "quillfeather shared a password with yarrowby")
        _project(s, admin, "stroke-done", "Stroke rehabilitation", "yarrowby", organisation="Western College",
                 register=EXAMPLE_REGISTER)
        for action in (ProjectAction.APPROVE, ProjectAction.ACTIVATE, ProjectAction.CLOSE):
            projects.transition_project(s, admin, "stroke-done", action, "finished" if action == "close" else None)
        _project(s, admin, "lung-soon", "Lung screening uptake", "quillfeather", organisation="Eastern Lab",
                 register=EXAMPLE_REGISTER)
        projects.transition_project(s, admin, "lung-soon", ProjectAction.APPROVE)
        _project(s, admin, "secret-plan", "Proposed and never public", "quillfeather")
        _project(s, admin, "said-no", "Rejected and never public", "quillfeather")
        projects.transition_project(s, admin, "said-no", ProjectAction.REJECT, "not in the public interest")
    rid = to_state(world, EgressStatus.RELEASED)
    return home, rid


@pytest.fixture
def reg(tmp_path: Path, register_template: tuple[Path, int]) -> RegisterWorld:
    home = tmp_path / "home"
    shutil.copytree(register_template[0], home, symlinks=True)
    settings = Settings(home=home, db_url=f"sqlite:///{home / 'enclave.db'}", policies_dir=REPO / "policies")
    return RegisterWorld(settings=settings, released_request=register_template[1])
