"""enclave.hub.swarm without an engine: the engine setting, the PostgreSQL rule, and the
translation of the sandbox into a Swarm service (complete, or refused)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tornado import web

from enclave import sandbox
from enclave.config import Settings
from enclave.enums import ContainerEngine
from enclave.errors import Conflict, PolicyError
from enclave.hub import swarm
from enclave.hub.spawner import EnclaveSpawner
from enclave.hub.swarm_spawner import EnclaveSwarmSpawner
from enclave.jobs.runner import Runner
from enclave.jobs.swarm_runner import SwarmRunner
from enclave.sandbox import ContainerPolicy, Mount, load_container_policy

PG = "postgresql+psycopg://root@/enclave?host=/var/run/postgresql"


@pytest.fixture
def policy() -> ContainerPolicy:
    return ContainerPolicy(engine=ContainerEngine.SWARM, network="enclave-internal", mem_limit="2g",
                           job_mem_limit="6g", cpu_limit=1.5, pids_limit=300)


def _settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(home=tmp_path, db_url=db_url, policies_dir=tmp_path)


@pytest.mark.parametrize("value", ["docker", "swarm"])
def test_swarm_engine_setting_accepts_docker_and_swarm(tmp_path: Path, value: str):
    path = tmp_path / "containers.yaml"
    path.write_text(f"engine: {value}\n")
    assert load_container_policy(path).engine is ContainerEngine(value)


@pytest.mark.parametrize("value", ["kubernetes", "Swarm", "''", "[swarm]"])
def test_swarm_engine_setting_refuses_anything_else_in_one_line(tmp_path: Path, value: str):
    path = tmp_path / "containers.yaml"
    path.write_text(f"engine: {value}\n")
    with pytest.raises(PolicyError) as caught:
        load_container_policy(path)
    assert "engine" in str(caught.value) and "\n" not in str(caught.value)


def test_swarm_refuses_sqlite_in_one_line(tmp_path: Path, policy: ContainerPolicy):
    with pytest.raises(PolicyError, match="engine: swarm needs PostgreSQL") as caught:
        swarm.check_engine(_settings(tmp_path, f"sqlite:///{tmp_path}/e.db"), policy, ContainerEngine.SWARM)
    assert "\n" not in str(caught.value) and "ENCLAVE_DB_URL" in str(caught.value)
    swarm.check_engine(_settings(tmp_path, PG), policy, ContainerEngine.SWARM)  # PostgreSQL: accepted


def test_swarm_engine_must_match_the_component(tmp_path: Path, policy: ContainerPolicy):
    # A single-host spawner or worker under a swarm policy (and the reverse) refuses.
    with pytest.raises(PolicyError, match="engine: swarm"):
        swarm.check_engine(_settings(tmp_path, PG), policy, ContainerEngine.DOCKER)
    docker_policy = policy.model_copy(update={"engine": ContainerEngine.DOCKER})
    with pytest.raises(PolicyError, match="engine: docker"):
        swarm.check_engine(_settings(tmp_path, PG), docker_policy, ContainerEngine.SWARM)
    swarm.check_engine(_settings(tmp_path, f"sqlite:///{tmp_path}/e.db"), docker_policy, ContainerEngine.DOCKER)


def _spec(policy: ContainerPolicy, tmp_path: Path, job: bool = False) -> dict:
    (tmp_path / "view").mkdir(exist_ok=True)
    (tmp_path / "ws").mkdir(exist_ok=True)
    mounts = [Mount.dataset(tmp_path / "view", "cohort"), Mount.workspace(tmp_path / "ws")]
    return swarm.service_spec(policy, mounts, name="svc", image="sha256:abc", args=["jupyterhub-singleuser"],
                              env={"A": "1"}, labels={"x": "y"}, network="enclave-internal-cardio",
                              constraints=swarm.placement_constraints("m1"), job=job)


def test_swarm_service_spec_carries_every_sandbox_setting(policy: ContainerPolicy, tmp_path: Path):
    spec = _spec(policy, tmp_path)
    task = spec["task_template"]
    container = task["ContainerSpec"]
    assert container["User"] == sandbox.CONTAINER_USER
    assert container["ReadOnly"] is True
    assert container["CapabilityDrop"] == ["ALL"]
    assert container["DNSConfig"] == {"Nameservers": [sandbox.CONTAINER_NAMESERVER]}
    assert container["Dir"] == sandbox.WORKSPACE_PATH
    assert "Command" not in container and container["Args"] == ["jupyterhub-singleuser"]  # entrypoint kept
    binds = {m["Target"]: m for m in container["Mounts"] if m["Type"] == "bind"}
    assert binds["/data/cohort"]["ReadOnly"] is True
    assert binds[sandbox.WORKSPACE_PATH]["ReadOnly"] is False
    tmpfs = {m["Target"]: m["TmpfsOptions"] for m in container["Mounts"] if m["Type"] == "tmpfs"}
    assert tmpfs["/tmp"] == {"SizeBytes": 1024**3, "Mode": 0o1777}
    assert tmpfs[sandbox.HOME_PATH]["SizeBytes"] == 256 * 1024**2
    limits = task["Resources"]["Limits"]
    assert limits == {"MemoryBytes": 2 * 1024**3, "NanoCPUs": 1_500_000_000, "Pids": 300}
    assert task["RestartPolicy"]["Condition"] == "none"
    assert task["Placement"]["Constraints"] == [f"node.labels.{swarm.STORAGE_LABEL} == m1"]
    assert task["Networks"] == [{"Target": "enclave-internal-cardio"}]
    assert container["Labels"][sandbox.SANDBOX_LABEL] == "1"
    # A job gets the job memory limit and nothing else changes.
    job = _spec(policy, tmp_path, job=True)["task_template"]
    assert job["Resources"]["Limits"]["MemoryBytes"] == 6 * 1024**3
    assert job["ContainerSpec"]["Mounts"] == container["Mounts"]


@pytest.mark.parametrize("change", [
    {"sysctls": {"net.ipv4.ip_forward": "1"}},    # a setting the translation does not know
    {"cap_drop": ["NET_RAW"]},
    {"security_opt": []},
    {"memswap_limit": "8g"},
    {"privileged": True},
])
def test_swarm_service_spec_refuses_a_sandbox_setting_it_cannot_carry(
        policy: ContainerPolicy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: dict):
    # The sandbox gaining or changing a setting must never be dropped silently on Swarm.
    original = sandbox.host_config
    monkeypatch.setattr(sandbox, "host_config", lambda *a, **k: {**original(*a, **k), **change})
    with pytest.raises(Conflict, match="extend enclave.hub.swarm"):
        _spec(policy, tmp_path)


def test_swarm_tmpfs_with_an_unknown_option_is_refused():
    with pytest.raises(Conflict, match="exec"):
        swarm._tmpfs_mount("/tmp", "rw,exec,size=1g")


def test_swarm_spawner_is_enclave_spawner_with_a_service_underneath():
    # No copied logic: every check, mount, audit and meter step is EnclaveSpawner's own.
    for method in ("start", "stop", "_check_and_prepare", "_requested_project", "get_env", "get_args",
                   "_audit_stop", "options_from_form", "container_policy", "enclave_settings"):
        assert getattr(EnclaveSwarmSpawner, method) is getattr(EnclaveSpawner, method), method
    assert EnclaveSwarmSpawner.create_object is not EnclaveSpawner.create_object
    assert EnclaveSwarmSpawner.object_type == "service"
    # The job runner likewise: claims, limits, watching and recording are Runner's (its
    # _image takes Runner's choice of image and only names it as the nodes pull it).
    for method in ("run_next", "work", "recover", "_claim_and_start", "_watch", "_record", "_fail"):
        assert getattr(SwarmRunner, method) is getattr(Runner, method), method


@pytest.mark.parametrize("trait, value", [
    ("extra_container_spec", {"privileges": {}}),
    ("extra_task_spec", {"networks": ["ingress"]}),
    ("extra_placement_spec", {"constraints": []}),
    ("extra_resources_spec", {"mem_limit": "64g"}),
    ("extra_host_config", {"privileged": True}),
])
def test_swarm_spawner_refuses_settings_around_the_sandbox(trait: str, value: dict):
    spawner = EnclaveSwarmSpawner(meter_url="http://127.0.0.1:1", meter_token="t", **{trait: value})
    with pytest.raises(web.HTTPError) as caught:
        asyncio.run(spawner.start())
    assert trait in caught.value.log_message


def test_swarm_image_entrypoint_in_the_dockerfile_sets_no_new_privileges():
    dockerfile = Path(__file__).resolve().parents[3] / "images" / "notebook" / "Dockerfile"
    entry = next(line for line in dockerfile.read_text().splitlines() if line.startswith("ENTRYPOINT"))
    assert entry.startswith('ENTRYPOINT ["/usr/bin/setpriv", "--no-new-privs", "--"')


# --- image references with a registry (the pinning itself is proven in tests/swarm/test_swarm_registry.py)

@pytest.mark.parametrize(("image", "expected"), [
    ("enclave-notebook:latest", ("enclave-notebook", "latest")),
    ("enclave-notebook", ("enclave-notebook", "latest")),
    ("team/notebook:2026-12", ("team/notebook", "2026-12")),
    ("172.17.0.1:5000/enclave-notebook:v2", ("enclave-notebook", "v2")),
    ("172.17.0.1:5000/enclave-notebook", ("enclave-notebook", "latest")),
    (f"172.17.0.1:5000/enclave-notebook@sha256:{'a' * 64}", ("enclave-notebook", None)),
    (f"sha256:{'a' * 64}", (None, None)),
    ("0123456789ab", (None, None)),
])
def test_swarm_image_repository_and_tag(image: str, expected: tuple[str | None, str | None]):
    assert swarm._repository_and_tag(image, "172.17.0.1:5000") == expected


@pytest.mark.parametrize("registry", ["https://172.17.0.1:5000", "172.17.0.1:5000/", "reg.example/v2", "a b:1",
                                      "host:port"])
def test_swarm_registry_setting_must_be_host_and_port(registry: str):
    with pytest.raises(PolicyError, match="ENCLAVE_SWARM_REGISTRY") as err:
        swarm._check_registry(registry)
    assert "\n" not in str(err.value)


def test_swarm_registry_setting_from_the_environment(tmp_path: Path):
    env = {"ENCLAVE_HOME": str(tmp_path)}
    assert Settings.from_env(env).swarm_registry == ""
    assert Settings.from_env(env | {"ENCLAVE_SWARM_REGISTRY": " 172.17.0.1:5000 "}).swarm_registry == "172.17.0.1:5000"
