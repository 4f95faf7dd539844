"""A real JupyterHub with the enclave's configuration, for the hub's Docker tests.

The session fixture builds a tmp ENCLAVE_HOME (users, projects, datasets and grants made
through the service layer), a policy directory whose internal network is the test's own,
and starts ``jupyterhub`` on free loopback ports (never 8000) with the repository's
jupyterhub_config.py plus a test admin service token. At the end it stops the hub,
removes every container and network named with the test prefix, and prints the hub's
log if any test failed.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from enclave.clock import today
from enclave.config import Settings
from enclave.db.session import unit_of_work, upgrade
from enclave.sandbox import release_host_access
from enclave.clock import utcnow
from enclave.hub.signin import enrol_totp, set_password, unused_totp
from enclave.users import get_user, set_training
from tests.conftest import Factory
from tests.hub_support import grant, ingest, stop_hub_process
from tests.ports import free_port

REPO = Path(__file__).resolve().parents[3]
# Not tests/docker/conftest.py's prefix: its sessions remove everything named with theirs,
# and may run at the same time as this one.
PREFIX = "enclave-hubtest-"
HUB_PREFIX = f"{PREFIX}nb"
PASSWORD = "correct horse battery"
POLL_INTERVAL = 2  # seconds between the hub's polls of each running server


@dataclass
class Hub:
    url: str            # http://127.0.0.1:PORT
    api: httpx.Client   # the REST API with an admin service token
    token: str
    settings: Settings
    env: dict[str, str]
    gateway_port: int   # the hub API port containers may reach
    network: str
    log: Path
    totp: dict[str, str]
    # The enforcer's own token: its production role (stop, never open), run by the tests.
    enforcer_token: str = ""

    def container_name(self, user: str, server: str) -> str:
        return f"{HUB_PREFIX}-{user}--{server}"

    def spawn(self, user: str, server: str) -> httpx.Response:
        self.api.post(f"users/{user}")  # 201, or 409 when the user exists already
        return self.api.post(f"users/{user}/servers/{server}", json={"project": server})

    def wait_ready(self, user: str, server: str, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.api.get(f"users/{user}").json()
            found = model.get("servers", {}).get(server)
            if found and found.get("ready"):
                return found
            time.sleep(0.5)
        raise AssertionError(f"server {user}/{server} not ready within {timeout} s")

    def stop(self, user: str, server: str) -> None:
        self.api.delete(f"users/{user}/servers/{server}", params={"remove": "true"})

    def code(self, user: str) -> str:
        """A one-time code of ``user`` that the hub accepts now: a code signs in once, so
        after a sign-in in this 30-second step it is the next step's (or it waits)."""
        with unit_of_work(self.settings) as session:
            last = get_user(session, user).totp_last_step
        code, wait = unused_totp(self.totp[user], last, utcnow())
        time.sleep(wait)
        return code


def _populate(settings: Settings, work: Path) -> dict[str, str]:
    """Users, projects, datasets and grants, all through the service layer."""
    totp: dict[str, str] = {}
    with unit_of_work(settings) as session:
        f = Factory(session, settings)
        f.project("alpha", "alice", "active")
        f.project("beta", "bob", "active")
        f.project("gamma", "alice", "suspended")
        f.project("delta", "alice", "active")
        f.project("eps", "erin", "active")
        f.project("zeta", "tina", "active")
        f.user("mallory")
        ingest(session, f.admin, settings, work, "tiny")
        ingest(session, f.admin, settings, work, "secretq")
        grant(session, f.admin, settings, "alpha", "tiny")
        grant(session, f.admin, settings, "beta", "secretq")
        grant(session, f.admin, settings, "delta", "tiny", days=2)
        # tina's training runs out after she joined.
        set_training(session, f.admin, "tina", today() - dt.timedelta(days=1))
        for name in ("alice", "bob", f.admin.name):  # the admin is a member of no project
            set_password(session, f.admin, name, PASSWORD)
            totp[name] = enrol_totp(session, f.admin, name).secret
        f.user("nora")  # has a password but no authenticator app
        set_password(session, f.admin, "nora", PASSWORD)
    # Project workspaces hold a marker each, to show one project cannot see another's.
    for slug in ("alpha", "beta"):
        ws = settings.workspaces_dir / slug
        ws.mkdir(parents=True, exist_ok=True)
        (ws / f"marker-{slug}.txt").write_text(slug)
    return totp


