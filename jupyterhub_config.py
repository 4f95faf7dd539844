"""JupyterHub configuration of the enclave: start with scripts/start-hub.sh (one host) or
make up-swarm (engine: swarm, the hub in a container on the swarm's manager).

Thin on purpose: the settings come from the environment (ENCLAVE_HOME, ENCLAVE_DB_URL,
ENCLAVE_POLICIES; ENCLAVE_HUB_PORT and friends for the ports), the container limits from
policies/containers.yaml, and all behaviour from enclave.hub (see docs/hub.md and, for
Swarm, docs/deploy.md).
"""

import docker
from jupyterhub.app import JupyterHub

from enclave import sandbox
from enclave.config import Settings
from enclave.enums import ContainerEngine
from enclave.hub import config as hubconf
from enclave.hub import dns_guard
from enclave.hub.auth import EnclaveAuthenticator
from enclave.hub.spawner import EnclaveSpawner
from enclave.policy import load_policies_or_exit

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

settings = Settings.from_env()
# Every policy file, and the references between them, or the hub does not start (one line).
policy = load_policies_or_exit(settings.policies_dir, "the hub").containers
ports = hubconf.HubPorts.from_env()
state = hubconf.hub_dir(settings)
engine = docker.from_env()

if policy.engine is ContainerEngine.SWARM:
    from enclave.hub.swarm_spawner import EnclaveSwarmSpawner

    # PostgreSQL, the hub's own container, the DNS mitigation, worker nodes that see the
    # shared store: checked now, or the hub does not start (one line). Project networks are
    # internal overlays with no way to the host, so there is no host firewall to set.
    swarm_hub, public_ip = hubconf.swarm_startup(settings, policy, engine, JupyterHub.instance().log)
    # The proxy only on the hub's own bridge network (its port is published on the host's
    # loopback); the hub's API on every network it joins: servers reach it by the
    # container's name on their project's overlay, which the spawner connects it to.
    c.JupyterHub.bind_url = f"http://{public_ip}:{ports.public}"
    c.JupyterHub.hub_ip = "0.0.0.0"
    c.JupyterHub.hub_connect_ip = swarm_hub.container
    c.JupyterHub.spawner_class = EnclaveSwarmSpawner
    c.EnclaveSwarmSpawner.hub_container = swarm_hub.container
else:
    # The hub listens for its containers on the internal network's gateway, and that is
    # the only host port they may reach.
    gateway = sandbox.ensure_internal_network(engine, policy.network)
    sandbox.restrict_host_access(engine, policy.network, [ports.hub_api])
    # Container DNS (CVE-2024-29018): the log says what this host risks and that the
    # mitigation is applied; without it the hub does not start (docs/hub.md).
    dns_guard.startup_check_or_exit(engine, policy, JupyterHub.instance().log)
    c.JupyterHub.bind_url = f"http://127.0.0.1:{ports.public}"
    c.JupyterHub.hub_ip = gateway
    c.JupyterHub.spawner_class = EnclaveSpawner

c.JupyterHub.hub_port = ports.hub_api
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{ports.proxy_api}"
c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")
c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(state / "cookie_secret")

c.JupyterHub.authenticator_class = EnclaveAuthenticator
c.EnclaveAuthenticator.enclave_home = str(settings.home)

c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 0  # one per project; membership is the limit
# EnclaveSpawner's settings apply to EnclaveSwarmSpawner too (its subclass).
c.EnclaveSpawner.enclave_home = str(settings.home)
c.EnclaveSpawner.start_timeout = 120
c.EnclaveSpawner.http_timeout = 60
# The egress meter: the hub's proxy sends every server's traffic through it (docs/hub.md).
meter = hubconf.MeterEndpoint.from_env()
c.EnclaveSpawner.meter_url = meter.url
c.EnclaveSpawner.meter_token = meter.token

c.JupyterHub.services = hubconf.builtin_services(settings, policy, meter=meter) + hubconf.extra_services(settings)
c.JupyterHub.load_roles = hubconf.builtin_service_roles() + hubconf.extra_service_roles(settings)
# After sign-in: the consoles, not the spawn page of a default server the enclave refuses.
c.JupyterHub.default_url = hubconf.landing_url()
c.JupyterHub.template_paths = hubconf.extra_template_paths()
c.JupyterHub.extra_user_scopes = set(hubconf.extra_user_scopes())
