"""EnclaveSwarmSpawner: EnclaveSpawner's servers as Docker Swarm services.

It is EnclaveSpawner with DockerSpawner's SwarmSpawner underneath (method resolution
order: EnclaveSwarmSpawner, EnclaveSpawner, SwarmSpawner, DockerSpawner): the access
checks, mounts, workspace preparation, audit of every start, stop and refusal, the egress
meter and the browser channel are EnclaveSpawner's own methods, not copies. Only the
object created differs: a service built by ``enclave.hub.swarm.service_spec`` from the
same sandbox settings, on the project's own internal overlay network, placed on a node
that sees the shared store, from the image as ``swarm.check_image`` names it (by digest in the
internal registry, or by id), never restarted.

The hub runs in a container on the manager (``hub_container``); it joins each project's
network as the project's first server starts, which is how it reaches the servers and
they reach it, and how no project's network reaches another's.
"""

from __future__ import annotations

import asyncio
from typing import Any

from dockerspawner import SwarmSpawner
from tornado import web
from traitlets import Unicode, default

from enclave.enums import ContainerEngine
from enclave.errors import EnclaveError
from enclave.hub import swarm
from enclave.hub.spawner import PROJECT_LABEL, USER_LABEL, EnclaveSpawner


# Task states from which a task never runs again (Swarm's task lifecycle).
_ENDED = frozenset({"complete", "shutdown", "failed", "rejected", "orphaned", "remove"})


class EnclaveSwarmSpawner(EnclaveSpawner, SwarmSpawner):
    """EnclaveSpawner whose servers are Swarm services (policies/containers.yaml engine: swarm)."""

    engine = ContainerEngine.SWARM
    # SwarmSpawner's own ways around the sandbox, refused like DockerSpawner's.
    sandbox_only_traits = (*EnclaveSpawner.sandbox_only_traits, "extra_container_spec", "extra_resources_spec",
                           "extra_placement_spec", "extra_task_spec", "extra_endpoint_spec", "volume_driver")

    hub_container = Unicode(
        "",
        help="""Name or id of the container the hub runs in, on the Swarm manager. It is
        connected to each project's internal overlay network when a server of that project
        starts, so the hub and the server reach each other and nothing else does. Empty:
        the hub is already on the networks by other means (tests, a hub service).""",
    ).tag(config=True)

    @default("pull_policy")
    def _default_pull_policy(self) -> str:
        return "skip"  # each node pulls it by digest from the registry (docs/deploy.md), or the task fails

    @default("network_name")
    def _default_network_name(self) -> str:
        return ""  # set per project in create_object

    def _swarm_prepare(self) -> tuple[str, str, list[str]]:
        """Check the engine setting and the image, make the project's network; return the
        image reference, the network and the placement constraints."""
        settings = self.enclave_settings()
        swarm.check_engine(settings, self._enclave_policy, ContainerEngine.SWARM)
        client = _high_level(self.client)
        image_id = swarm.check_image(client, self.image)
        network = swarm.ensure_project_network(client, self._enclave_policy, self.name)
        if self.hub_container:
            _connect(client, network, self.hub_container)
        marker = swarm.ensure_marker(settings.home)
        return image_id, network, swarm.placement_constraints(marker)

    async def create_object(self) -> dict[str, Any]:
        """Create the service with exactly the sandbox's settings; wait for its task."""
        try:
            image_id, network, constraints = await asyncio.to_thread(self._swarm_prepare)
        except EnclaveError as exc:
            raise web.HTTPError(500, str(exc)) from None
        self.network_name = network
        spec = swarm.service_spec(
            self._enclave_policy, self._enclave_mounts, name=self.service_name, image=image_id,
            args=await self.get_command(), env=self.get_env(),
            labels={PROJECT_LABEL: self.name, USER_LABEL: self.user.name},
            network=network, constraints=constraints)
        service = await self.docker("create_service", **spec)
        while not await self.docker("tasks", filters={"service": self.service_name}):
            await asyncio.sleep(0.2)
        return service

    async def _end_reason(self, status: Any) -> str | None:
        """Why the server has ended for good (EnclaveSpawner.poll then ends it, once): its
        task ended, or its node is down or gone, which the engine keeps reporting as a
        running task, so the hub would never end it. A task still being placed, which
        SwarmSpawner also reports as not running, has not ended."""
        if status is None:
            return await self._lost_node()
        task = await self.get_task()
        state = (task or {}).get("Status", {}).get("State")
        return f"the server's task is {state or 'gone'}" if state is None or state in _ENDED else None

    async def _lost_node(self) -> str | None:
        """Why this server's node cannot be running it (down, or gone from the swarm); None
        while it is ready or the server has no task on a node."""
        import docker.errors

        task = await self.get_task()
        node_id = (task or {}).get("NodeID")
        if not node_id:
            return None
        try:
            node = await self.docker("inspect_node", node_id)
        except docker.errors.NotFound:
            return "the node of this server has left the swarm"
        state = node.get("Status", {}).get("State")
        if state != "ready":
            return f"the node {node.get('Description', {}).get('Hostname', node_id)} of this server is {state}"
        return None

    async def get_ip_and_port(self) -> tuple[str, int]:
        """The task's own address on the project's network: the egress meter forwards only
        to an address (never a name it would have to resolve), and the task is never
        replaced (no restart), so the address holds for the server's life."""
        network = self.network_name or swarm.project_network_name(self._enclave_policy, self.name)
        for _ in range(300):
            task = await self.get_task()
            for attachment in (task or {}).get("NetworksAttachments") or []:
                if attachment["Network"]["Spec"]["Name"] == network and attachment.get("Addresses"):
                    return attachment["Addresses"][0].split("/", 1)[0], self.port
            await asyncio.sleep(0.2)  # the manager allocates it as the task is placed
        raise web.HTTPError(500, f"the service {self.service_name} got no address on {network} within a minute")


def _high_level(api: Any) -> Any:
    """docker-py's high-level client over the spawner's own APIClient (same connection
    and TLS settings, which DockerSpawner configures)."""
    import docker

    client = docker.DockerClient.__new__(docker.DockerClient)
    client.api = api
    return client


def _connect(client: Any, network: str, container: str) -> None:
    import docker.errors

    net = client.networks.get(network)
    net.reload()
    attached = net.attrs.get("Containers") or {}
    if any(c.get("Name") == container or cid.startswith(container) for cid, c in attached.items()):
        return
    try:
        net.connect(container)
    except docker.errors.APIError as exc:
        if "already exists" not in str(exc):
            raise
