"""The isolation of a workspace container, used identically by interactive notebook
servers and batch jobs.

A workspace container runs as uid 1000 with no capabilities and no way to gain any, on a
read-only root filesystem (scratch space on tmpfs), within memory, CPU and process limits,
attached only to an ``--internal`` Docker network whose gateway is the host (where the hub
listens). It sees exactly the mounts it is given, and :class:`Mount` accepts only these kinds:
an approved dataset read-only under ``/data/``, the project's workspace at
``/home/jovyan/project``, a rerun's output folder, and the site's disclosure policy
read-only at ``/etc/enclave/policies``. The Docker socket is never mounted.

The functions here build docker-py arguments and are unit-testable without Docker, except
:func:`ensure_internal_network` and :func:`restrict_host_access`, which act on the engine
and the host firewall. docs/containers.md has the isolation table and what each part stops.
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import re
import stat
import subprocess
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from enclave.disclosure.policy import POLICIES_PATH
from enclave.enums import ContainerEngine, LostNodeAction
from enclave.errors import Conflict, InvalidInput
from enclave.policy import StrictModel, load_policy_file

WORKSPACE_PATH = "/home/jovyan/project"
DATA_ROOT = "/data"
# Where a rerun writes its outputs: a folder of the enclave outside every workspace (the
# rerun sees the workspace read-only, so a check never changes the researcher's files).
RERUN_OUTPUT_PATH = "/home/jovyan/rerun-output"
HOME_PATH = "/home/jovyan"
# Where a workspace container finds the site's policies that enclave.safe applies: a folder
# holding a copy of exactly POLICY_FILES (no other policy, no key), mounted read-only.
# Defined beside the disclosure policy, which the container side imports without this module.
POLICY_FILES = ("disclosure.yaml",)
# jovyan:users, as created in images/notebook/Dockerfile.
CONTAINER_USER = "1000:100"
SANDBOX_LABEL = "org.enclave.sandbox"
# The one nameserver a workspace container's DNS configuration names: its own loopback.
# The engine's embedded resolver (127.0.0.11 on a user-defined network) forwards names it
# does not know to the servers configured for the container. Left to the host's
# /etc/resolv.conf, a loopback server there (systemd-resolved's 127.0.0.53, a local
# dnsmasq) is queried from the *host's* network namespace, past the --internal network
# (CVE-2024-29018, engines before 23.0.11 / 25.0.5 / 26.0.0). A server given with --dns is
# queried from the container's own namespace instead, and on its loopback nothing listens
# (port 53 needs a capability the container lacks): every forwarded query goes nowhere.
CONTAINER_NAMESERVER = "127.0.0.1"

# Host paths whose exposure would hand a container control of the engine (and so the host).
ENGINE_SOCKETS = (
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock",
    "/run/docker/containerd/containerd.sock",
)

# Docker's size notation, as accepted by mem_limit and tmpfs size=: 512m, 4g ...
Size = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]*[kmg]$")]
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class ContainerPolicy(StrictModel):
    """Limits and placement of workspace containers (policies/containers.yaml)."""

    engine: ContainerEngine = ContainerEngine.DOCKER
    image: str = Field(default="enclave-notebook:latest", min_length=1)
    network: str = Field(default="enclave-internal", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    mem_limit: Size = "4g"
    cpu_limit: float = Field(default=2.0, gt=0, le=256)
    pids_limit: int = Field(default=512, ge=64)
    tmp_size: Size = "1g"
    home_size: Size = "256m"
    idle_cull_seconds: int = Field(default=3600, ge=60)
    job_timeout_seconds: int = Field(default=4 * 3600, ge=60)
    job_mem_limit: Size = "8g"
    job_max_concurrent: int = Field(default=2, ge=1)
    job_lost_node: LostNodeAction = LostNodeAction.FAIL
    job_lost_node_retries: int = Field(default=2, ge=1, le=10)


def load_container_policy(path: Path) -> ContainerPolicy:
    """Read policies/containers.yaml; raises enclave.errors.PolicyError on any problem."""
    return load_policy_file(path, ContainerPolicy)


def _is_engine_socket(path: str) -> bool:
    """True if ``path`` is, contains, or (through symlinks) leads to an engine socket."""
    candidates = {posixpath.normpath(path)}
    if os.path.lexists(path):
        candidates.add(os.path.realpath(path))
    for candidate in candidates:
        prefix = candidate.rstrip("/") + "/"
        if any(sock == candidate or sock.startswith(prefix) for sock in ENGINE_SOCKETS):
            return True
        if candidate.endswith(".sock"):
            return True
        try:
            if stat.S_ISSOCK(os.stat(candidate).st_mode):
                return True
        except OSError:
            pass
    return False


class Mount(BaseModel):
    """One bind mount into a workspace container; only four kinds are accepted.

    - a dataset: ``target`` under ``/data/`` (``/data/<dataset>[/...]``), ``read_only`` True;
    - the project's workspace: ``target`` exactly ``/home/jovyan/project``;
    - a rerun's own output folder: ``target`` exactly ``/home/jovyan/rerun-output``;
    - the site's policies for enclave.safe: ``target`` exactly ``/etc/enclave/policies``,
      ``read_only`` True.

    Anything else, a relative or un-normalised path, or a source that is or contains the
    Docker socket raises :class:`enclave.errors.InvalidInput` at construction.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    target: str
    read_only: bool = True

    @field_validator("source")
    @classmethod
    def _source_is_safe(cls, source: str) -> str:
        if not source.startswith("/") or posixpath.normpath(source) != source or "\x00" in source:
            raise InvalidInput(f"mount source {source!r} must be an absolute, normalised host path")
        if _is_engine_socket(source):
            raise InvalidInput(f"mount source {source!r} exposes the container engine's socket; never mount it")
        return source

    @field_validator("target")
    @classmethod
    def _target_is_allowed(cls, target: str) -> str:
        if target in (WORKSPACE_PATH, RERUN_OUTPUT_PATH, POLICIES_PATH):
            return target
        parts = target.split("/")
        if (
            target.startswith(DATA_ROOT + "/")
            and posixpath.normpath(target) == target
            and all(_SEGMENT.match(part) for part in parts[2:])
        ):
            return target
        raise InvalidInput(
            f"mount target {target!r} is not allowed; use {DATA_ROOT}/<dataset> (read-only), {WORKSPACE_PATH}, "
            f"{RERUN_OUTPUT_PATH} or {POLICIES_PATH} (read-only)"
        )

    @model_validator(mode="after")
    def _data_is_read_only(self) -> Mount:
        if self.is_data and not self.read_only:
            raise InvalidInput(f"dataset mount {self.target!r} must be read-only")
        if self.target == POLICIES_PATH and not self.read_only:
            raise InvalidInput(f"policy mount {self.target!r} must be read-only")
        return self

    @property
    def is_data(self) -> bool:
        return self.target not in (WORKSPACE_PATH, RERUN_OUTPUT_PATH, POLICIES_PATH)

    @classmethod
    def dataset(cls, source: str | Path, name: str) -> Mount:
        """An approved dataset (or project view) at /data/<name>, read-only."""
        return cls(source=str(source), target=f"{DATA_ROOT}/{name}", read_only=True)

    @classmethod
    def policies(cls, source: str | Path) -> Mount:
        """The folder holding the site's POLICY_FILES, at /etc/enclave/policies, read-only."""
        return cls(source=str(source), target=POLICIES_PATH, read_only=True)

    @classmethod
    def workspace(cls, source: str | Path, read_only: bool = False) -> Mount:
        """The project's shared workspace at /home/jovyan/project."""
        return cls(source=str(source), target=WORKSPACE_PATH, read_only=read_only)

    def to_docker(self) -> dict[str, Any]:
        """The Docker API's Mount object (what docker.types.Mount builds)."""
        # Unlike the older "binds", a mount of a missing source is an error: the engine
        # never makes an empty directory in its place.
        return {
            "Type": "bind",
            "Source": self.source,
            "Target": self.target,
            "ReadOnly": self.read_only,
            "BindOptions": {"Propagation": "rprivate"},
        }


