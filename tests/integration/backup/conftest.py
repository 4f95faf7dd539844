"""Fixtures of the backup tests (helpers in backup_world.py)."""

from __future__ import annotations

import sys
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
