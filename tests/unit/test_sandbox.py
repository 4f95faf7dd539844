"""enclave.sandbox without Docker: the policy file, mount validation, and the docker-py
arguments that carry the isolation."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pydantic import ValidationError

from enclave.errors import InvalidInput, PolicyError
from enclave.sandbox import (
    CONTAINER_USER,
    WORKSPACE_PATH,
    ContainerPolicy,
    Mount,
    container_kwargs,
    create_kwargs,
    host_config,
    load_container_policy,
)

REPO_POLICY = Path(__file__).resolve().parents[2] / "policies" / "containers.yaml"


@pytest.fixture
def policy() -> ContainerPolicy:
    return ContainerPolicy(network="enclave-internal", mem_limit="2g", job_mem_limit="6g", cpu_limit=1.5)


def test_sandbox_repository_policy_is_valid_and_explicit():
    policy = load_container_policy(REPO_POLICY)
    # Every field is written out in the file, so operators see every knob.
    text = REPO_POLICY.read_text()
    for field in ContainerPolicy.model_fields:
        assert f"\n{field}:" in text, field
    assert policy.image and policy.network


def test_sandbox_policy_unknown_key_is_an_error(tmp_path: Path):
    path = tmp_path / "containers.yaml"
    path.write_text("mem_limit: 4g\nmemory_limit: 8g\n")
    with pytest.raises(PolicyError, match="memory_limit: unknown key"):
        load_container_policy(path)


@pytest.mark.parametrize(
    "key, value",
    [("mem_limit", "4GB"), ("mem_limit", "0g"), ("tmp_size", "lots"), ("cpu_limit", "0"), ("pids_limit", "10"),
     ("network", "bad name"), ("idle_cull_seconds", "5")],
)
def test_sandbox_policy_bad_values_are_errors(tmp_path: Path, key: str, value: str):
    path = tmp_path / "containers.yaml"
    path.write_text(f"{key}: {value}\n")
    with pytest.raises(PolicyError, match=key):
        load_container_policy(path)


def test_sandbox_policy_is_frozen(policy: ContainerPolicy):
    with pytest.raises(ValidationError):
        policy.mem_limit = "64g"  # type: ignore[misc]


def test_sandbox_host_config_carries_the_isolation(policy: ContainerPolicy, tmp_path: Path):
    mounts = [Mount.workspace(tmp_path / "ws"), Mount.dataset(tmp_path / "d", "hes")]
    config = host_config(policy, mounts)
    assert config["network_mode"] == "enclave-internal"
    assert config["cap_drop"] == ["ALL"]
    assert config["security_opt"] == ["no-new-privileges"]
    assert config["read_only"] is True
    assert config["privileged"] is False
    assert set(config["tmpfs"]) == {"/tmp", "/home/jovyan"}
    assert "size=1g" in config["tmpfs"]["/tmp"]
    assert config["mem_limit"] == config["memswap_limit"] == "2g"
    assert config["nano_cpus"] == 1_500_000_000
    assert config["pids_limit"] == 512
    assert config["mounts"] == [
        {"Type": "bind", "Source": str(tmp_path / "ws"), "Target": WORKSPACE_PATH, "ReadOnly": False,
         "BindOptions": {"Propagation": "rprivate"}},
        {"Type": "bind", "Source": str(tmp_path / "d"), "Target": "/data/hes", "ReadOnly": True,
         "BindOptions": {"Propagation": "rprivate"}},
    ]
    # No host-wide namespaces, devices or binds sneak in.
    assert not {"binds", "devices", "pid_mode", "userns_mode", "cap_add", "volumes_from"} & set(config)


def test_sandbox_job_differs_only_in_memory(policy: ContainerPolicy):
    server, job = host_config(policy, []), host_config(policy, [], job=True)
    assert job["mem_limit"] == job["memswap_limit"] == "6g"
    assert {k: v for k, v in server.items() if "mem" not in k} == {k: v for k, v in job.items() if "mem" not in k}


def test_sandbox_create_kwargs_run_as_jovyan(policy: ContainerPolicy):
    assert create_kwargs(policy)["user"] == CONTAINER_USER == "1000:100"
    kwargs = container_kwargs(policy, [])
    assert kwargs["user"] == "1000:100" and kwargs["image"] == policy.image and kwargs["read_only"] is True


@pytest.mark.parametrize("name", ["hes", "hes-2024.v1", "cohort_a/2024-01"])
def test_sandbox_mount_dataset_targets_accepted(name: str):
    assert Mount.dataset("/srv/views/x", name).target == f"/data/{name}"


@pytest.mark.parametrize(
    "target",
    ["/", "/data", "/data/", "/home/jovyan", "/home/jovyan/project/sub", "/etc/passwd", "/opt/env",
     "/etc/enclave", "/etc/enclave/policies/disclosure.yaml", "/etc/enclave/policies/",
     "/data/../etc", "/data/x/../../etc", "data/x", "/data//x", "/data/.hidden", "/data/x/", "/tmp/x",
     "/var/run/docker.sock"],
)
def test_sandbox_mount_other_targets_refused(target: str):
    with pytest.raises(InvalidInput, match="not allowed"):
        Mount(source="/srv/x", target=target, read_only=True)


def test_sandbox_mount_data_must_be_read_only():
    with pytest.raises(InvalidInput, match="read-only"):
        Mount(source="/srv/x", target="/data/hes", read_only=False)
    assert Mount(source="/srv/x", target="/data/hes").read_only is True  # the default


def test_sandbox_mount_policies_must_be_read_only():
    with pytest.raises(InvalidInput, match="policy mount .* read-only"):
        Mount(source="/srv/p", target="/etc/enclave/policies", read_only=False)
    mount = Mount.policies("/srv/p")
    assert (mount.target, mount.read_only, mount.is_data) == ("/etc/enclave/policies", True, False)


@pytest.mark.parametrize(
    "source",
    ["/var/run/docker.sock", "/run/docker.sock", "/var/run", "/run", "/var", "/", "/run/containerd",
     "/home/x/podman.sock"],
)
def test_sandbox_mount_engine_socket_refused(source: str):
    with pytest.raises(InvalidInput, match="socket"):
        Mount(source=source, target=WORKSPACE_PATH)


def test_sandbox_mount_socket_file_and_symlink_refused(tmp_path: Path):
    sock_path = tmp_path / "engine"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_path))
    try:
        with pytest.raises(InvalidInput, match="socket"):
            Mount(source=str(sock_path), target=WORKSPACE_PATH)
        link = tmp_path / "innocent"
        link.symlink_to("/var/run/docker.sock")
        with pytest.raises(InvalidInput, match="socket"):
            Mount.dataset(link, "innocent")
    finally:
        server.close()


@pytest.mark.parametrize("source", ["relative/path", "/srv/../etc", "/srv//x", "/srv/x/"])
def test_sandbox_mount_unnormalised_source_refused(source: str):
    with pytest.raises(InvalidInput, match="absolute, normalised"):
        Mount(source=source, target=WORKSPACE_PATH)


def test_sandbox_mount_extra_field_refused():
    with pytest.raises(ValidationError):
        Mount(source="/srv/x", target=WORKSPACE_PATH, propagation="shared")  # type: ignore[call-arg]


def test_sandbox_host_config_refuses_duplicate_targets(policy: ContainerPolicy):
    with pytest.raises(InvalidInput, match="twice"):
        host_config(policy, [Mount.dataset("/srv/a", "x"), Mount.dataset("/srv/b", "x")])


def test_sandbox_host_config_refuses_unvalidated_mounts(policy: ContainerPolicy):
    # A mount built around validation (model_construct skips it) is still refused.
    sneaky = Mount.model_construct(source="/var/run/docker.sock", target="/var/run/docker.sock", read_only=False)
    with pytest.raises(InvalidInput):
        host_config(policy, [sneaky])
