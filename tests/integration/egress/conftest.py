"""Fixtures of the egress tests (helpers live in egress_world.py)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from enclave.config import Settings
from enclave.db.session import upgrade

# The helpers module sits beside this file; conftest loads before pytest adds this folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from egress_world import World, build_world  # noqa: E402
from enclave.egress.policy import EgressEnv  # noqa: E402

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def world_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An enclave home built once through the services; each test gets a copy."""
    home = tmp_path_factory.mktemp("egress-template") / "home"
    settings = Settings(home=home, db_url=f"sqlite:///{home / 'enclave.db'}", policies_dir=REPO / "policies")
    upgrade(settings)
    build_world(settings)
    return home


@pytest.fixture
def world(tmp_path: Path, world_template: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    """An active project heart-study: rita (author), max and rhea (members; rhea also reviews),
    reviewers ria, rob, rex, a researcher outsider and the admin ``admin``."""
    home = tmp_path / "home"
    shutil.copytree(world_template, home, symlinks=True)
    monkeypatch.setenv("ENCLAVE_HOME", str(home))
    monkeypatch.setenv("ENCLAVE_POLICIES", str(REPO / "policies"))
    monkeypatch.delenv("ENCLAVE_DB_URL", raising=False)
    monkeypatch.delenv("ENCLAVE_USER", raising=False)
    settings = Settings.from_env()
    return World(settings=settings, env=EgressEnv.load(settings))


@pytest.fixture
def pg_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_url: str) -> World:
    """The same world on a fresh database of the real PostgreSQL server."""
    monkeypatch.setenv("ENCLAVE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ENCLAVE_DB_URL", pg_url)
    monkeypatch.setenv("ENCLAVE_POLICIES", str(REPO / "policies"))
    settings = Settings.from_env()
    upgrade(settings)
    world = build_world(settings)
    world.env = EgressEnv.load(settings)
    return world