def _check_mounts(mounts: list[Mount]) -> list[Mount]:
    """Validate again (a Mount made with model_construct skipped validation); no duplicates."""
    checked = []
    for mount in mounts:
        if not isinstance(mount, Mount):
            raise InvalidInput(f"mount {mount!r} is not an enclave.sandbox.Mount; build it with Mount(...)")
        checked.append(Mount.model_validate(dict(mount)))
    targets = [m.target for m in checked]
    duplicates = sorted({t for t in targets if targets.count(t) > 1})
    if duplicates:
        raise InvalidInput(f"mount target {duplicates[0]!r} is given twice; give each target once")
    return checked


def host_config(policy: ContainerPolicy, mounts: list[Mount], *, job: bool = False) -> dict[str, Any]:
    """Keyword arguments for docker-py's ``APIClient.create_host_config`` (what
    DockerSpawner's ``extra_host_config`` takes): the whole isolation of a workspace
    container. ``job=True`` applies the batch-job memory limit; everything else is identical.
    """
    mounts = _check_mounts(mounts)
    memory = policy.job_mem_limit if job else policy.mem_limit
    return {
        "network_mode": policy.network,
        "mounts": [m.to_docker() for m in mounts],
        "read_only": True,
        "tmpfs": {
            "/tmp": f"rw,nosuid,nodev,size={policy.tmp_size},mode=1777",
            # Home is scratch (kernel runtime files, IPython history, caches); only the
            # workspace below it persists.
            HOME_PATH: f"rw,nosuid,nodev,size={policy.home_size},uid=1000,gid=100,mode=0700",
        },
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "privileged": False,
        "mem_limit": memory,
        "memswap_limit": memory,  # no swap beyond the memory limit
        "nano_cpus": int(policy.cpu_limit * 1_000_000_000),
        "pids_limit": policy.pids_limit,
        "ipc_mode": "private",
        # No name the container looks up is forwarded anywhere (CONTAINER_NAMESERVER).
        "dns": [CONTAINER_NAMESERVER],
    }


