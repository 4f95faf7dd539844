"""A real two-node Docker Swarm for the swarm tests, built once per session.

The session builds the images, then ``scripts/swarm.sh up`` makes this host's engine the
manager (unless it already is one) and starts a worker node: a container running its own
engine, mounting the session's shared store at the same path (standing for NFS). The
manager gets no workspaces (enclave.hub.swarm.verify_nodes labels workers only), so every
workspace service lands on the worker. Everything is removed at the end (``scripts/swarm.sh down`` leaves the swarm if
the session created it); tests never skip: a swarm that cannot be built fails them.
"""

from __future__ import annotations

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

from enclave.enums import ContainerEngine  # noqa: E402
from enclave.hub import swarm  # noqa: E402
from enclave.sandbox import SANDBOX_LABEL, ContainerPolicy, Mount  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PREFIX = "enclave-test-sw-"
IMAGE = "enclave-notebook:latest"


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
    client = docker.from_env()
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
              job: bool = False) -> Task:
        name = f"{PREFIX}{uuid.uuid4().hex[:10]}"
        image_id = swarm.check_image(self.swarm.client, self.policy.image)
        spec = swarm.service_spec(self.policy, mounts or [], name=name, image=image_id, args=args, env={},
                                  labels={}, network=self.network(project),
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


def ip_on(container, network: str) -> str:
    container.reload()
    return container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]


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
    try:
        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        while chunk := s.recv(4096):
            reply += chunk
    except OSError:
        pass
    print(target, "OPEN", reply.split(b"\\r\\n\\r\\n", 1)[-1].decode(errors="replace"))
    s.close()
"""

# A sentinel: answers every connection with its name (python's http.server in the image).
SENTINEL = ["python", "-c",
            "import http.server, sys\n"
            "class H(http.server.BaseHTTPRequestHandler):\n"
            "    def do_GET(self):\n"
            "        self.send_response(200); self.end_headers(); self.wfile.write(sys.argv[1].encode())\n"
            "http.server.ThreadingHTTPServer(('0.0.0.0', 8080), H).serve_forever()\n"]


def start_host_server(host: str, body: bytes) -> ThreadingHTTPServer:
    """A sentinel on a host port: answers every GET with ``body``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
