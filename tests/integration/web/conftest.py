from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from enclave.config import Settings
from enclave.web.app import create_app
from tests.integration.web.world import authenticator, build_world, copy_world


@pytest.fixture(scope="session")
def world_template(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return build_world(tmp_path_factory.mktemp("web-world") / "home")


@pytest.fixture
def world(world_template: Settings, tmp_path: Path) -> Settings:
    return copy_world(world_template, tmp_path / "home")


@pytest.fixture
def client(world: Settings) -> TestClient:
    # raise_server_exceptions=False: a 500 must be seen as the user would see it.
    return TestClient(create_app(world, authenticator()), raise_server_exceptions=False)
