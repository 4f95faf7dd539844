"""Shared fixtures: a fresh enclave (state directory + migrated SQLite) per test.

Factories reach every state through the service layer, never by editing rows.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from enclave.clock import today
from enclave.config import Settings
from enclave.db.models import Project, User
from enclave.db.session import unit_of_work, upgrade
from enclave.enums import Role
from enclave.projects.tiers import load_tiers
from enclave.projects import service as projects
from enclave.projects.lifecycle import ProjectAction
from enclave.register.details import RegisterDetails
from enclave.users import add_user, get_user
from tests.register_support import EXAMPLE_REGISTER

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def enclave_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ENCLAVE_HOME (SQLite inside it) for this test, set in the environment."""
    home = tmp_path / "enclave-home"
    monkeypatch.setenv("ENCLAVE_HOME", str(home))
    monkeypatch.delenv("ENCLAVE_DB_URL", raising=False)
    monkeypatch.delenv("ENCLAVE_USER", raising=False)
    monkeypatch.setenv("ENCLAVE_POLICIES", str(REPO / "policies"))
    return home


@pytest.fixture
def settings(enclave_home: Path) -> Settings:
    """Settings of a migrated, empty enclave."""
    s = Settings.from_env()
    upgrade(s)
    return s


@pytest.fixture
def session(settings: Settings) -> Iterator[Session]:
    """One unit of work for the whole test (committed at the end)."""
    with unit_of_work(settings) as s:
        yield s


class Factory:
    """Builds users and projects through the service layer."""

    def __init__(self, session: Session, settings: Settings) -> None:
        self.session = session
        self.settings = settings
        self._admin: User | None = None

    @property
    def admin(self) -> User:
        """The enclave's first admin (created on an empty enclave, as in real life)."""
        if self._admin is None:
            self._admin = add_user(self.session, None, "root-admin", {Role.ADMIN})
        return self._admin

    def user(self, name: str, *roles: Role, training: dt.date | None = None) -> User:
        roles = roles or (Role.RESEARCHER,)
        training = training if training is not None else today() + dt.timedelta(days=365)
        return add_user(self.session, self.admin, name, set(roles), training)

    def project(self, slug: str, pi: str, status: str = "proposed", members: tuple[str, ...] = (),
                register: RegisterDetails | None = EXAMPLE_REGISTER) -> Project:
        """A project in ``status`` reached by the real transitions, with extra members and
        the register details approval needs."""
        tiers = load_tiers(self.settings.policies_dir)
        if self.session.query(User).filter(User.name == pi).one_or_none() is None:
            self.user(pi)
        project = projects.create_project(
            self.session, self.admin, tiers, slug=slug, title=f"Project {slug}", pi=pi,
            lay_summary="A study of outcomes.", end_date=today() + dt.timedelta(days=400), register=register,
        )
        for name in members:
            if self.session.query(User).filter(User.name == name).one_or_none() is None:
                self.user(name)
            projects.add_member(self.session, self.admin, slug, name)
        path = {
            "proposed": [],
            "approved": [ProjectAction.APPROVE],
            "rejected": [ProjectAction.REJECT],
            "active": [ProjectAction.APPROVE, ProjectAction.ACTIVATE],
            "suspended": [ProjectAction.APPROVE, ProjectAction.ACTIVATE, ProjectAction.SUSPEND],
            "closed": [ProjectAction.APPROVE, ProjectAction.ACTIVATE, ProjectAction.CLOSE],
        }[status]
        for action in path:
            projects.transition_project(self.session, self.admin, slug, action, reason="set up by a test")
        return project

    def get(self, name: str) -> User:
        return get_user(self.session, name)


@pytest.fixture
def factory(session: Session, settings: Settings) -> Factory:
    return Factory(session, settings)


PG_ADMIN_URL = os.environ.get("ENCLAVE_TEST_PG_URL", "postgresql+psycopg://root@/postgres?host=/var/run/postgresql")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh database on the real PostgreSQL server (started by make test / .ci/run),
    dropped afterwards. Fails, never skips, when the server is not there."""
    from sqlalchemy import create_engine, text

    from enclave.db.session import engine_for

    name = f"enclave_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({exc}); run 'make services' first")
    url = PG_ADMIN_URL.replace("/postgres?", f"/{name}?")
    try:
        yield url
    finally:
        engine_for(url).dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
