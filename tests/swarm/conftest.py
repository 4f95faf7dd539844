"""A real two-node Docker Swarm for the swarm tests, built once per session.

The session builds the images, then ``scripts/swarm.sh up`` makes this host's engine the
manager (unless it already is one) and starts a worker node: a container running its own
engine, mounting the session's shared store at the same path (standing for NFS). The
manager gets no workspaces (enclave.hub.swarm.verify_nodes labels workers only), so every
workspace service lands on the worker. Everything is removed at the end (``scripts/swarm.sh down`` leaves the swarm if
the session created it); tests never skip: a swarm that cannot be built fails them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

docker = pytest.importorskip("docker")

from enclave.config import Settings  # noqa: E402
from enclave.db.session import unit_of_work, upgrade  # noqa: E402
from enclave.enums import ContainerEngine  # noqa: E402
from enclave.hub import swarm  # noqa: E402
from enclave.hub.swarm_spawner import EnclaveSwarmSpawner  # noqa: E402
from enclave.sandbox import SANDBOX_LABEL, ContainerPolicy, Mount  # noqa: E402
from tests.conftest import Factory  # noqa: E402
# Shared with tests/docker; the tests here import some by name, and the report hook.
from tests.engine_support import (  # noqa: E402, F401
    PROBE,
    engine_client,
    host_sentinel,
    ip_on,
    mark_docker_tests,
    pytest_runtest_makereport,
)

REPO = Path(__file__).resolve().parents[2]
PREFIX = "enclave-test-sw-"
IMAGE = "enclave-notebook:latest"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_docker_tests(Path(__file__).parent, items)


@dataclass
class Swarm:
    client: object
    node: str          # the worker's host name
    node_id: str
    shared: Path       # the store both nodes mount at this path
    image: str
    manager_id: str

    def node_docker(self, *args: str, check: bool = True) -> str:
        """Run the docker client of the worker node (its own engine)."""
        done = subprocess.run(["docker", "exec", self.node, "docker", *args], capture_output=True, text=True)
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} on {self.node}: {done.stderr.strip()}")
        return done.stdout

    def node_state(self) -> str:
        """The worker's state as the manager sees it ('gone' once it is removed)."""
        try:
            return self.client.nodes.get(self.node_id).attrs["Status"]["State"]
        except docker.errors.NotFound:
            return "gone"

    def remove_worker(self, timeout: float = 300) -> None:
        """The worker leaves the swarm and the manager removes it (its id is then gone)."""
        self.node_docker("swarm", "leave", "--force")
        deadline = time.monotonic() + timeout
        while self.node_state() == "ready" and time.monotonic() < deadline:
            time.sleep(1)
        self.client.nodes.get(self.node_id).remove(force=True)

    def rejoin(self, timeout: float = 300) -> None:
        """Join the removed worker again, as a new node (a new id), and label it again for
        the shared store, so what follows finds the swarm as the session made it."""
        if self.node_docker("info", "-f", "{{.Swarm.LocalNodeState}}").strip() != "active":
            token = self.client.swarm.attrs["JoinTokens"]["Worker"]
            address = self.client.info()["Swarm"]["RemoteManagers"][0]["Addr"]
            self.node_docker("swarm", "join", "--token", token, address)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = [n for n in self.client.nodes.list() if n.attrs["Description"]["Hostname"] == self.node
                     and n.attrs["Status"]["State"] == "ready"]
            if ready:
                self.node_id = ready[0].id
                break
            time.sleep(1)
        else:
            raise AssertionError(f"{self.node} did not rejoin within {timeout} s")
        verdicts = swarm.verify_nodes(self.client, self.shared, self.image)
        assert verdicts[self.node] == "ok", verdicts


def _script(action: str, env: dict[str, str]) -> None:
    done = subprocess.run(["bash", str(REPO / "scripts" / "swarm.sh"), action], env=os.environ | env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/swarm.sh {action} failed:\n{done.stderr[-3000:]}")


@pytest.fixture(scope="session")
def swarm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swarm]:
    subprocess.run(["bash", str(REPO / "scripts" / "build-images.sh")], check=True,
                   env=os.environ | {"ENCLAVE_NOTEBOOK_IMAGE": IMAGE})
    # For a developer's quick re-runs: a swarm already made by scripts/swarm.sh with this
    # node name and shared folder is used, and left up afterwards.
    reuse = os.environ.get("ENCLAVE_TEST_SWARM_REUSE", "")
    shared = Path(os.environ["ENCLAVE_SWARM_SHARED"]) if reuse else tmp_path_factory.mktemp("swarm-shared")
    node = reuse or f"{PREFIX}node-{uuid.uuid4().hex[:6]}"
    client = engine_client()
    # A tag of this session's own: a rebuild of the shared name meanwhile (by another test
    # session) must not leave the worker without the image the tests run.
    image = f"{PREFIX}notebook:{uuid.uuid4().hex[:8]}"
    client.images.get(IMAGE).tag(image)
    env = {"ENCLAVE_SWARM_NODE": node, "ENCLAVE_SWARM_SHARED": str(shared), "ENCLAVE_SWARM_IMAGES": image}
    manager_id = ""
    registry = pytest.MonkeyPatch()
    try:
        _script("up", env)
        # The worker gets images only from the internal registry (scripts/registry.sh):
        # every service of the session names its image by digest there.
        registry.setenv("ENCLAVE_SWARM_REGISTRY", subprocess.run(
            ["bash", str(REPO / "scripts" / "registry.sh"), "address"], capture_output=True, text=True,
            check=True).stdout.strip())
        manager_id = client.info()["Swarm"]["NodeID"]
        node_id = next(n.id for n in client.nodes.list() if n.attrs["Description"]["Hostname"] == node)
        yield Swarm(client, node, node_id, shared, image, manager_id)
    finally:
        registry.undo()
        for service in client.services.list(filters={"label": SANDBOX_LABEL}):
            if service.name.startswith(PREFIX):
                service.remove()
        if not reuse:
            _script("down", env)
        else:
            subprocess.run(["docker", "exec", node, "docker", "rmi", image], capture_output=True)
        client.images.remove(image)
        for network in client.networks.list(filters={"name": PREFIX}):
            try:
                network.remove()
            except docker.errors.APIError:
                pass
        client.close()


