"""Project servers through the real hub: isolation, refusals, enforcement."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select, update

from enclave.db.models import AuditEvent, Grant, Project
from enclave.db.session import unit_of_work
from enclave.projects.lifecycle import ProjectAction
from enclave.projects.service import transition_project
from enclave.users import get_user
from tests.docker.hub.sentinels import host_sentinel, network_sentinel

PROBE = """
import socket, sys
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    s = socket.socket(); s.settimeout(3)
    try:
        s.connect((host, int(port))); s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        print(target, "OPEN", s.recv(200).split(b"\\r\\n\\r\\n")[-1][:40].decode(errors="replace"))
    except OSError as exc:
        print(target, "CLOSED", type(exc).__name__)
    finally:
        s.close()
"""


def exec_in(client, name: str, *command: str) -> tuple[int, str]:
    result = client.containers.get(name).exec_run(list(command), user="")
    return result.exit_code, result.output.decode(errors="replace")


def audit(hub, action: str) -> list[AuditEvent]:
    with unit_of_work(hub.settings) as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


@pytest.fixture(scope="module")
def alpha(hub, client):
    """alice's running server of project alpha (granted dataset 'tiny')."""
    response = hub.spawn("alice", "alpha")
    assert response.status_code in (201, 202), response.text
    hub.wait_ready("alice", "alpha")
    yield hub.container_name("alice", "alpha")
    hub.stop("alice", "alpha")


def test_hub_server_reads_its_granted_view_but_cannot_write_it(hub, client, alpha):
    code, out = exec_in(client, alpha, "sh", "-c", "ls /data; ls /data/tiny")
    assert code == 0 and out.split()[0] == "tiny", out
    code, out = exec_in(client, alpha, "python", "-c",
                        "import glob, pyarrow.parquet as pq;"
                        "f = sorted(glob.glob('/data/tiny/**/*.parquet', recursive=True))[0];"
                        "print(pq.read_table(f).num_rows)")
    assert code == 0 and out.strip() == "2", out
    code, out = exec_in(client, alpha, "sh", "-c", "echo x > /data/tiny/new.txt")
    assert code != 0 and "Read-only file system" in out


def test_hub_server_tells_the_safe_library_which_dataset_versions_it_reads(client, alpha):
    code, out = exec_in(client, alpha, "sh", "-c", "echo $ENCLAVE_DATASETS")
    assert code == 0 and out.strip() == '{"tiny": "1"}', out


def test_hub_server_start_is_audited_with_its_mounts(hub, alpha):
    starts = [e for e in audit(hub, "hub.server_start") if e.target == "server:alice/alpha"]
    assert starts and starts[-1].details["mounts"] == ["/home/jovyan/project", "/etc/enclave/policies", "/data/tiny"]


def test_hub_server_applies_the_sites_disclosure_policy_mounted_read_only(hub, client, alpha):
    code, out = exec_in(client, alpha, "python", "-c",
                        "import os; from enclave.safe import load_disclosure_policy;"
                        "os.environ['ENCLAVE_DISCLOSURE_POLICY'] = '/home/jovyan/project/mine.yaml';"
                        "print(sorted(os.listdir('/etc/enclave/policies')), load_disclosure_policy().version)")
    site = (hub.settings.policies_dir / "disclosure.yaml").read_text()
    version = next(line.split(":", 1)[1].strip().strip('"') for line in site.splitlines() if line.startswith("version:"))
    assert code == 0 and out.split() == ["['disclosure.yaml']", version], out
    code, out = exec_in(client, alpha, "cat", "/etc/enclave/policies/disclosure.yaml")
    assert code == 0 and out == site
    code, out = exec_in(client, alpha, "sh", "-c", "echo 'threshold: 1' > /etc/enclave/policies/disclosure.yaml")
    assert code != 0 and "Read-only file system" in out
    [mount] = [m for m in client.containers.get(alpha).attrs["Mounts"] if m["Destination"] == "/etc/enclave/policies"]
    assert mount["Source"] == str(hub.settings.container_policies_dir / "current") and mount["RW"] is False


def test_hub_runs_the_idle_culler_with_the_policy_timeout(hub):
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if b"jupyterhub_idle_culler" in cmdline and f":{hub.gateway_port}/hub/api".encode() in environ:
            found.append([part.decode() for part in cmdline])
    assert len(found) == 1 and "--timeout=3600" in found[0], found


def test_hub_server_sees_neither_other_projects_data_nor_workspace(hub, client, alpha):
    code, out = exec_in(client, alpha, "ls", "/data")
    assert out.split() == ["tiny"]  # 'secretq' is granted to beta only
    code, out = exec_in(client, alpha, "ls", "/home/jovyan/project")
    assert "marker-alpha.txt" in out and "marker-beta.txt" not in out and "outbox" in out
    mounts = {m["Destination"]: m["Source"] for m in client.containers.get(alpha).attrs["Mounts"]}
    assert mounts["/data/tiny"].startswith(str(hub.settings.views_dir / "alpha"))
    assert mounts["/home/jovyan/project"] == str(hub.settings.workspaces_dir / "alpha")
    assert mounts["/etc/enclave/policies"] == str(hub.settings.container_policies_dir / "current")
    assert len(mounts) == 3 and not any("docker.sock" in s for s in mounts.values())


