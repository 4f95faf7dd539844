"""Fixtures for tests that run the notebook image under the sandbox spec on a real engine.

The session builds (or reuses) the images through scripts/build-images.sh, creates its own
internal network with the host firewall applied, and removes every container and network
whose name starts with PREFIX, before and after. A failing test prints the logs of the
containers it started.
"""

from __future__ import annotations

import calendar
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

docker = pytest.importorskip("docker")

from enclave.sandbox import (  # noqa: E402
    ContainerPolicy,
    Mount,
    container_kwargs,
    ensure_internal_network,
    release_host_access,
    restrict_host_access,
)
# Shared with tests/swarm; imported by name by the tests here, and the report hook.
from tests.engine_support import (  # noqa: E402, F401
    PROBE,
    HostServer,
    engine_client,
    host_sentinel,
    ip_on,
    mark_docker_tests,
    probe_command,
    pytest_runtest_makereport,
    start_host_server,
    wait_for_http,
)

REPO = Path(__file__).resolve().parents[2]
PREFIX = "enclave-test-"
IMAGE = "enclave-notebook:latest"
LEFTOVER_AGE = 30 * 60  # seconds


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_docker_tests(Path(__file__).parent, items)


def _age(created: str) -> float:
    """Seconds since an engine timestamp such as 2026-11-22T11:39:39.05Z."""
    return time.time() - calendar.timegm(time.strptime(created[:19], "%Y-%m-%dT%H:%M:%S"))


def _remove_leftovers(client) -> None:
    """Remove PREFIX containers and networks that crashed sessions left behind.

    Only those older than LEFTOVER_AGE: younger ones may belong to a test session running
    beside this one (developers share machines). Each fixture removes what it made.
    """
    for container in client.containers.list(all=True, filters={"name": PREFIX}):
        if container.name.startswith(PREFIX) and _age(container.attrs["Created"]) > LEFTOVER_AGE:
            container.remove(force=True)
    for network in client.networks.list(filters={"name": PREFIX}):
        if not network.name.startswith(PREFIX) or _age(network.attrs["Created"]) <= LEFTOVER_AGE:
            continue
        try:
            release_host_access(client, network.name)
            network.remove()
        except Exception:  # noqa: BLE001 - best effort
            pass


def _remove_network(client, name: str) -> None:
    try:
        client.networks.get(name).remove()
    except docker.errors.NotFound:
        pass


@pytest.fixture(scope="session")
def client():
    engine = engine_client()
    _remove_leftovers(engine)
    yield engine
    _remove_leftovers(engine)
    engine.close()


@pytest.fixture(scope="session")
def image(client) -> str:
    """The notebook image, built (or found up to date) by the project's own script."""
    subprocess.run(
        ["bash", str(REPO / "scripts" / "build-images.sh")],
        check=True,
        env=os.environ | {"ENCLAVE_NOTEBOOK_IMAGE": IMAGE},
    )
    return IMAGE


@dataclass
class Net:
    name: str
    gateway: str
    hub: HostServer | None


@pytest.fixture(scope="session")
def internal(client) -> Iterator[Net]:
    """The enclave's internal network as the hub would set it up: created by
    ensure_internal_network, the host closed except a stand-in hub port on the gateway."""
    name = f"{PREFIX}internal-{uuid.uuid4().hex[:6]}"
    gateway = ensure_internal_network(client, name)
    hub = start_host_server(gateway, b"hub-stand-in")
    restrict_host_access(client, name, [hub.port])
    yield Net(name, gateway, hub)
    hub.close()
    release_host_access(client, name)
    _remove_network(client, name)


@pytest.fixture(scope="session")
def outside(client) -> Iterator[Net]:
    """An ordinary (non-internal) bridge network, standing for anywhere outside."""
    name = f"{PREFIX}outside-{uuid.uuid4().hex[:6]}"
    network = client.networks.create(name, driver="bridge")
    network.reload()
    gateway = network.attrs["IPAM"]["Config"][0]["Gateway"]
    yield Net(name, gateway, None)
    _remove_network(client, name)


@pytest.fixture
def policy(image: str, internal: Net) -> ContainerPolicy:
    return ContainerPolicy(image=image, network=internal.name, mem_limit="1g", cpu_limit=1.0)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A project workspace owned by jovyan (uid 1000), with outbox/."""
    ws = tmp_path / "workspace"
    (ws / "outbox").mkdir(parents=True)
    for path in (ws, ws / "outbox"):
        os.chown(path, 1000, 100)
    return ws


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """An approved dataset whose directory even grants write permission to everyone, so
    only the read-only mount can stop a write."""
    data = tmp_path / "dataset"
    data.mkdir()
    (data / "cohort.csv").write_text("age,sex\n34,F\n51,M\n")
    data.chmod(0o777)
    (data / "cohort.csv").chmod(0o666)
    return data


@dataclass
class Sandboxes:
    """Starts containers under the sandbox spec (or, for sentinels, plainly) and cleans up."""

    client: object
    policy: ContainerPolicy
    started: list = field(default_factory=list)

    def start(self, command: list[str], mounts: list[Mount] | None = None, **extra) -> object:
        kwargs = container_kwargs(self.policy, mounts or []) | extra
        container = self.client.containers.run(  # type: ignore[attr-defined]
            command=command, name=f"{PREFIX}{uuid.uuid4().hex[:10]}", detach=True, **kwargs
        )
        self.started.append(container)
        return container

    def run(self, command: list[str], mounts: list[Mount] | None = None, timeout: float = 120) -> tuple[int, str]:
        """Run to completion; returns (exit code, combined output)."""
        container = self.start(command, mounts)
        result = container.wait(timeout=timeout)
        return result["StatusCode"], container.logs().decode(errors="replace")

    def python(self, code: str, mounts: list[Mount] | None = None, timeout: float = 120) -> tuple[int, str]:
        return self.run(["python", "-c", code], mounts, timeout)

    def plain(self, command: list[str], network: str, image: str) -> object:
        """A container outside the sandbox spec (sentinels and control probes)."""
        container = self.client.containers.run(  # type: ignore[attr-defined]
            image, command=command, name=f"{PREFIX}{uuid.uuid4().hex[:10]}", detach=True,
            network=network, user="1000:100",
        )
        self.started.append(container)
        return container


@pytest.fixture
def sandboxes(client, policy: ContainerPolicy, request: pytest.FixtureRequest) -> Iterator[Sandboxes]:
    boxes = Sandboxes(client, policy)
    yield boxes
    report = getattr(request.node, "report_call", None)
    for container in boxes.started:
        if report is not None and report.failed:
            try:
                print(f"\n--- logs of {container.name} ---\n{container.logs().decode(errors='replace')}")
            except docker.errors.APIError:
                pass
        container.remove(force=True)