@pytest.fixture(scope="session")
def marker(swarm_cluster: Swarm) -> str:
    """The shared store's marker; the worker is verified (and labelled) to see it."""
    verdicts = swarm.verify_nodes(swarm_cluster.client, swarm_cluster.shared, swarm_cluster.image)
    assert verdicts[swarm_cluster.node] == "ok", verdicts
    return swarm.ensure_marker(swarm_cluster.shared)


@pytest.fixture
def policy(swarm_cluster: Swarm) -> ContainerPolicy:
    return ContainerPolicy(engine=ContainerEngine.SWARM, image=swarm_cluster.image,
                           network=f"{PREFIX}{uuid.uuid4().hex[:6]}", mem_limit="1g", cpu_limit=1.0,
                           pids_limit=256, job_mem_limit="1g")


@dataclass
class Task:
    service: object
    node: str
    container: str  # its id on the node


@dataclass
class Services:
    """Starts workspace services under the sandbox's spec (via enclave.hub.swarm) and
    plain containers on the manager (sentinels, stand-ins for the hub), and cleans up."""

    swarm: Swarm
    policy: ContainerPolicy
    marker: str
    services: list = field(default_factory=list)
    containers: list = field(default_factory=list)
    networks: list = field(default_factory=list)

    def network(self, project: str) -> str:
        name = swarm.ensure_project_network(self.swarm.client, self.policy, project)
        self.networks.append(name)
        return name

    def start(self, project: str, args: list[str], mounts: list[Mount] | None = None, *,
              job: bool = False, labels: dict[str, str] | None = None) -> Task:
        name = f"{PREFIX}{uuid.uuid4().hex[:10]}"
        image_id = swarm.check_image(self.swarm.client, self.policy.image)
        spec = swarm.service_spec(self.policy, mounts or [], name=name, image=image_id, args=args, env={},
                                  labels=labels or {}, network=self.network(project),
                                  constraints=swarm.placement_constraints(self.marker), job=job)
        service = self.swarm.client.services.get(self.swarm.client.api.create_service(**spec)["ID"])
        self.services.append(service)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            tasks = service.tasks()
            running = [t for t in tasks if t["Status"].get("ContainerStatus", {}).get("ContainerID")]
            if running:
                task = running[0]
                node = self.swarm.client.nodes.get(task["NodeID"]).attrs["Description"]["Hostname"]
                return Task(service, node, task["Status"]["ContainerStatus"]["ContainerID"])
            errors = [t["Status"].get("Err") for t in tasks if t["Status"].get("Err")]
            if errors:
                raise AssertionError(f"service {name} did not start: {errors[0]}")
            time.sleep(0.3)
        raise AssertionError(f"service {name} got no task within 300 s")

    def run(self, project: str, args: list[str], mounts: list[Mount] | None = None, *,
            job: bool = False) -> tuple[Task, int, str]:
        """Run to completion on a node; returns (task, exit code, output)."""
        task = self.start(project, args, mounts, job=job)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            states = [t["Status"] for t in task.service.tasks()]
            done = [s for s in states if s["State"] in ("complete", "failed", "rejected", "shutdown")]
            if done:
                code = done[0].get("ContainerStatus", {}).get("ExitCode")
                out = b"".join(task.service.logs(stdout=True, stderr=True)).decode(errors="replace")
                return task, code, out
            time.sleep(0.3)
        raise AssertionError("service did not finish within 300 s")

    def python(self, project: str, code: str, mounts: list[Mount] | None = None) -> tuple[Task, int, str]:
        return self.run(project, ["python", "-c", code], mounts)

    def plain(self, command: list[str], network: str) -> object:
        """A container on the manager outside the sandbox (sentinels, a hub stand-in)."""
        container = self.swarm.client.containers.run(
            self.policy.image, command=command, name=f"{PREFIX}{uuid.uuid4().hex[:10]}", detach=True,
            network=network, user="1000:100")
        self.containers.append(container)
        return container

    def close(self, failed: bool) -> None:
        for service in self.services:
            if failed:
                try:
                    logs = b"".join(service.logs(stdout=True, stderr=True)).decode(errors="replace")
                    print(f"\n--- logs of {service.name} ---\n{logs}")
                except docker.errors.APIError:
                    pass
            try:
                service.remove()
            except docker.errors.APIError:
                pass
        for container in self.containers:
            container.remove(force=True)
        for name in self.networks:
            for _ in range(40):
                try:
                    self.swarm.client.networks.get(name).remove()
                    break
                except docker.errors.NotFound:
                    break
                except docker.errors.APIError:
                    time.sleep(0.5)  # a task that is shutting down still holds it


