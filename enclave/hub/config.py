"""What jupyterhub_config.py reads: where the hub keeps its state, its ports, and the
hub-managed services with their roles.

Capabilities that run as hub-managed services (the web app ...) add their entry to
:func:`extra_services` (and the scopes it needs to :func:`extra_service_roles`); the
config file passes them to JupyterHub with the built-in idle culler and enforcer.
With ``engine: swarm`` the hub runs in a container on a Swarm manager: :class:`SwarmHub`
says which, and :func:`swarm_startup` makes the checks that replace the one-host firewall.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enclave.config import Settings
from enclave.enums import ContainerEngine
from enclave.errors import EnclaveError, PolicyError
from enclave.sandbox import ContainerPolicy

CULLER = "idle-culler"
ENFORCER = "enclave-enforcer"
JOB_WORKER = "enclave-jobs"
METER = "enclave-meter"


@dataclass(frozen=True)
class HubPorts:
    """Where the hub listens. The proxy's public port is on loopback only (a site puts
    its TLS front end before it); the hub API port is what containers may reach on the
    internal network's gateway."""

    public: int = 8000
    hub_api: int = 8081
    proxy_api: int = 8001

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> HubPorts:
        env = os.environ if environ is None else environ
        return cls(
            public=int(env.get("ENCLAVE_HUB_PORT") or 8000),
            hub_api=int(env.get("ENCLAVE_HUB_API_PORT") or 8081),
            proxy_api=int(env.get("ENCLAVE_PROXY_API_PORT") or 8001),
        )


@dataclass(frozen=True)
class MeterEndpoint:
    """Where the egress meter listens (loopback) and the token of its control API.

    The port is ENCLAVE_METER_PORT, or a free loopback port picked now (a hub restarted
    on another port leaves its running servers unreachable until restarted, so set the
    variable where the hub restarts: scripts/start-hub.sh does). The token is new at
    every start: only the hub and the meter it starts know it."""

    port: int
    token: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> MeterEndpoint:
        env = os.environ if environ is None else environ
        port = int(env.get("ENCLAVE_METER_PORT") or 0)
        if not port:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
        return cls(port=port, token=secrets.token_hex(32))


@dataclass(frozen=True)
class SwarmHub:
    """The hub's own container on a Swarm manager (scripts/up-swarm.sh starts it).

    ``container`` is its name: the spawner connects it to each project's overlay network,
    and servers reach the hub's API by that name there. ``network`` is the bridge network its
    public port is published from; the proxy listens on the container's address on that
    network only, so no project network reaches the proxy (through which one project's
    server could be asked for another's). ``resolv_conf`` is the host's resolver file,
    mounted read-only, for the container DNS check."""

    container: str
    network: str
    resolv_conf: Path

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> SwarmHub:
        env = os.environ if environ is None else environ
        container = env.get("ENCLAVE_HUB_CONTAINER", "").strip()
        network = env.get("ENCLAVE_HUB_NETWORK", "").strip()
        if not container or not network:
            raise PolicyError("with engine: swarm the hub runs in a container on the swarm's manager: start it with"
                              " make up-swarm (which sets ENCLAVE_HUB_CONTAINER and ENCLAVE_HUB_NETWORK)")
        return cls(container, network, Path(env.get("ENCLAVE_HOST_RESOLV_CONF") or "/etc/resolv.conf"))

    def address(self, client: Any) -> str:
        """The container's address on :attr:`network` (where the proxy listens)."""
        import docker.errors

        try:
            attrs = client.containers.get(self.container).attrs
        except docker.errors.NotFound:
            raise PolicyError(f"ENCLAVE_HUB_CONTAINER={self.container} names no container on this engine:"
                              " start the hub with make up-swarm") from None
        found = (attrs["NetworkSettings"]["Networks"].get(self.network) or {}).get("IPAddress")
        if not found:
            raise PolicyError(f"the hub's container {self.container} is not on its network {self.network}:"
                              " start the hub with make up-swarm")
        return found


