"""Fixtures of the backup tests (helpers in backup_world.py)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backup_world import World, make_enclave  # noqa: E402

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def busy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    """A busy enclave on SQLite in tmp_path/home, set in the environment."""
    home = tmp_path / "home"
    monkeypatch.setenv("ENCLAVE_HOME", str(home))
    monkeypatch.setenv("ENCLAVE_POLICIES", str(REPO / "policies"))
    monkeypatch.delenv("ENCLAVE_DB_URL", raising=False)
    monkeypatch.delenv("ENCLAVE_USER", raising=False)
    return make_enclave(home, REPO / "policies")


@pytest.fixture
def second_pg_url() -> Iterator[str]:
    """Another fresh database on the real PostgreSQL server (to restore into), dropped afterwards."""
    from sqlalchemy import create_engine, text

    from enclave.db.session import engine_for
    from tests.conftest import PG_ADMIN_URL

    name = f"enclave_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.replace("/postgres?", f"/{name}?")
    try:
        yield url
    finally:
        engine_for(url).dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
