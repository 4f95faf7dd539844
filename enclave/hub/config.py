"""What jupyterhub_config.py reads: where the hub keeps its state, its ports, and the
hub-managed services with their roles.

Capabilities that run as hub-managed services (the web app ...) add their entry to
:func:`extra_services` (and the scopes it needs to :func:`extra_service_roles`); the
config file passes them to JupyterHub with the built-in idle culler and enforcer.
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enclave.config import Settings
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