def test_hub_server_workspace_is_writable_and_persists_on_the_host(hub, client, alpha):
    name = f"note-{uuid.uuid4().hex[:6]}.txt"
    code, out = exec_in(client, alpha, "sh", "-c", f"echo result > /home/jovyan/project/outbox/{name}")
    assert code == 0, out
    assert (hub.settings.workspaces_dir / "alpha" / "outbox" / name).read_text() == "result\n"


def test_hub_server_process_is_not_root_and_has_no_capabilities(hub, client, alpha):
    container = client.containers.get(alpha)
    top = container.top(ps_args="-o pid,uid,comm")["Processes"]
    assert top and all(row[1] == "1000" for row in top), top
    code, out = exec_in(client, alpha, "sh", "-c", "grep -E '^(CapEff|CapPrm|NoNewPrivs)' /proc/1/status")
    fields = dict(line.split(":") for line in out.strip().splitlines())
    assert int(fields["CapEff"], 16) == 0 and int(fields["CapPrm"], 16) == 0
    assert fields["NoNewPrivs"].strip() == "1"
    host = container.attrs["HostConfig"]
    assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]


def test_hub_server_cannot_reach_sentinels_but_reaches_the_hub(hub, client, alpha, image, outside_net):
    with host_sentinel() as host_port, network_sentinel(client, image, outside_net.name) as sentinel_ip:
        gateway = client.networks.get(hub.network).attrs["IPAM"]["Config"][0]["Gateway"]
        targets = [f"{gateway}:{hub.gateway_port}", f"{gateway}:{host_port}",
                   f"{outside_net.gateway}:{host_port}", f"{sentinel_ip}:8000"]
        code, out = exec_in(client, alpha, "python", "-c", PROBE, *targets)
    lines = dict(line.split(" ", 1) for line in out.strip().splitlines())
    assert lines[targets[0]].startswith("OPEN"), out  # control: the probe works, the hub answers
    for target in targets[1:]:
        assert lines[target].startswith("CLOSED"), out


@pytest.mark.parametrize(
    ("user", "server", "says"),
    [
        ("mallory", "alpha", "not a member of a project named 'alpha'"),
        ("alice", "gamma", "project gamma is suspended"),
        ("tina", "zeta", "training expired"),
        ("alice", "beta", "not a member"),
    ],
)
def test_hub_refuses_with_a_clear_reason_and_starts_no_container(hub, client, user, server, says):
    response = hub.spawn(user, server)
    assert response.status_code == 403, response.text
    assert says in response.json()["message"]
    assert not client.containers.list(all=True, filters={"name": hub.container_name(user, server)})
    assert any(e.target == f"server:{user}/{server}" for e in audit(hub, "hub.server_refused"))


def test_hub_refuses_a_project_whose_grant_has_expired(hub, client):
    # Time passes: the only grant of delta runs out (a clock cannot be moved in a running hub).
    with unit_of_work(hub.settings) as session:
        project = session.scalars(select(Project).where(Project.slug == "delta")).one()
        session.execute(update(Grant).where(Grant.project_id == project.id)
                        .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)))
    response = hub.spawn("alice", "delta")
    assert response.status_code == 403, response.text
    assert "expired or been revoked" in response.json()["message"]
    assert not client.containers.list(all=True, filters={"name": hub.container_name("alice", "delta")})


def test_hub_refuses_options_other_than_the_project(hub, client):
    hub.api.post("users/bob")
    response = hub.api.post("users/bob/servers/beta", json={"image": "busybox"})
    assert response.status_code == 400 and "only 'project' may be given" in response.json()["message"]
    response = hub.api.post("users/bob/servers/beta", json={"project": "alpha"})
    assert response.status_code == 403 and "not alpha" in response.json()["message"]


def test_hub_enforcement_stops_the_servers_of_a_suspended_project(hub, client):
    response = hub.spawn("erin", "eps")
    assert response.status_code in (201, 202), response.text
    hub.wait_ready("erin", "eps")
    name = hub.container_name("erin", "eps")
    assert client.containers.get(name).status == "running"
    with unit_of_work(hub.settings) as session:
        admin = get_user(session, "root-admin")
        transition_project(session, admin, "eps", ProjectAction.SUSPEND, reason="test")
    env = {**hub.env, "JUPYTERHUB_API_URL": f"{hub.url}/hub/api", "JUPYTERHUB_API_TOKEN": hub.enforcer_token}
    done = subprocess.run([os.path.join(os.path.dirname(os.sys.executable), "enclave"), "hub", "enforce", "--once"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "stopped erin/eps: project eps is suspended" in done.stdout
    assert "eps" not in hub.api.get("users/erin").json().get("servers", {})
    assert not client.containers.list(all=True, filters={"name": name})
    stops = [e for e in audit(hub, "hub.server_enforced_stop") if e.target == "server:erin/eps"]
    assert stops and stops[0].details["reason"] == "project eps is suspended"
    # The stop is audited under the enforcer that asked for it, not under erin.
    server_stops = [e for e in audit(hub, "hub.server_stop") if e.target == "server:erin/eps"]
    assert [(e.actor, e.details["by"]) for e in server_stops] == [("enclave-enforcer", "service")]
