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
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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

REPO = Path(__file__).resolve().parents[2]
PREFIX = "enclave-test-"
IMAGE = "enclave-notebook:latest"
LEFTOVER_AGE = 30 * 60  # seconds


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.docker)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


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
    subprocess.run(["bash", str(REPO / "scripts" / "ensure-docker.sh")], check=True)
    engine = docker.from_env()
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
class HostServer:
    """A tiny HTTP server on the host that answers every GET with a fixed body."""

    host: str
    port: int
    body: bytes
    server: ThreadingHTTPServer = field(repr=False)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_host_server(host: str, body: bytes, port: int = 0) -> HostServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return HostServer(host, server.server_address[1], body, server)


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


def ip_on(container, network: str) -> str:
    container.reload()
    return container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]


def wait_for_http(url: str, timeout: float = 60) -> None:
    """Poll url from the host until it answers (any HTTP status)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


# Python run inside a container: try TCP connections, print one line per target.
PROBE = """
import socket, sys
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    s = socket.socket(); s.settimeout(3)
    try:
        s.connect((host, int(port)))
    except OSError as exc:
        print(target, "CLOSED", type(exc).__name__)
        continue
    reply = b""
    try:  # a connection that then stays silent still counts as OPEN
        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        while chunk := s.recv(4096):
            reply += chunk
    except OSError:
        pass
    print(target, "OPEN", reply.split(b"\\r\\n\\r\\n", 1)[-1].decode(errors="replace"))
    s.close()
"""


def probe_command(*targets: str) -> list[str]:
    return ["python", "-c", PROBE, *targets]


@pytest.fixture
def host_sentinel() -> Iterator[HostServer]:
    """A sentinel on a host port, bound to every host address (0.0.0.0)."""
    server = start_host_server("0.0.0.0", b"host-sentinel")
    yield server
    server.close()

