"""Demo data and a few people and projects for the catalogue's integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from enclave.demo.synthetic import generate, write_csv, write_fhir
from enclave.enums import Role


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CSV (with dictionary.yaml) and FHIR exports of 200 synthetic patients, written once."""
    root = tmp_path_factory.mktemp("demo")
    data = generate(200, seed=11)
    write_csv(data, root / "csv")
    write_fhir(data, root / "fhir")
    return root


@pytest.fixture
def people(factory):  # type: ignore[no-untyped-def]
    """An admin who grants, and two active projects with one researcher each."""
    factory.user("curator", Role.ADMIN)
    factory.project("cardio", "alice", status="active")
    factory.project("diabetes", "bob", status="active")
    return factory
