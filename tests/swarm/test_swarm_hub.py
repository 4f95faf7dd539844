"""`make up-swarm` on the real two-node swarm: the enclave's hub in its container on the
manager, a researcher signed in through the real hub and proxy (password + one-time code),
their project's server a service on the worker, answering through the proxy and the egress
meter, and a job of theirs run by the hub's job worker on the worker too; up-swarm again
changes nothing; another project's server cannot reach the first, nor the proxy; when the
worker stops, the hub ends its servers as stopped and keeps serving; `make down-swarm` removes what up-swarm made. The session's worker node is reused (up-swarm leaves a node it did not
make), with this module's own state folder below the shared store, ports and database."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select, text

from enclave.clock import utcnow
from enclave.config import Settings
from enclave.db.models import AuditEvent, JobRun
from enclave.db.session import engine_for, unit_of_work
from enclave.hub import swarm
from enclave.hub.access import ServerAction
from enclave.hub.signin import unused_totp
from enclave.hub.spawner import PROJECT_LABEL, USER_LABEL
from enclave.jobs import service as jobs
from enclave.jobs.states import FINAL, JobStatus
from enclave.meter.service import MeterAction
from enclave.users import get_user
from tests.conftest import PG_ADMIN_URL
from tests.engine_support import write_notebook
from tests.ports import free_port

from .conftest import PREFIX, PROBE, Swarm

REPO = Path(__file__).resolve().parents[2]


SANDBOX_CHECK = """
import os
# The server's process tree (PID 1 and below; an exec'd process does not descend from the
# entrypoint that sets no-new-privileges); the mounts are the container's either way.
status = dict(line.split(":", 1) for line in open("/proc/1/status") if ":" in line)
def refused(folder):
    try:
        open(os.path.join(folder, ".probe"), "w").close()
    except OSError as exc:
        return exc.errno
    return "written"
print(f"uid={status['Uid'].split()[0]}", f"CapEff={status['CapEff'].strip()}", f"NoNewPrivs={status['NoNewPrivs'].strip()}",
      f"root={refused('/')}", f"data={refused('/data')}")