def create_kwargs(policy: ContainerPolicy) -> dict[str, Any]:
    """Keyword arguments for ``APIClient.create_container`` besides image, command and
    host config (what DockerSpawner's ``extra_create_kwargs`` takes)."""
    return {
        "user": CONTAINER_USER,
        "working_dir": WORKSPACE_PATH,
        "labels": {SANDBOX_LABEL: "1"},
    }


def container_kwargs(policy: ContainerPolicy, mounts: list[Mount], *, job: bool = False) -> dict[str, Any]:
    """Keyword arguments for docker-py's high-level ``client.containers.create/run``:
    :func:`host_config` and :func:`create_kwargs` together, plus the policy's image."""
    kwargs = host_config(policy, mounts, job=job) | create_kwargs(policy)
    kwargs["image"] = policy.image
    return kwargs


def ensure_internal_network(client: Any, name: str) -> str:
    """Create (or check) the ``--internal`` bridge network ``name``; return its gateway IP.

    The network has no route out (the engine drops forwarded traffic) and containers on
    it cannot reach each other (inter-container communication off); the host is reachable
    on the gateway address, which is where the hub listens. An existing network of that
    name that is not internal, or lets containers talk, raises Conflict rather than being
    used. Pair with :func:`restrict_host_access`, which closes the host's other ports.
    """
    import docker.errors

    try:
        network = client.networks.get(name)
    except docker.errors.NotFound:
        try:
            network = client.networks.create(
                name,
                driver="bridge",
                internal=True,
                check_duplicate=True,
                options={"com.docker.network.bridge.enable_icc": "false"},
                labels={SANDBOX_LABEL: "1"},
            )
        except docker.errors.APIError:
            network = client.networks.get(name)  # created concurrently by another caller
    network.reload()
    attrs = network.attrs
    if not attrs.get("Internal"):
        raise Conflict(f"Docker network {name!r} exists but is not --internal; remove it (docker network rm {name})")
    if attrs.get("Options", {}).get("com.docker.network.bridge.enable_icc") != "false":
        raise Conflict(
            f"Docker network {name!r} lets containers reach each other; remove it (docker network rm {name})"
        )
    configs = attrs.get("IPAM", {}).get("Config") or []
    gateway = next((c.get("Gateway") for c in configs if c.get("Gateway")), None)
    if gateway is None:
        raise Conflict(f"Docker network {name!r} has no gateway address; remove it (docker network rm {name})")
    return gateway


def _bridge_and_chain(client: Any, name: str) -> tuple[str, str, str]:
    network = client.networks.get(name)
    attrs = network.attrs
    bridge = attrs.get("Options", {}).get("com.docker.network.bridge.name") or f"br-{network.id[:12]}"
    gateway = next(c["Gateway"] for c in attrs["IPAM"]["Config"] if c.get("Gateway"))
    ipaddress.ip_address(gateway)  # refuse anything odd before it reaches iptables
    return bridge, f"ENCLAVE-{network.id[:12]}", gateway


def _iptables(*args: str, check: bool = True) -> bool:
    done = subprocess.run(["iptables", "-w", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise Conflict(f"iptables {' '.join(args)} failed: {done.stderr.strip()}; run the hub as root")
    return done.returncode == 0


def restrict_host_access(client: Any, name: str, allowed_tcp_ports: list[int]) -> None:
    """Let containers on network ``name`` reach the host only on ``allowed_tcp_ports`` at
    the gateway address (the hub); drop everything else they send to the host.

    An internal network stops forwarding, but the host's own services (anything listening
    on 0.0.0.0) stay reachable through any host address. Replies to connections the host
    opens (the proxy talking to a server) still pass. Needs root; idempotent.
    """
    ports = sorted({int(p) for p in allowed_tcp_ports})
    if not all(0 < p < 65536 for p in ports):
        raise InvalidInput(f"allowed ports {allowed_tcp_ports!r} must be between 1 and 65535")
    bridge, chain, gateway = _bridge_and_chain(client, name)
    _iptables("-N", chain, check=False)
    _iptables("-F", chain)
    _iptables("-A", chain, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
    for port in ports:
        _iptables("-A", chain, "-p", "tcp", "-d", gateway, "--dport", str(port), "-j", "ACCEPT")
    _iptables("-A", chain, "-j", "DROP")
    if not _iptables("-C", "INPUT", "-i", bridge, "-j", chain, check=False):
        _iptables("-I", "INPUT", "1", "-i", bridge, "-j", chain)


def release_host_access(client: Any, name: str) -> None:
    """Remove what :func:`restrict_host_access` added for network ``name`` (before the
    network itself is removed)."""
    bridge, chain, _ = _bridge_and_chain(client, name)
    while _iptables("-D", "INPUT", "-i", bridge, "-j", chain, check=False):
        pass
    _iptables("-F", chain, check=False)
    _iptables("-X", chain, check=False)
