"""The hub's start-up on Swarm (enclave.hub.config.swarm_startup), without an engine: what
it refuses, in one line, before it asks the engine anything."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from enclave.config import Settings
from enclave.enums import ContainerEngine
from enclave.errors import PolicyError
from enclave.hub.config import SwarmHub, swarm_startup
from enclave.sandbox import ContainerPolicy

PG = "postgresql+psycopg://root@/enclave?host=/var/run/postgresql"


class NoEngine:
    """Any use of the engine fails the test: these refusals come first."""

    def __getattr__(self, name: str):
        raise AssertionError(f"the engine was asked ({name}) before the refusal")


def _settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(home=tmp_path / "home", db_url=db_url, policies_dir=tmp_path / "policies")


@pytest.mark.parametrize(("db_url", "env", "says"), [
    ("sqlite:///x.db", {"ENCLAVE_HUB_CONTAINER": "hub", "ENCLAVE_HUB_NETWORK": "hub"}, "engine: swarm needs PostgreSQL"),
    (PG, {}, "the hub runs in a container on the swarm's manager"),
    (PG, {"ENCLAVE_HUB_CONTAINER": "hub"}, "sets ENCLAVE_HUB_CONTAINER and ENCLAVE_HUB_NETWORK"),
], ids=["sqlite", "no-container", "no-network"])
def test_hub_swarm_startup_refuses_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               db_url: str, env: dict[str, str], says: str) -> None:
    for key in ("ENCLAVE_HUB_CONTAINER", "ENCLAVE_HUB_NETWORK"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    policy = ContainerPolicy(engine=ContainerEngine.SWARM)
    with pytest.raises(SystemExit) as stopped:
        swarm_startup(_settings(tmp_path, db_url), policy, NoEngine(), logging.getLogger("test"))
    message = str(stopped.value)
    assert message.startswith("the hub cannot start: ") and says in message and "\n" not in message


def test_hub_swarm_startup_refuses_a_policy_naming_docker(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as stopped:
        swarm_startup(_settings(tmp_path, PG), ContainerPolicy(engine=ContainerEngine.DOCKER), NoEngine(),
                      logging.getLogger("test"))
    assert "engine: docker" in str(stopped.value)


def test_hub_swarm_hub_from_env_reads_the_container_and_the_resolver_file() -> None:
    hub = SwarmHub.from_env({"ENCLAVE_HUB_CONTAINER": " enclave-hub ", "ENCLAVE_HUB_NETWORK": "enclave-hub",
                             "ENCLAVE_HOST_RESOLV_CONF": "/run/enclave/host-resolv.conf"})
    assert hub == SwarmHub("enclave-hub", "enclave-hub", Path("/run/enclave/host-resolv.conf"))
    assert SwarmHub.from_env({"ENCLAVE_HUB_CONTAINER": "a", "ENCLAVE_HUB_NETWORK": "b"}).resolv_conf == \
        Path("/etc/resolv.conf")
    with pytest.raises(PolicyError):
        SwarmHub.from_env({"ENCLAVE_HUB_CONTAINER": "", "ENCLAVE_HUB_NETWORK": "b"})