def _remove_leftovers(client) -> None:
    """Remove this suite's containers and networks (by name prefix), hub firewall rules too."""
    for container in client.containers.list(all=True, filters={"name": PREFIX}):
        if container.name.startswith(PREFIX):
            container.remove(force=True)
    for network in client.networks.list(filters={"name": PREFIX}):
        if network.name.startswith(PREFIX):
            try:
                release_host_access(client, network.name)
            except Exception:  # noqa: BLE001 - best effort; the network goes anyway
                pass
            network.remove()


@pytest.fixture(scope="session")
def image(client) -> str:
    """The notebook image as it is (any build serves these tests); built if missing."""
    name = os.environ.get("ENCLAVE_NOTEBOOK_IMAGE", "enclave-notebook:latest")
    try:
        client.images.get(name)
    except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound: build it
        subprocess.run(["bash", str(REPO / "scripts" / "build-images.sh")], check=True)
    return name


@dataclass
class Outside:
    name: str
    gateway: str


@pytest.fixture(scope="session")
def outside_net(client) -> Iterator[Outside]:
    """An ordinary (non-internal) bridge network, standing for anywhere outside."""
    network = client.networks.create(f"{PREFIX}outside-{uuid.uuid4().hex[:6]}", driver="bridge")
    network.reload()
    yield Outside(network.name, network.attrs["IPAM"]["Config"][0]["Gateway"])
    network.remove()


@pytest.fixture(scope="session")
def hub(client, image, tmp_path_factory, request) -> Iterator[Hub]:
    _remove_leftovers(client)
    work = tmp_path_factory.mktemp("hub")
    home = work / "home"
    policies = work / "policies"
    shutil.copytree(REPO / "policies", policies)
    network = f"{PREFIX}hubnet-{uuid.uuid4().hex[:6]}"
    containers = yaml.safe_load((policies / "containers.yaml").read_text())
    containers.update(image=image, network=network, mem_limit="1g", cpu_limit=1.0)
    (policies / "containers.yaml").write_text(yaml.safe_dump(containers))
    settings = Settings.from_env({"ENCLAVE_HOME": str(home), "ENCLAVE_POLICIES": str(policies)})
    upgrade(settings)
    totp = _populate(settings, work)

    token = secrets.token_hex(32)
    enforcer_token = secrets.token_hex(32)
    ports = {name: free_port() for name in
             ("ENCLAVE_HUB_PORT", "ENCLAVE_HUB_API_PORT", "ENCLAVE_PROXY_API_PORT", "ENCLAVE_WEB_PORT")}
    config = work / "hub_test_config.py"
    config.write_text(
        f"load_subconfig({str(REPO / 'jupyterhub_config.py')!r})\n"
        f"c.EnclaveSpawner.prefix = {HUB_PREFIX!r}\n"
        # The hub notices a server that died within seconds (test_hub_server_end.py).
        f"c.EnclaveSpawner.poll_interval = {POLL_INTERVAL}\n"
        # The tests run enforcement themselves (enclave hub enforce --once), as the enforcer
        # service with its own role, so what it may do is what it may do in production.
        "c.JupyterHub.services = [s for s in c.JupyterHub.services if s['name'] != 'enclave-enforcer']\n"
        f"c.JupyterHub.services.append({{'name': 'enclave-enforcer', 'api_token': {enforcer_token!r}}})\n"
        f"c.JupyterHub.services.append({{'name': 'test-admin', 'api_token': {token!r}}})\n"
        "c.JupyterHub.load_roles.append({'name': 'test-admin-role', 'services': ['test-admin'],\n"
        "    'scopes': ['admin:users', 'admin:servers', 'list:users', 'read:users', 'servers', 'access:servers',\n"
        "               'proxy']})\n"
    )
    env = {
        **os.environ,
        "ENCLAVE_HOME": str(home),
        "ENCLAVE_POLICIES": str(policies),
        **{k: str(v) for k, v in ports.items()},
    }
    env.pop("ENCLAVE_DB_URL", None)
    log = work / "hub.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(REPO / ".venv" / "bin" / "jupyterhub"), "-f", str(config)],
            cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{ports['ENCLAVE_HUB_PORT']}"
    api = httpx.Client(base_url=f"{url}/hub/api/", headers={"Authorization": f"token {token}"},
                       timeout=60, trust_env=False)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the hub exited during start-up:\n{log.read_text()[-4000:]}")
            try:
                if api.get("").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the hub did not answer within 90 s:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield Hub(url, api, token, settings, env, ports["ENCLAVE_HUB_API_PORT"], network, log, totp, enforcer_token)
    finally:
        api.close()
        stop_hub_process(proc)
        _remove_leftovers(client)
        if request.session.testsfailed:
            print(f"\n--- hub log ({log}) ---\n{log.read_text()[-20000:]}")
