"""Spawn latency on Docker Swarm: the enclave's sandboxed service against a plain one.

Run through ``benchmarks/spawn.py --engine swarm``. On a two-node swarm made by
scripts/swarm.sh (this host the manager, a worker node in a container; an existing one is
reused with --node), each round creates one service as EnclaveSwarmSpawner builds it
(enclave.hub.swarm.service_spec: the whole sandbox, the project's internal overlay,
placement on verified nodes, the image by its digest in the internal registry) and one as a plain SwarmSpawner would (image,
command, the same network, the same node), one after the other, and times create -> task
running. Then it creates N sandboxed services at once and times until all run.

What is timed is the engine's part (the task running on its node); the single-user
server's own start-up is the same in both and is left out, as it needs a hub on the
project network. Goal: median ratio enclave/plain <= 1.15. Only the benchmark's own
services and networks are contacted.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker

from enclave.enums import ContainerEngine
from enclave.hub import swarm
from enclave.sandbox import SANDBOX_LABEL, ContainerPolicy, Mount

REPO = Path(__file__).resolve().parent.parent
PREFIX = "enclave-bench-sw-"
WAIT = ["python", "-c", "import time; time.sleep(900)"]


def _running(client: docker.DockerClient, service_id: str, timeout: float = 600) -> str:
    """Wait until the service's task runs; return its node's host name."""
    service = client.services.get(service_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for task in service.tasks():
            if task["Status"]["State"] == "running":
                return client.nodes.get(task["NodeID"]).attrs["Description"]["Hostname"]
            if task["Status"].get("Err"):
                raise RuntimeError(f"{service.name}: {task['Status']['Err']}")
        time.sleep(0.05)
    raise RuntimeError(f"{service.name} did not run within {timeout} s")


def run(repeat: int, concurrency: list[int], image: str, node: str | None) -> None:
    client = docker.from_env()
    shared = Path(tempfile.mkdtemp(prefix=PREFIX))
    node_name = node or f"{PREFIX}node-{uuid.uuid4().hex[:6]}"
    env = os.environ | {"ENCLAVE_SWARM_NODE": node_name, "ENCLAVE_SWARM_SHARED": str(shared),
                        "ENCLAVE_SWARM_IMAGES": image}
    if node:
        env["ENCLAVE_SWARM_SHARED"] = os.environ.get("ENCLAVE_SWARM_SHARED", str(shared))
        shared = Path(env["ENCLAVE_SWARM_SHARED"])
    subprocess.run(["bash", str(REPO / "scripts" / "swarm.sh"), "up"], env=env, check=True)
    # The worker gets the image only from the internal registry: services name it by digest there.
    os.environ.setdefault("ENCLAVE_SWARM_REGISTRY", subprocess.run(
        ["bash", str(REPO / "scripts" / "registry.sh"), "address"], capture_output=True, text=True,
        check=True).stdout.strip())
    policy = ContainerPolicy(engine=ContainerEngine.SWARM, image=image, network=f"{PREFIX}{uuid.uuid4().hex[:6]}",
                             mem_limit="1g", cpu_limit=1.0)
    made: list[str] = []
    try:
        verdicts = swarm.verify_nodes(client, shared, image)
        print("nodes:", ", ".join(f"{h}: {v}" for h, v in verdicts.items()))
        marker = swarm.ensure_marker(shared)
        image_id = swarm.check_image(client, image)
        network = swarm.ensure_project_network(client, policy, "bench")
        workspace = shared / "workspace"
        workspace.mkdir(exist_ok=True)
        os.chown(workspace, 1000, 100)
        mounts = [Mount.workspace(workspace)]

        def enclave_service() -> str:
            name = f"{PREFIX}{uuid.uuid4().hex[:8]}"
            spec = swarm.service_spec(policy, mounts, name=name, image=image_id, args=WAIT, env={}, labels={},
                                      network=network, constraints=swarm.placement_constraints(marker))
            made.append(client.api.create_service(**spec)["ID"])
            return made[-1]

        def plain_service() -> str:
            name = f"{PREFIX}{uuid.uuid4().hex[:8]}"
            service = client.services.create(image_id, args=WAIT, name=name, networks=[network],
                                              constraints=swarm.placement_constraints(marker),
                                              labels={SANDBOX_LABEL: "1"})
            made.append(service.id)
            return service.id

        def timed(make) -> tuple[float, str]:
            start = time.perf_counter()
            host = _running(client, make())
            return time.perf_counter() - start, host

        ratios, enclave_times, plain_times = [], [], []
        timed(enclave_service)  # warm-up: the first task on a node loads the image's layers
        for n in range(repeat):
            first, second = (enclave_service, plain_service) if n % 2 == 0 else (plain_service, enclave_service)
            a, _ = timed(first)
            b, _ = timed(second)
            enc, plain = (a, b) if first is enclave_service else (b, a)
            enclave_times.append(enc)
            plain_times.append(plain)
            ratios.append(enc / plain)
            print(f"round {n + 1}: enclave {enc:.2f} s, plain {plain:.2f} s, ratio {enc / plain:.2f}")
        print(f"median: enclave {statistics.median(enclave_times):.2f} s, plain {statistics.median(plain_times):.2f} s,"
              f" ratio {statistics.median(ratios):.2f} (goal <= 1.15)")
        for service_id in list(made):
            client.services.get(service_id).remove()
            made.remove(service_id)
        for count in concurrency:
            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=count) as pool:
                ids = list(pool.map(lambda _: enclave_service(), range(count)))
                hosts = list(pool.map(lambda sid: _running(client, sid), ids))
            spread = {h: hosts.count(h) for h in sorted(set(hosts))}
            print(f"{count} sandboxed services at once: all running after {time.perf_counter() - start:.1f} s; on {spread}")
            for service_id in ids:
                client.services.get(service_id).remove()
                made.remove(service_id)
    finally:
        for service_id in made:
            try:
                client.services.get(service_id).remove()
            except docker.errors.APIError:
                pass
        for _ in range(60):
            try:
                client.networks.get(swarm.project_network_name(policy, "bench")).remove()
                break
            except docker.errors.NotFound:
                break
            except docker.errors.APIError:
                time.sleep(0.5)
        if not node:
            subprocess.run(["bash", str(REPO / "scripts" / "swarm.sh"), "down"], env=env, check=False)