@pytest.fixture
def services(swarm_cluster: Swarm, policy: ContainerPolicy, marker: str,
             request: pytest.FixtureRequest) -> Iterator[Services]:
    boxes = Services(swarm_cluster, policy, marker)
    yield boxes
    report = getattr(request.node, "report_call", None)
    boxes.close(failed=report is not None and report.failed)


@dataclass
class HubUser:
    """What a spawner reads of jupyterhub.user.User."""

    name: str
    url: str = ""
    id: int = 1


def enclave_on_swarm(swarm_cluster: Swarm, marker: str, pg_url: str, tmp_path: Path,
                     monkeypatch: pytest.MonkeyPatch, projects: dict[str, str]) -> tuple[Settings, str]:
    """An enclave configured for the swarm: its home on the shared store (with the store's
    marker), PostgreSQL, policies saying engine: swarm with this session's image and a
    network prefix of its own, and ``projects`` (slug -> PI) active. Returns the settings and
    the network prefix."""
    home = swarm_cluster.shared / f"home-{uuid.uuid4().hex[:6]}"
    home.mkdir()
    (home / swarm.MARKER_NAME).write_text(marker + "\n")
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    containers = yaml.safe_load((policies / "containers.yaml").read_text())
    network = f"{PREFIX}{uuid.uuid4().hex[:6]}"
    containers.update(engine="swarm", image=swarm_cluster.image, network=network, mem_limit="1g", cpu_limit=1.0,
                      job_mem_limit="1g")
    (policies / "containers.yaml").write_text(yaml.safe_dump(containers))
    monkeypatch.setenv("ENCLAVE_HOME", str(home))
    monkeypatch.setenv("ENCLAVE_DB_URL", pg_url)
    monkeypatch.setenv("ENCLAVE_POLICIES", str(policies))
    settings = Settings.from_env()
    upgrade(settings)
    with unit_of_work(settings) as session:
        factory = Factory(session, settings)
        for slug, pi in projects.items():
            factory.project(slug, pi, "active")
    return settings, network


def server_spawner(settings: Settings, user: str, project: str) -> EnclaveSwarmSpawner:
    """The hub's spawner of ``user``'s server for ``project``, built as the hub builds it
    (JupyterHub's own Hub, Server and unsaved ORM spawner objects), with no hub process:
    its command only waits, so that it outlives the absent hub."""
    from jupyterhub import orm
    from jupyterhub.objects import Hub, Server

    spawner = EnclaveSwarmSpawner(
        user=HubUser(user, url=f"/user/{user}/"), orm_spawner=orm.Spawner(name=project), hub=Hub(ip="hub", port=8081),
        enclave_home=str(settings.home), prefix=f"{PREFIX}nb", meter_url="http://127.0.0.1:9", meter_token="t",
        api_token="token", oauth_client_id=f"jupyterhub-user-{user}-{project}",
        cmd=["python", "-c", "import time; time.sleep(900)"])
    spawner.server = Server(ip="0.0.0.0", port=8888, base_url=f"/user/{user}/{project}/")
    return spawner


async def spawn(spawner: EnclaveSwarmSpawner) -> tuple[str, int]:
    """What EnclaveSpawner.start does before its readiness check and the meter."""
    from dockerspawner import DockerSpawner

    spawner._enclave_policy, spawner._enclave_mounts = await asyncio.to_thread(
        spawner._check_and_prepare, spawner.name, None)
    return await DockerSpawner.start(spawner)


def remove_server(swarm_cluster: Swarm, spawner: EnclaveSwarmSpawner, network: str) -> None:
    """Remove the server's service (if still there) and its project's network."""
    for service in swarm_cluster.client.services.list(filters={"name": spawner.service_name}):
        service.remove()
    for _ in range(40):
        try:
            swarm_cluster.client.networks.get(f"{network}-{spawner.name}").remove()
            break
        except docker.errors.NotFound:
            break
        except docker.errors.APIError:
            time.sleep(0.5)  # a task still shutting down holds it


# A sentinel: answers every connection with its name (python's http.server in the image).
SENTINEL = ["python", "-c",
            "import http.server, sys\n"
            "class H(http.server.BaseHTTPRequestHandler):\n"
            "    def do_GET(self):\n"
            "        self.send_response(200); self.end_headers(); self.wfile.write(sys.argv[1].encode())\n"
            "http.server.ThreadingHTTPServer(('0.0.0.0', 8080), H).serve_forever()\n"]
