"""Migrations build the schema from empty on SQLite and on a real PostgreSQL server, matching the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from enclave.config import Settings
from enclave.db.models import Base
from enclave.db.session import engine_for, head_revision, unit_of_work, upgrade

def _assert_schema_matches_models(url: str) -> None:
    with engine_for(url).connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        assert context.get_current_revision() == head_revision()
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"


def _exercise(settings: Settings) -> None:
    from enclave.audit import verify_chain
    from tests.conftest import Factory

    with unit_of_work(settings) as session:
        Factory(session, settings).project("study", pi="pi", status="active", members=("m1",))
    with unit_of_work(settings) as session:
        assert verify_chain(session).ok


def test_migrations_from_empty_sqlite(tmp_path):
    settings = Settings.from_env({"ENCLAVE_HOME": str(tmp_path)})
    upgrade(settings)
    _assert_schema_matches_models(settings.db_url)
    _exercise(settings)
    upgrade(settings)  # idempotent


@pytest.mark.postgres
def test_migrations_from_empty_postgresql(tmp_path, pg_url):
    settings = Settings.from_env({"ENCLAVE_HOME": str(tmp_path), "ENCLAVE_DB_URL": pg_url})
    upgrade(settings)
    assert "audit_events" in inspect(engine_for(pg_url)).get_table_names()
    _assert_schema_matches_models(pg_url)
    _exercise(settings)


@pytest.mark.postgres
def test_migrations_downgrade_and_upgrade_postgresql(tmp_path, pg_url):
    settings = Settings.from_env({"ENCLAVE_HOME": str(tmp_path), "ENCLAVE_DB_URL": pg_url})
    upgrade(settings)
    from alembic import command

    from enclave.db.session import alembic_config

    command.downgrade(alembic_config(pg_url), "base")
    assert "projects" not in inspect(engine_for(pg_url)).get_table_names()
    upgrade(settings)
    _assert_schema_matches_models(pg_url)
