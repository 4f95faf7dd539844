"""Spawn-to-ready latency of EnclaveSpawner against a plain DockerSpawner, side by side.

Starts two real hubs on free loopback ports in a temporary ENCLAVE_HOME: the enclave's
(jupyterhub_config.py) and a baseline running dockerspawner.DockerSpawner with the same
image on its own internal network (same firewall rule). Each round spawns one server on
each hub, one after the other, and times POST -> ready through the REST API. Then it
starts N project servers on the enclave hub at once and times until all are ready.

    .venv/bin/python benchmarks/spawn.py                    # 7 rounds; 10 and 25 at once
    .venv/bin/python benchmarks/spawn.py --repeat 3 --concurrency 4
    .venv/bin/python benchmarks/spawn.py --engine swarm     # on a two-node swarm (spawn_swarm.py)

Goals: median ratio enclave/plain <= 1.15; 25 concurrent servers ready within 60 s on
2 cores. Only loopback and the benchmark's own containers are contacted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import signal
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from enclave import sandbox  # noqa: E402
from enclave.clock import today  # noqa: E402
from enclave.config import Settings  # noqa: E402
from enclave.db.session import unit_of_work, upgrade  # noqa: E402
from enclave.enums import Role  # noqa: E402
from enclave.policy import load_policies  # noqa: E402
from enclave.projects import service as projects  # noqa: E402
from enclave.projects.lifecycle import ProjectAction  # noqa: E402
from enclave.users import add_user  # noqa: E402
from tests.register_support import EXAMPLE_REGISTER  # noqa: E402  (approval needs register details)

PREFIX = "enclave-bench-"
JUPYTERHUB = str(REPO / ".venv" / "bin" / "jupyterhub")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def populate(settings: Settings, n_projects: int) -> None:
    """One researcher and n active projects (bench-01 ...), through the service layer."""
    with unit_of_work(settings) as session:
        admin = add_user(session, None, "bench-admin", {Role.ADMIN})
        add_user(session, admin, "res", {Role.RESEARCHER}, today() + dt.timedelta(days=365))
        tiers = load_policies(settings.policies_dir).tiers
        for i in range(1, n_projects + 1):
            slug = f"bench-{i:02d}"
            projects.create_project(session, admin, tiers, slug=slug, title=slug, pi="res",
                                    lay_summary="benchmark", end_date=today() + dt.timedelta(days=100),
                                    register=EXAMPLE_REGISTER)
            for action in (ProjectAction.APPROVE, ProjectAction.ACTIVATE):
                projects.transition_project(session, admin, slug, action)


class Hub:
    """A jupyterhub process with an admin service token."""

    def __init__(self, name: str, config: str, env: dict[str, str], work: Path) -> None:
        self.token = secrets.token_hex(32)
        self.port = int(env["ENCLAVE_HUB_PORT"])
        path = work / f"{name}_config.py"
        path.write_text(config + (
            f"\nc.JupyterHub.services = list(c.JupyterHub.services) + [{{'name': 'bench', 'api_token': {self.token!r}}}]\n"
            "c.JupyterHub.load_roles = list(c.JupyterHub.load_roles) + [{'name': 'bench-role', 'services': ['bench'],"
            " 'scopes': ['admin:users', 'admin:servers', 'list:users', 'read:users']}]\n"
        ))
        self.log = work / f"{name}.log"
        (work / name).mkdir()
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([JUPYTERHUB, "-f", str(path)], cwd=work / name, env=env,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{self.port}/hub/api/",
                                headers={"Authorization": f"token {self.token}"}, timeout=120, trust_env=False)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                self.fail(f"hub {name} exited at start-up")
            try:
                if self.api.get("").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.fail(f"hub {name} did not answer within 120 s")
            time.sleep(0.3)
        self.api.post("users/res")

    def fail(self, message: str) -> None:
        tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-25:])
        sys.exit(f"{message}\n--- end of {self.log.name} ---\n{tail}")

    def spawn_and_wait(self, server: str, timeout: float = 180) -> float:
        """Seconds from the spawn request until the hub reports the server ready."""
        start = time.perf_counter()
        response = self.api.post(f"users/res/servers/{server}", json={"project": server})
        if response.status_code not in (201, 202):
            self.fail(f"spawn of {server} failed: {response.status_code} {response.text}")
        while time.perf_counter() - start < timeout:
            found = self.api.get("users/res").json().get("servers", {}).get(server)
            if found and found.get("ready"):
                return time.perf_counter() - start
            time.sleep(0.1)
        self.fail(f"{server} not ready within {timeout} s")

    def stop(self, server: str, timeout: float = 180) -> None:
        """Stop ``server`` and wait until the hub has forgotten it (a stop may be pending)."""
        self.api.delete(f"users/res/servers/{server}", params={"remove": "true"})
        deadline = time.perf_counter() + timeout
        while server in self.api.get("users/res").json().get("servers", {}):
            if time.perf_counter() > deadline:
                self.fail(f"{server} did not stop within {timeout} s")
            time.sleep(0.2)

    def close(self) -> None:
        self.api.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        try:  # whatever the hub left of its process group (its proxy, services)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def summary(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def cleanup(client) -> None:
    for container in client.containers.list(all=True, filters={"name": PREFIX}):
        if container.name.startswith(PREFIX):
            container.remove(force=True)
    for network in client.networks.list(filters={"name": PREFIX}):
        if network.name.startswith(PREFIX):
            try:
                sandbox.release_host_access(client, network.name)
            except Exception:  # noqa: BLE001 - best effort
                pass
            network.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="side-by-side spawn rounds (default 7)")
    parser.add_argument("--concurrency", type=int, nargs="*", default=[10, 25],
                        help="server counts started at once (default 10 25)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temporary directory with the hub logs")
    parser.add_argument("--image", default=os.environ.get("ENCLAVE_NOTEBOOK_IMAGE", "enclave-notebook:latest"))
    parser.add_argument("--engine", choices=["docker", "swarm"], default="docker",
                        help="swarm: sandboxed Swarm services against plain ones (benchmarks/spawn_swarm.py)")
    parser.add_argument("--node", default=None,
                        help="with --engine swarm: an existing worker node of scripts/swarm.sh to reuse")
    args = parser.parse_args()
    if args.engine == "swarm":
        from benchmarks.spawn_swarm import run

        run(args.repeat, args.concurrency, args.image, args.node)
        return

    client = docker.from_env()
    client.images.get(args.image)  # fails clearly if the image was not built
    cleanup(client)
    work = Path(tempfile.mkdtemp(prefix="enclave-bench-"))
    hubs: list[Hub] = []
    try:
        policies = work / "policies"
        shutil.copytree(REPO / "policies", policies)
        enclave_net, plain_net = f"{PREFIX}enclave-{uuid.uuid4().hex[:4]}", f"{PREFIX}plain-{uuid.uuid4().hex[:4]}"
        containers = yaml.safe_load((policies / "containers.yaml").read_text())
        containers.update(image=args.image, network=enclave_net)
        (policies / "containers.yaml").write_text(yaml.safe_dump(containers))
        settings = Settings.from_env({"ENCLAVE_HOME": str(work / "home"), "ENCLAVE_POLICIES": str(policies)})
        upgrade(settings)
        n_projects = max([args.repeat, *args.concurrency, 1])
        populate(settings, n_projects)
        base_env = {k: v for k, v in os.environ.items() if k != "ENCLAVE_DB_URL"}
        base_env |= {"ENCLAVE_HOME": str(settings.home), "ENCLAVE_POLICIES": str(policies)}

        def ports() -> dict[str, str]:
            return {"ENCLAVE_HUB_PORT": str(free_port()), "ENCLAVE_HUB_API_PORT": str(free_port()),
                    "ENCLAVE_PROXY_API_PORT": str(free_port())}

        enclave_env = base_env | ports()
        enclave = Hub("enclave", f"load_subconfig({str(REPO / 'jupyterhub_config.py')!r})\n"
                      f"c.EnclaveSpawner.prefix = {PREFIX + 'nb'!r}\n", enclave_env, work)
        hubs.append(enclave)
        plain_env = base_env | ports()
        gateway = sandbox.ensure_internal_network(client, plain_net)
        sandbox.restrict_host_access(client, plain_net, [int(plain_env["ENCLAVE_HUB_API_PORT"])])
        plain = Hub("plain", "\n".join([
            "from dockerspawner import DockerSpawner",
            f"c.JupyterHub.bind_url = 'http://127.0.0.1:{plain_env['ENCLAVE_HUB_PORT']}'",
            f"c.JupyterHub.hub_ip = {gateway!r}",
            f"c.JupyterHub.hub_port = {plain_env['ENCLAVE_HUB_API_PORT']}",
            f"c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{plain_env['ENCLAVE_PROXY_API_PORT']}'",
            "c.JupyterHub.allow_named_servers = True",
            "c.JupyterHub.authenticator_class = 'null'",
            "c.JupyterHub.spawner_class = DockerSpawner",
            f"c.DockerSpawner.image = {args.image!r}",
            f"c.DockerSpawner.network_name = {plain_net!r}",
            "c.DockerSpawner.use_internal_ip = True",
            "c.DockerSpawner.remove = True",
            "c.DockerSpawner.pull_policy = 'never'",
            f"c.DockerSpawner.prefix = {PREFIX + 'plain'!r}",
            "c.JupyterHub.services = []",
            "c.JupyterHub.load_roles = []",
        ]), plain_env, work)
        hubs.append(plain)

        enclave_times, plain_times = [], []
        for i in range(args.repeat):
            server = f"bench-{i + 1:02d}"
            # Alternate which goes first so drift on a shared machine hits both alike.
            order = [(enclave, enclave_times), (plain, plain_times)]
            for hub, times in order if i % 2 == 0 else order[::-1]:
                times.append(hub.spawn_and_wait(server))
                hub.stop(server)
        if args.repeat:
            (em, ep), (pm, pp) = summary(enclave_times), summary(plain_times)
            print(f"spawn-to-ready over {args.repeat} rounds (seconds):")
            print(f"  EnclaveSpawner  median {em:6.2f}  p95 {ep:6.2f}")
            print(f"  DockerSpawner   median {pm:6.2f}  p95 {pp:6.2f}")
            print(f"  ratio (median)  {em / pm:6.2f}   goal <= 1.15")

        for count in args.concurrency:
            servers = [f"bench-{i:02d}" for i in range(1, count + 1)]
            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=count) as pool:
                list(pool.map(enclave.spawn_and_wait, servers))
            elapsed = time.perf_counter() - start
            print(f"{count:3d} project servers started at once: all ready after {elapsed:6.1f} s"
                  f"{'   goal <= 60 s' if count == 25 else ''}")
            with ThreadPoolExecutor(max_workers=count) as pool:
                list(pool.map(enclave.stop, servers))
    except SystemExit:
        print(f"kept {work} (hub logs) for a look", file=sys.stderr)
        raise
    else:
        if args.keep_logs:
            print(f"hub logs: {work}/enclave.log, {work}/plain.log")
        else:
            shutil.rmtree(work, ignore_errors=True)
    finally:
        for hub in hubs:
            hub.close()
        cleanup(client)


if __name__ == "__main__":
    main()