"""


@dataclass
class Enclave:
    url: str
    env: dict[str, str]
    settings: Settings
    hub: str        # the hub's container (and its network)
    network: str    # the policy's network: project networks are <network>-<slug>
    up_output: str

    def accounts(self) -> dict[str, dict[str, str]]:
        return json.loads((self.settings.home / "demo-accounts.json").read_text())

    def code(self, name: str) -> str:
        with unit_of_work(self.settings) as session:
            last = get_user(session, name).totp_last_step
        code, wait = unused_totp(self.accounts()[name]["totp_secret"], last, utcnow())
        time.sleep(wait)
        return code


def _script(name: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "scripts" / name)], env=env, capture_output=True, text=True,
                          timeout=3600)


@pytest.fixture(scope="module")
def enclave(swarm_cluster: Swarm, marker: str, request: pytest.FixtureRequest) -> Iterator[Enclave]:
    tag = uuid.uuid4().hex[:6]
    home = swarm_cluster.shared / f"up-swarm-{tag}"
    home.mkdir()
    # The store's marker as the session's worker was labelled with (the hub checks it again).
    (home / swarm.MARKER_NAME).write_text(marker + "\n")
    db = f"enclave_test_{tag}"
    hub = f"{PREFIX}hub-{tag}"
    network = f"{PREFIX}{tag}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("ENCLAVE_HOME", "ENCLAVE_DB_URL", "ENCLAVE_POLICIES")}
    env.update(ENCLAVE_SWARM_HOME=str(home), ENCLAVE_SWARM_SHARED=str(swarm_cluster.shared),
               ENCLAVE_SWARM_NODE=swarm_cluster.node, ENCLAVE_SWARM_DB=db, ENCLAVE_SWARM_NETWORK=network,
               ENCLAVE_HUB_PORT=str(port), ENCLAVE_HUB_CONTAINER=hub, ENCLAVE_NOTEBOOK_IMAGE=swarm_cluster.image)
    settings = Settings.from_env({"ENCLAVE_HOME": str(home), "ENCLAVE_POLICIES": str(home / "policies"),
                                  "ENCLAVE_DB_URL": PG_ADMIN_URL.replace("/postgres?", f"/{db}?")})
    try:
        up = _script("up-swarm.sh", env)
        if up.returncode != 0:
            logs = subprocess.run(["docker", "logs", "--tail", "60", hub], capture_output=True, text=True)
            raise AssertionError(f"up-swarm failed:\n{up.stderr[-4000:]}\n--- hub log ---\n{logs.stderr[-4000:]}")
        yield Enclave(f"http://127.0.0.1:{port}", env, settings, hub, network, up.stdout)
    finally:
        if request.session.testsfailed:
            logs = subprocess.run(["docker", "logs", "--tail", "200", hub], capture_output=True, text=True)
            print(f"\n--- log of the hub container {hub} ---\n{logs.stdout[-6000:]}{logs.stderr[-20000:]}")
        _script("down-swarm.sh", env)
        engine_for(settings.db_url).dispose()
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(home, ignore_errors=True)


class Browser:
    """One person's browser: cookies, the hub's XSRF token for its REST API."""

    def __init__(self, enclave: Enclave, name: str) -> None:
        self.enclave, self.name = enclave, name
        self.http = httpx.Client(base_url=enclave.url, trust_env=False, timeout=120)

    def sign_in(self) -> None:
        page = self.http.get("/hub/login")
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
        done = self.http.post("/hub/login", follow_redirects=False, data={
            "username": self.name, "password": self.enclave.accounts()[self.name]["password"],
            "otp": self.enclave.code(self.name), "_xsrf": xsrf})
        assert done.status_code == 302, (done.status_code, done.text[-500:])

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        # The hub's own XSRF cookie (a server the browser opened sets one for its own path).
        hub = [c.value for c in self.http.cookies.jar if c.name == "_xsrf" and not c.path.startswith("/user/")]
        headers = {"X-XSRFToken": hub[0] if hub else ""}
        return self.http.request(method, f"/hub/api/{path}", headers=headers, **kwargs)

    def start(self, project: str) -> dict:
        """Start the project's server through the hub's REST API; wait until it is ready."""
        started = self.api("POST", f"users/{self.name}/servers/{project}", json={"project": project})
        assert started.status_code in (201, 202), (started.status_code, started.text)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            found = self.api("GET", f"users/{self.name}").json().get("servers", {}).get(project)
            if found and found.get("ready"):
                return found
            assert found is not None, f"the server {self.name}/{project} ended while starting"
            time.sleep(1)
        raise AssertionError(f"the server {self.name}/{project} was not ready within 600 s")


def _task(swarm_cluster: Swarm, user: str, project: str) -> dict:
    services = swarm_cluster.client.services.list(filters={"label": [f"{USER_LABEL}={user}",
                                                                      f"{PROJECT_LABEL}={project}"]})
    assert len(services) == 1, [s.name for s in services]
    running = [t for t in services[0].tasks() if t["Status"]["State"] == "running"]
    assert len(running) == 1, [t["Status"] for t in services[0].tasks()]
    return running[0] | {"ServiceName": services[0].name}


def _submit_job(settings: Settings, user: str, project: str) -> int:
    """Queue a one-cell notebook of ``project``'s workspace as ``user``; its run id."""
    path = write_notebook(settings.workspaces_dir / project / "swarm-job.ipynb", ["print(6 * 7)"])
    with unit_of_work(settings) as session:
        return jobs.submit_job(session, get_user(session, user), settings, project, path.name, {}).id


