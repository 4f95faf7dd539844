"""A job worker starts only under a policy naming its engine: Runner for one host's engine,
SwarmRunner for Swarm (and never on SQLite); the refusal comes before any engine is asked."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from enclave.config import Settings
from enclave.errors import PolicyError
from enclave.jobs.runner import Runner, runner_for
from enclave.jobs.swarm_runner import SwarmRunner
from tests.conftest import REPO


def _settings(tmp_path: Path, engine: str, db_url: str = "sqlite://") -> Settings:
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    path = policies / "containers.yaml"
    path.write_text(yaml.safe_dump(yaml.safe_load(path.read_text()) | {"engine": engine}))
    return Settings(home=tmp_path / "home", db_url=db_url, policies_dir=policies)


def test_runner_engine_plain_runner_refuses_a_swarm_policy(tmp_path: Path):
    with pytest.raises(PolicyError, match="engine: swarm"):
        Runner.from_settings(_settings(tmp_path, "swarm", "postgresql+psycopg://x@/db"))


def test_runner_engine_swarm_runner_refuses_a_docker_policy_and_sqlite(tmp_path: Path):
    with pytest.raises(PolicyError, match="engine: docker"):
        SwarmRunner.from_settings(_settings(tmp_path / "a", "docker"))
    with pytest.raises(PolicyError, match="needs PostgreSQL"):
        runner_for(_settings(tmp_path / "b", "swarm"))
