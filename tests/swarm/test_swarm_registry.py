"""Images without the internet, on the real swarm: the worker gets workspace images only
from the internal registry (scripts/registry.sh), by digest, over TLS with the enclave's
own CA. A service runs exactly the image the hub checked and a job records, whatever is
pushed under the same tag later; an image the registry does not hold as it is here is
refused in one line; workspaces cannot reach the registry."""

from __future__ import annotations

import io
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from enclave.config import Settings
from enclave.db.models import AuditEvent, JobRun
from enclave.db.session import unit_of_work
from enclave.errors import Conflict
from enclave.hub import swarm
from enclave.hub.access import prepare_workspace
from enclave.jobs import service
from enclave.jobs.states import JobStatus
from enclave.jobs.swarm_runner import SwarmRunner
from enclave.sandbox import ContainerPolicy
from enclave.users import get_user
from tests.conftest import REPO
from tests.engine_support import write_notebook

from .conftest import PREFIX, PROBE, Services, Swarm, enclave_on_swarm

SLEEP = ["python", "-c", "import os, time; print('pin=' + os.environ.get('ENCLAVE_PIN', '-'), flush=True);"
         " time.sleep(900)"]


@pytest.fixture(scope="module")
def registry(swarm_cluster: Swarm) -> str:
    """The registry's address, as the session's enclave is configured with it."""
    address = Settings.from_env().swarm_registry
    assert address, "scripts/swarm.sh up gave no registry (ENCLAVE_SWARM_REGISTRY is unset)"
    return address


@dataclass
class Variants:
    """Images made from the session's notebook image that differ only in one environment
    variable (ENCLAVE_PIN), so they share every layer: pushing and pulling one is quick."""

    swarm: Swarm
    built: list[str] = field(default_factory=list)

    def build(self, name: str, pin: str) -> str:
        dockerfile = f"FROM {self.swarm.image}\nENV ENCLAVE_PIN={pin}\n".encode()
        image, _ = self.swarm.client.images.build(fileobj=io.BytesIO(dockerfile), tag=name, rm=True, forcerm=True)
        self.built.append(image.id)
        return image.id

    def close(self) -> None:
        import docker.errors

        for image_id in self.built:
            try:
                self.swarm.client.images.remove(image_id, force=True)
            except docker.errors.APIError:
                pass  # still named by a later variant, removed with it


@pytest.fixture
def variants(swarm_cluster: Swarm) -> Iterator[Variants]:
    made = Variants(swarm_cluster)
    yield made
    made.close()