def _probe(command: list[str], targets: list[str]) -> dict[str, str]:
    done = subprocess.run([*command, "python", "-c", PROBE, *targets], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    # One line per target ("<target> OPEN|CLOSED ..."); an answer's body may add lines.
    return {words[0]: words[1] for words in map(str.split, done.stdout.splitlines())
            if len(words) >= 2 and words[0] in targets}


def test_swarm_hub_up_swarm_serves_a_researcher_on_the_worker_and_down_swarm_removes_it(
        enclave: Enclave, swarm_cluster: Swarm) -> None:
    assert f"Enclave is running at {enclave.url}/" in enclave.up_output
    assert "ada" in enclave.up_output and "password" in enclave.up_output
    ada, grace = Browser(enclave, "ada"), Browser(enclave, "grace")
    ada.sign_in()
    ada.start("cardio")
    task = _task(swarm_cluster, "ada", "cardio")
    node = swarm_cluster.client.nodes.get(task["NodeID"]).attrs["Description"]["Hostname"]
    assert node == swarm_cluster.node  # on the worker, never the manager
    assert [n["Network"]["Spec"]["Name"] for n in task["NetworksAttachments"]] == [f"{enclave.network}-cardio"]
    ada_ip = task["NetworksAttachments"][0]["Addresses"][0].split("/")[0]
    # The sandbox as the hub made it there: not root, no capabilities, no new privileges,
    # the system and the data read-only.
    seen = swarm_cluster.node_docker("exec", task["Status"]["ContainerStatus"]["ContainerID"], "python", "-c",
                                     SANDBOX_CHECK).split()
    assert seen == ["uid=1000", "CapEff=0000000000000000", "NoNewPrivs=1", "root=30", "data=30"], seen

    # Through the proxy (and the meter behind it): the server's own API, after the hub's
    # OAuth sign-in of the browser; a file read is audited by the meter.
    # A file written on the manager into the shared store is what the worker's server serves.
    written = enclave.settings.workspaces_dir / "cardio" / "from-the-manager.txt"
    written.write_text("written on the manager\n")
    os.chown(written, 1000, 100)
    landing = ada.http.get("/user/ada/cardio/", follow_redirects=True)
    read = ada.http.get(f"/user/ada/cardio/api/contents/{written.name}", params={"content": "1"})
    assert read.status_code == 200, (read.status_code, read.text[:300], landing.status_code, str(landing.url))
    assert read.json()["content"] == "written on the manager\n"
    with unit_of_work(enclave.settings) as session:
        reads = session.scalars(select(AuditEvent).where(AuditEvent.action == MeterAction.CONTENT_READ)).all()
        assert any(e.target == "server:ada/cardio" and written.name in e.details.get("path", "") for e in reads), \
            [(e.target, e.details) for e in reads]

    # A batch job of the project: the hub's job worker runs it as a service on the worker.
    run_id = _submit_job(enclave.settings, "ada", "cardio")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        with unit_of_work(enclave.settings) as session:
            run = session.get(JobRun, run_id)
            status, error = run.status, run.error
        if status in FINAL:
            break
        time.sleep(2)
    log = jobs.log_path(enclave.settings, run_id).read_text()
    assert status is JobStatus.SUCCEEDED, (status, error, log[-2000:])
    assert f"ran on node {swarm_cluster.node}" in log, log[-2000:]

    # up-swarm again changes nothing: the same hub, the server still up. (The hub image as it
    # is: in a working tree that others edit meanwhile, its inputs may have changed.)
    again = _script("up-swarm.sh", enclave.env | {"ENCLAVE_HUB_IMAGE_AS_IS": "1"})
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already running" in again.stderr, again.stderr[-3000:]
    assert _task(swarm_cluster, "ada", "cardio")["ID"] == task["ID"]

    # Another project's server, on its own network: ada's server and the proxy are out of
    # its reach; the hub's API (which it needs) is not, and the hub reaches ada's server.
    grace.sign_in()
    grace.start("diabetes")
    other = _task(swarm_cluster, "grace", "diabetes")
    assert swarm_cluster.client.nodes.get(other["NodeID"]).attrs["Description"]["Hostname"] == swarm_cluster.node
    container = other["Status"]["ContainerStatus"]["ContainerID"]
    port = enclave.env["ENCLAVE_HUB_PORT"]
    # The hub container's other ports: the proxy (public and API), the meter, the consoles.
    closed = [f"{ada_ip}:8888", f"{task['ServiceName']}:8888",
              *(f"{enclave.hub}:{p}" for p in (port, 8001, 8002, 10101))]
    seen = _probe(["docker", "exec", swarm_cluster.node, "docker", "exec", container], [*closed, f"{enclave.hub}:8081"])
    assert seen == {**{target: "CLOSED" for target in closed}, f"{enclave.hub}:8081": "OPEN"}, seen
    assert _probe(["docker", "exec", enclave.hub], [f"{ada_ip}:8888"]) == {f"{ada_ip}:8888": "OPEN"}

    # The worker goes away (its machine stops): the hub, by its own polling, ends both
    # servers as stopped (audited by the hub) and keeps serving its API and consoles.
    subprocess.run(["docker", "stop", "-t", "1", swarm_cluster.node], check=True, capture_output=True)
    try:
        deadline = time.monotonic() + 600
        left: dict = {}
        while time.monotonic() < deadline:
            left = {who.name: who.api("GET", f"users/{who.name}").json().get("servers", {}) for who in (ada, grace)}
            if not left["ada"] and not left["grace"]:
                break
            time.sleep(2)
        assert not left["ada"] and not left["grace"], f"servers still listed with their node gone: {left}"
        assert ada.api("GET", "").status_code == 200
        consoles = ada.http.get("/services/enclave/", follow_redirects=True)
        assert consoles.status_code == 200, (consoles.status_code, str(consoles.url))
        with unit_of_work(enclave.settings) as session:
            ended = session.scalars(select(AuditEvent).where(AuditEvent.action == ServerAction.STOP)).all()
            lost = {e.target for e in ended if e.details.get("by") == "hub" and "of this server is" in
                    e.details.get("reason", "")}
            assert lost == {"server:ada/cardio", "server:grace/diabetes"}, [(e.target, e.details) for e in ended]
        # Their services are gone too: nothing is left to run again when the node returns.
        assert not swarm_cluster.client.services.list(filters={"label": f"{USER_LABEL}=ada"})
    finally:
        subprocess.run(["docker", "start", swarm_cluster.node], check=True, capture_output=True)
        deadline = time.monotonic() + 300
        while swarm_cluster.node_state() != "ready" and time.monotonic() < deadline:
            time.sleep(1)
    assert swarm_cluster.node_state() == "ready"

    # make down-swarm: the hub, its servers, networks go; the session's worker node stays.
    down = _script("down-swarm.sh", enclave.env)
    assert down.returncode == 0, down.stderr
    client = swarm_cluster.client
    assert not client.containers.list(all=True, filters={"name": enclave.hub})
    home = f"{enclave.settings.home}/"
    assert not [s.name for s in client.services.list() if any(
        (m.get("Source") or "").startswith(home)
        for m in s.attrs["Spec"]["TaskTemplate"]["ContainerSpec"].get("Mounts") or [])]
    assert not [n.name for n in client.networks.list() if n.name.startswith((enclave.network, enclave.hub))]
    assert client.nodes.get(swarm_cluster.node_id).attrs["Status"]["State"] == "ready"
    with unit_of_work(enclave.settings) as session:
        stops = session.scalars(select(AuditEvent).where(AuditEvent.target.in_(
            ["server:ada/cardio", "server:grace/diabetes"]))).all()
        assert {e.target for e in stops if e.action == ServerAction.STOP} == {"server:ada/cardio",
                                                                            "server:grace/diabetes"}, \
            [(e.action, e.target) for e in stops]


def test_swarm_hub_refuses_sqlite_in_one_line(tmp_path: Path) -> None:
    """engine: swarm on SQLite: the hub stops while reading its configuration, saying why."""
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    path = policies / "containers.yaml"
    path.write_text(re.sub(r"^engine: .*$", "engine: swarm", path.read_text(), flags=re.M))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env.update(ENCLAVE_HOME=str(tmp_path / "home"), ENCLAVE_POLICIES=str(policies), PYTHONPATH=str(REPO),
               ENCLAVE_HUB_PORT="1", ENCLAVE_HUB_API_PORT="2", ENCLAVE_PROXY_API_PORT="3")
    done = subprocess.run([str(REPO / ".venv" / "bin" / "jupyterhub"), "-f", str(REPO / "jupyterhub_config.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Traceback" not in output, output[-3000:]
    lines = [line for line in output.splitlines() if "needs PostgreSQL" in line]
    assert len(lines) == 1 and lines[0].startswith("the hub cannot start: engine: swarm needs PostgreSQL"), output