def swarm_startup(settings: Settings, policy: ContainerPolicy, client: Any, log: logging.Logger) -> tuple[SwarmHub, str]:
    """The hub's start-up checks on Swarm, in place of the one-host firewall: the policy
    names swarm and the database is PostgreSQL, the hub is in its container, the container
    DNS mitigation is in the services' spec, and at least one worker node sees the shared
    store (``verify_nodes`` labels the nodes that do; nothing is placed on the others).
    Returns the hub's container and the address its proxy listens on; any failure stops the
    hub with one line."""
    import docker.errors

    from enclave.hub import dns_guard, swarm

    try:
        swarm.check_engine(settings, policy, ContainerEngine.SWARM)
        hub = SwarmHub.from_env()
        address = hub.address(client)
        dns_guard.startup_check(client, policy, log, hub.resolv_conf)
        verdicts = swarm.verify_nodes(client, settings.home, policy.image)
    except EnclaveError as exc:
        raise SystemExit(f"the hub cannot start: {exc}") from None
    except docker.errors.DockerException as exc:
        reason = str(getattr(exc, "explanation", None) or exc).splitlines()[0]
        raise SystemExit(f"the hub cannot start: the Docker engine refused ({reason}): the hub needs the socket"
                         " of a swarm manager (make up-swarm)") from None
    for node, verdict in sorted(verdicts.items()):
        log.info("swarm node %s: %s", node, verdict)
    if "ok" not in verdicts.values():
        seen = "; ".join(f"{node}: {verdict}" for node, verdict in sorted(verdicts.items()))
        raise SystemExit(f"the hub cannot start: no worker node of the swarm sees the shared store {settings.home}"
                         f" without swap ({seen}): join one that mounts it at the same path")
    return hub, address


def hub_dir(settings: Settings) -> Path:
    """The hub's own state (its database, cookie secret, log, pid files): 0700."""
    path = settings.home / "hub"
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def enclave_environment(settings: Settings) -> dict[str, str]:
    """What a hub-managed enclave service needs to find the same enclave."""
    return {
        "ENCLAVE_HOME": str(settings.home),
        "ENCLAVE_DB_URL": settings.db_url,
        "ENCLAVE_POLICIES": str(settings.policies_dir),
        "PYTHONUNBUFFERED": "1",
    }


def builtin_services(
    settings: Settings, policy: ContainerPolicy, enforce_interval: int = 20, meter: MeterEndpoint | None = None
) -> list[dict[str, Any]]:
    """The idle culler (timeout from policies/containers.yaml), the enforcer, the job
    worker and (given its endpoint) the egress meter."""
    services = [
        {
            "name": CULLER,
            "command": [sys.executable, "-m", "jupyterhub_idle_culler",
                        f"--timeout={policy.idle_cull_seconds}", "--cull-every=60"],
        },
        {
            "name": ENFORCER,
            "command": [sys.executable, "-m", "enclave.cli.main", "hub", "enforce",
                        f"--interval={enforce_interval}"],
            "environment": enclave_environment(settings),
        },
        {
            # Batch jobs run while the hub runs: the worker starts and stops with it.
            "name": JOB_WORKER,
            "command": [sys.executable, "-m", "enclave.cli.main", "job", "worker"],
            "environment": enclave_environment(settings),
        },
    ]
    if meter is not None:
        # Every server's traffic passes through it (EnclaveSpawner.meter_url).
        services.append({
            "name": METER,
            "command": [sys.executable, "-m", "enclave.meter"],
            "environment": {**enclave_environment(settings), "ENCLAVE_METER_PORT": str(meter.port),
                            "ENCLAVE_METER_TOKEN": meter.token},
        })
    return services


def builtin_service_roles() -> list[dict[str, Any]]:
    """The scopes of the culler and the enforcer (list servers, read activity, stop
    servers) and of the meter (stop servers, nothing else)."""
    server_scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
    return [
        {"name": "enclave-culler", "scopes": server_scopes, "services": [CULLER]},
        {"name": "enclave-enforcer-role", "scopes": server_scopes, "services": [ENFORCER]},
        {"name": "enclave-meter-role", "scopes": ["delete:servers"], "services": [METER]},
    ]


def extra_services(settings: Settings) -> list[dict[str, Any]]:
    """Further hub-managed services of the enclave: the web app at /services/enclave/."""
    from enclave.web.service import hub_service

    return [hub_service(settings, enclave_environment(settings))]


def extra_service_roles(settings: Settings) -> list[dict[str, Any]]:
    """Roles (scopes) for :func:`extra_services`, as JupyterHub role dicts with ``services``."""
    from enclave.web.service import hub_service_role

    return [hub_service_role()]


def extra_template_paths() -> list[str]:
    """Template folders that extend the hub's own pages (the web app's home page)."""
    from enclave.web.service import hub_template_paths

    return hub_template_paths()


def landing_url() -> str:
    """Where people go after signing in (``c.JupyterHub.default_url``): the consoles, where
    they pick a project and open its server. Left to itself the hub would offer its
    default, unnamed server, which the enclave always refuses (a server belongs to one
    project)."""
    from enclave.web.service import SERVICE_NAME

    return f"/services/{SERVICE_NAME}/"


def extra_user_scopes() -> list[str]:
    """Scopes every signed-in person needs: opening the web app's consoles (what they may
    do there is decided by the enclave's own roles, on the server)."""
    from enclave.web.service import USER_SCOPES

    return list(USER_SCOPES)
