"""The demo enclave `make up` creates: real accounts that can sign in, active projects, views."""

from __future__ import annotations

from enclave.audit import verify_chain
from enclave.clock import utcnow
from enclave.catalog import service as catalog
from enclave.db.session import unit_of_work
from enclave.demo.setup import PEOPLE, current_code, setup_demo
from enclave.enums import ProjectStatus
from enclave.hub import signin
from enclave.projects import service as projects


def test_setup_demo_creates_signable_accounts_projects_and_views(settings):
    accounts = setup_demo(settings, patients=300)
    assert set(accounts) == {p.name for p in PEOPLE}
    assert (settings.home / "demo-accounts.json").stat().st_mode & 0o777 == 0o600
    with unit_of_work(settings) as session:
        for slug in ("cardio", "diabetes"):
            project = projects.get_project(session, slug)
            assert project.status is ProjectStatus.ACTIVE
            views = catalog.active_views(session, project)
            assert [name for name, _ in views] == ["demo"]
            assert all(path.exists() for _, path in views)
        # The two projects see different, minimised parts of the dataset.
        cardio, diabetes = (catalog.live_grants(session, projects.get_project(session, s))[0] for s in ("cardio", "diabetes"))
        assert "patients.nhs_number" not in cardio.columns_json and cardio.columns_json != diabetes.columns_json
        assert verify_chain(session).ok
    for slug in ("cardio", "diabetes"):
        notebooks = settings.workspaces_dir / slug / "notebooks"
        assert sorted(p.name for p in notebooks.glob("*.ipynb")) == ["cohort_analysis.ipynb", "quickstart.ipynb"]
        assert (settings.workspaces_dir / slug / "outbox").is_dir()
    with unit_of_work(settings) as session:
        user = signin.verify_sign_in(session, "ada", accounts["ada"]["password"], current_code(settings, "ada"), utcnow())
        assert user.name == "ada"


def test_setup_demo_is_idempotent(settings):
    first = setup_demo(settings, patients=200)
    with unit_of_work(settings) as session:
        events = verify_chain(session).checked
    second = setup_demo(settings, patients=200)
    assert first == second
    with unit_of_work(settings) as session:
        assert verify_chain(session).checked == events