def push(image: str) -> str:
    """scripts/registry.sh push: the pinned reference it prints."""
    done = subprocess.run(["bash", str(REPO / "scripts" / "registry.sh"), "push", image], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def node_has(swarm_cluster: Swarm, image_id: str) -> bool:
    done = subprocess.run(["docker", "exec", swarm_cluster.node, "docker", "image", "inspect", image_id],
                          capture_output=True)
    return done.returncode == 0


def remove_from_node(swarm_cluster: Swarm, image_id: str) -> None:
    """Remove the image from the worker (retried while the containers of services removed
    just before still use it)."""
    deadline = time.monotonic() + 120
    while node_has(swarm_cluster, image_id):
        done = subprocess.run(["docker", "exec", swarm_cluster.node, "docker", "image", "rm", "-f", image_id],
                              capture_output=True, text=True)
        if done.returncode != 0 and time.monotonic() > deadline:
            raise AssertionError(f"cannot remove the image from {swarm_cluster.node}: {done.stderr.strip()}")
        time.sleep(1)


def tag(client, image_id: str, name: str) -> None:
    repository, _, version = name.rpartition(":")
    client.images.get(image_id).tag(repository, version)


def container_on_node(swarm_cluster: Swarm, container: str) -> dict:
    return json.loads(swarm_cluster.node_docker("inspect", container))[0]


def force_update(task_service) -> None:
    """Make the service start its task again (``docker service update --force``), reading
    its version afresh when the manager has moved it on meanwhile."""
    import docker.errors

    for _ in range(20):
        task_service.reload()
        try:
            task_service.force_update()
            return
        except docker.errors.APIError as exc:
            if "out of sequence" not in str(exc):
                raise
        time.sleep(0.5)
    raise AssertionError("the service could not be updated: its version kept changing")


def wait_for_new_task(task_service, old_container: str) -> str:
    """The container of the service's task that replaced ``old_container``."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        for task in task_service.tasks():
            container = task["Status"].get("ContainerStatus", {}).get("ContainerID")
            if container and container != old_container and task["Status"]["State"] == "running":
                return container
            if task["Status"].get("Err") and task["DesiredState"] == "running":
                raise AssertionError(f"the new task did not start: {task['Status']['Err']}")
        time.sleep(0.5)
    raise AssertionError("no new task within 300 s")


def test_swarm_registry_worker_without_the_image_pulls_the_pinned_digest(
        services: Services, swarm_cluster: Swarm, registry: str):
    client = swarm_cluster.client
    local = client.images.get(swarm_cluster.image)
    reference = swarm.check_image(client, swarm_cluster.image)
    assert reference.startswith(f"{registry}/") and "@sha256:" in reference, reference
    assert reference in local.attrs["RepoDigests"]
    # The worker does not hold the image: only the registry can give it.
    remove_from_node(swarm_cluster, local.id)

    task = services.start("alpha", SLEEP)
    assert task.node == swarm_cluster.node
    assert task.service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == reference
    attrs = container_on_node(swarm_cluster, task.container)
    assert attrs["Config"]["Image"] == reference
    # The container's image on the worker is the very image checked here (same config digest).
    assert attrs["Image"] == local.id
    pulled = json.loads(swarm_cluster.node_docker("image", "inspect", local.id))[0]
    assert reference in pulled["RepoDigests"]


def test_swarm_registry_pinned_service_keeps_its_image_when_the_tag_moves(
        services: Services, swarm_cluster: Swarm, registry: str, variants: Variants):
    client = swarm_cluster.client
    name = f"{PREFIX}pin:{uuid.uuid4().hex[:8]}"
    first = variants.build(name, "first")
    pinned = push(name)
    assert pinned.startswith(f"{registry}/{PREFIX}pin@sha256:"), pinned
    assert swarm.check_image(client, name) == pinned
    services.policy = services.policy.model_copy(update={"image": name})
    task = services.start("alpha", SLEEP)
    assert container_on_node(swarm_cluster, task.container)["Image"] == first

    # Another image is pushed under the same name and tag.
    second = variants.build(name, "second")
    moved = push(name)
    assert moved != pinned and second != first
    assert client.api.inspect_distribution(f"{registry}/{name}")["Descriptor"]["digest"] == moved.split("@")[1]
    # The service is made to start its task again: the new task runs the pinned image still.
    force_update(task.service)
    again = wait_for_new_task(task.service, task.container)
    attrs = container_on_node(swarm_cluster, again)
    assert attrs["Image"] == first and attrs["Config"]["Image"] == pinned
    logs = b"".join(task.service.logs(stdout=True, stderr=True)).decode(errors="replace")
    assert "pin=first" in logs and "pin=second" not in logs, logs
    # The hub now resolves the name to what was pushed last, and only because it was pushed.
    assert swarm.check_image(client, name) == moved


def test_swarm_registry_refuses_an_image_not_pushed_or_not_as_here(
        swarm_cluster: Swarm, registry: str, variants: Variants):
    client = swarm_cluster.client
    name = f"{PREFIX}pin:{uuid.uuid4().hex[:8]}"
    # Built here, never pushed.
    unpushed = variants.build(name, "local-only")
    with pytest.raises(Conflict) as err:
        swarm.check_image(client, name)
    assert f"is not in the registry {registry}" in str(err.value) and f"registry.sh push {name}" in str(err.value)
    assert "\n" not in str(err.value)
    # Pushed, then the registry's tag is moved to another image (pushed from elsewhere):
    # the image here is no longer what the registry gives for its name.
    push(name)
    other = variants.build(f"{PREFIX}other:{uuid.uuid4().hex[:8]}", "other")
    tag(client, other, f"{registry}/{name}")
    push(f"{registry}/{name}")
    assert client.images.get(name).id == unpushed  # the name here still means the first image
    with pytest.raises(Conflict) as err:
        swarm.check_image(client, name)
    assert "is not the image" in str(err.value) and "\n" not in str(err.value), err.value
    # A registry that does not answer for the image: refused, not run by id.
    with pytest.raises(Conflict, match="is not in the registry 172.17.0.1:1"):
        swarm.check_image(client, name, "172.17.0.1:1")
    # Without a registry the id is used (one host's swarm, where the engine has the image).
    assert swarm.check_image(client, name, "") == unpushed


def registry_script(action: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "scripts" / "registry.sh"), action], capture_output=True, text=True)


def test_swarm_registry_that_does_not_answer_refuses_rather_than_the_id(swarm_cluster: Swarm, registry: str):
    client = swarm_cluster.client
    pinned = swarm.check_image(client, swarm_cluster.image)
    ca = (Path("/etc/docker/certs.d") / registry / "ca.crt").read_bytes()
    assert registry_script("down").returncode == 0
    try:
        with pytest.raises(Conflict) as err:
            swarm.check_image(client, swarm_cluster.image)
        assert f"the registry {registry} did not answer" in str(err.value) and "\n" not in str(err.value)
    finally:
        up = registry_script("up")
    # `up` again: the same address, the same CA, the same storage (what was pushed is there).
    assert up.returncode == 0 and up.stdout.strip() == registry, up.stderr
    assert (Path("/etc/docker/certs.d") / registry / "ca.crt").read_bytes() == ca
    assert swarm.check_image(client, swarm_cluster.image) == pinned
    again = registry_script("up")
    assert again.returncode == 0 and "starting" not in again.stderr  # idempotent: it was running


def _job_enclave(swarm_cluster: Swarm, marker: str, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                 image: str) -> tuple[Settings, SwarmRunner]:
    settings, network = enclave_on_swarm(swarm_cluster, marker, pg_url, tmp_path, monkeypatch, {"cohort": "alice"})
    notebooks = prepare_workspace(settings, "cohort") / "notebooks"
    notebooks.mkdir()
    cells = ["import json, os\njson.dump({'pin': os.environ.get('ENCLAVE_PIN', '-')},"
             " open(os.environ['ENCLAVE_JOB_OUTPUT'] + '/pin.json', 'w'))\n"]
    os.chown(notebooks, 1000, 100)
    write_notebook(notebooks / "pin.ipynb", cells)
    policy = ContainerPolicy(engine="swarm", image=image, network=network, mem_limit="1g",
                             cpu_limit=1.0, job_mem_limit="1g")
    runner = SwarmRunner(settings, policy, swarm_cluster.client, container_prefix=f"{PREFIX}regjob-")
    runner.views = lambda _session, _project: []
    return settings, runner


def _run_one(settings: Settings, runner: SwarmRunner) -> JobRun:
    with unit_of_work(settings) as session:
        run_id = service.submit_job(session, get_user(session, "alice"), settings, "cohort", "notebooks/pin.ipynb",
                                    {}).id
    runner.work(once=True, idle_sleep=0.5)
    with unit_of_work(settings) as session:
        run = session.get(JobRun, run_id)
        session.expunge(run)
        return run


def test_swarm_registry_job_records_the_digest_it_ran(
        swarm_cluster: Swarm, marker: str, registry: str, variants: Variants, pg_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch):
    name = f"{PREFIX}pin:{uuid.uuid4().hex[:8]}"
    variants.build(name, "job")
    pinned = push(name)
    settings, runner = _job_enclave(swarm_cluster, marker, pg_url, tmp_path, monkeypatch, name)
    run = _run_one(settings, runner)
    assert run.status is JobStatus.SUCCEEDED, run.error
    # The provenance names the image by the digest every node pulled, and it ran on the worker.
    assert run.image == name and run.image_digest == pinned
    out = settings.workspaces_dir / "cohort" / "outbox" / "jobs" / str(run.id) / "pin.json"
    assert json.loads(out.read_text()) == {"pin": "job"}
    assert f"ran on node {swarm_cluster.node}" in service.log_path(settings, run.id).read_text()
    with unit_of_work(settings) as session:
        details = [e.details for e in session.scalars(select(AuditEvent).where(AuditEvent.target == f"job:{run.id}"))]
    assert any(d.get("image_digest") == pinned for d in details), details

    # An image the registry does not hold: the run fails at once, saying what to do.
    unpushed = f"{PREFIX}pin:{uuid.uuid4().hex[:8]}"
    variants.build(unpushed, "not-pushed")
    runner.policy = runner.policy.model_copy(update={"image": unpushed})
    run = _run_one(settings, runner)
    assert run.status is JobStatus.FAILED and run.image_digest is None
    assert "is not in the registry" in (run.error or "") and "\n" not in run.error, run.error
    assert not [s for s in swarm_cluster.client.services.list() if s.name.startswith(f"{PREFIX}regjob-")]


def test_swarm_registry_answers_only_over_tls_with_our_ca(swarm_cluster: Swarm, registry: str):
    host, port = registry.rsplit(":", 1)
    ca = Path("/etc/docker/certs.d") / registry / "ca.crt"
    # Plain HTTP gets no registry answer.
    with socket.create_connection((host, int(port)), timeout=10) as plain:
        plain.sendall(b"GET /v2/ HTTP/1.0\r\n\r\n")
        reply = plain.recv(4096)
    assert b"Docker-Distribution-Api-Version" not in reply and b" 200 " not in reply.split(b"\r\n")[0], reply
    # TLS trusting what the system trusts, not our CA: the certificate is refused.
    with pytest.raises(ssl.SSLCertVerificationError):
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            ssl.create_default_context().wrap_socket(raw, server_hostname=host)
    # With our CA: the registry's API.
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(f"GET /v2/ HTTP/1.1\r\nHost: {registry}\r\nConnection: close\r\n\r\n".encode())
            reply = b""
            while chunk := tls.recv(4096):
                reply += chunk
    assert reply.split(b"\r\n")[0].endswith(b"200 OK") and b"registry/2.0" in reply.lower(), reply
    # Neither engine treats the registry as insecure: both verify it with the CA in certs.d.
    for info in (swarm_cluster.client.info()["RegistryConfig"],
                 json.loads(swarm_cluster.node_docker("info", "--format", "{{json .RegistryConfig}}"))):
        assert not any(ipaddress.ip_address(host) in ipaddress.ip_network(cidr)
                       for cidr in info.get("InsecureRegistryCIDRs") or [])
        assert (info.get("IndexConfigs") or {}).get(registry, {}).get("Secure", True) is True
    on_node = subprocess.run(["docker", "exec", swarm_cluster.node, "cat", f"/etc/docker/certs.d/{registry}/ca.crt"],
                             capture_output=True, text=True, check=True).stdout
    assert on_node == ca.read_text()


def test_swarm_registry_unreachable_from_a_workspace(services: Services, registry: str):
    task, code, out = services.run("alpha", ["python", "-c", PROBE, registry])
    assert task.node == services.swarm.node
    assert code == 0, out
    assert f"{registry} CLOSED" in out, out
