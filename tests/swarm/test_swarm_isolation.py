"""The sandbox on a real two-node swarm: services built by enclave.hub.swarm run on the
worker node, and each test tries the attack the isolation stops there, with a control
showing the attempt could have worked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from enclave.hub import swarm
from enclave.sandbox import WORKSPACE_PATH, Mount

from tests.engine_support import HostServer

from .conftest import PROBE, SENTINEL, Services, Swarm, ip_on


@pytest.fixture
def workspace(swarm_cluster: Swarm) -> Path:
    """A project workspace on the shared store, owned by jovyan."""
    ws = swarm_cluster.shared / "workspaces" / f"ws-{os.urandom(3).hex()}"
    (ws / "outbox").mkdir(parents=True)
    for path in (ws, ws / "outbox"):
        os.chown(path, 1000, 100)
    return ws


@pytest.fixture
def dataset(swarm_cluster: Swarm) -> Path:
    """A view whose files even grant write permission to everyone: only the read-only
    mount can stop a write."""
    data = swarm_cluster.shared / "views" / f"view-{os.urandom(3).hex()}"
    data.mkdir(parents=True)
    (data / "cohort.csv").write_text("age,sex\n34,F\n51,M\n")
    data.chmod(0o777)
    (data / "cohort.csv").chmod(0o666)
    return data


def test_swarm_service_runs_on_the_worker_without_privileges(services: Services):
    task, code, out = services.python(
        "alpha",
        "import os; s = open('/proc/self/status').read();"
        "print('uid', os.getuid(), os.geteuid(), 'gid', os.getgid());"
        "print([l for l in s.splitlines() if l.startswith(('CapEff', 'CapPrm', 'CapBnd', 'NoNewPrivs'))])\n"
        "try:\n    os.setuid(0)\nexcept PermissionError:\n    print('setuid refused')\n",
    )
    assert task.node == services.swarm.node  # placed on the worker: managers get no workspaces
    assert code == 0, out
    assert "uid 1000 1000 gid 100" in out
    for cap in ("CapEff", "CapPrm", "CapBnd"):
        assert f"'{cap}:\\t0000000000000000'" in out, out
    # Services take no security options: the image's entrypoint sets it (setpriv).
    assert "'NoNewPrivs:\\t1'" in out, out
    assert "setuid refused" in out


def test_swarm_service_container_carries_the_sandbox_limits(services: Services):
    task = services.start("alpha", ["sleep", "60"])
    attrs = json.loads(services.swarm.node_docker("inspect", task.container))[0]
    host = attrs["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] or host["CapDrop"] == ["all"]
    assert host["Memory"] == 1024**3
    assert host["NanoCpus"] == 1_000_000_000
    assert host["PidsLimit"] == 256
    assert host["IpcMode"] == "private"
    assert host["Privileged"] is False
    assert host["Dns"] == ["127.0.0.1"]
    assert attrs["Config"]["User"] == "1000:100"
    tmpfs = {m["Target"]: m for m in attrs["HostConfig"]["Mounts"] if m["Type"] == "tmpfs"}
    assert set(tmpfs) == {"/tmp", "/home/jovyan"}
    # A service is never restarted: a stopped workspace stays stopped.
    assert task.service.attrs["Spec"]["TaskTemplate"]["RestartPolicy"]["Condition"] == "none"


def test_swarm_data_read_only_workspace_shared(services: Services, dataset: Path, workspace: Path):
    task, code, out = services.python(
        "alpha",
        "import os\n"
        "print(open('/data/cohort/cohort.csv').read().splitlines()[1])\n"
        "for attempt in ("
        "  lambda: open('/data/cohort/cohort.csv', 'a').write('99,X\\n'),"
        "  lambda: open('/data/cohort/new.csv', 'w').write('x'),"
        "  lambda: os.remove('/data/cohort/cohort.csv'),"
        "  lambda: open('/usr/evil', 'w').write('x'),"
        "  lambda: open('/opt/env/evil', 'w').write('x')):\n"
        "    try:\n"
        "        attempt(); print('WROTE')\n"
        "    except OSError as exc:\n"
        "        print('refused', exc.errno)\n"
        f"open('{WORKSPACE_PATH}/outbox/from-worker.txt', 'w').write('written on the worker')\n",
        [Mount.dataset(dataset, "cohort"), Mount.workspace(workspace)],
    )
    assert task.node == services.swarm.node
    assert code == 0, out
    assert "34,F" in out and "WROTE" not in out
    assert out.count("refused 30") == 5, out  # EROFS: read-only mounts and root, not permissions
    # The workspace lives on the shared store: what the worker wrote is on this host.
    assert (workspace / "outbox" / "from-worker.txt").read_text() == "written on the worker"
    assert "34,F" in (dataset / "cohort.csv").read_text() and "99,X" not in (dataset / "cohort.csv").read_text()


def test_swarm_service_reaches_nothing_but_its_own_project(services: Services, host_sentinel: HostServer):
    # The hub's stand-in: a container on the manager on the project's network (the hub
    # joins each project's network). The control that the probe works across the nodes.
    alpha = services.network("alpha")
    hub = services.plain([*SENTINEL, "hub-of-alpha"], alpha)
    # Another project's server, on its own network.
    beta = services.network("beta")
    other = services.plain([*SENTINEL, "server-of-beta"], beta)
    # Anywhere outside: a sentinel on an ordinary bridge network, and one on a host port.
    outside_net = services.swarm.client.networks.create(f"{services.policy.network}-outside", driver="bridge")
    services.networks.append(outside_net.name)
    outside = services.plain([*SENTINEL, "outside"], outside_net.name)
    outside_net.reload()
    gateway = outside_net.attrs["IPAM"]["Config"][0]["Gateway"]
    targets = [f"{ip_on(hub, alpha)}:8080", f"{ip_on(other, beta)}:8080", f"{ip_on(outside, outside_net.name)}:8080",
               f"{gateway}:{host_sentinel.port}", f"172.17.0.1:{host_sentinel.port}"]
    task, code, out = services.run("alpha", ["python", "-c", PROBE, *targets])
    assert task.node == services.swarm.node
    assert code == 0, out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "OPEN hub-of-alpha" in lines[targets[0]], out
    for target in targets[1:]:
        assert "CLOSED" in lines[target], out
    assert "server-of-beta" not in out and "outside" not in out.split("hub-of-alpha")[-1]
    assert "host-sentinel" not in out


def test_swarm_node_must_see_the_shared_store(swarm_cluster: Swarm, marker: str, tmp_path: Path):
    # A folder the worker does not mount: the worker fails the check and is not labelled
    # for it, so nothing of that store is placed there.
    elsewhere = tmp_path / "not-shared"
    verdicts = swarm.verify_nodes(swarm_cluster.client, elsewhere, swarm_cluster.image)
    assert verdicts[swarm_cluster.node] != "ok", verdicts
    node = swarm_cluster.client.nodes.get(swarm_cluster.node_id)
    assert node.attrs["Spec"]["Labels"].get(swarm.STORAGE_LABEL) != swarm.ensure_marker(elsewhere)
    # The shared store: the worker passes again and gets its label back.
    verdicts = swarm.verify_nodes(swarm_cluster.client, swarm_cluster.shared, swarm_cluster.image)
    assert verdicts[swarm_cluster.node] == "ok", verdicts
    node.reload()
    assert node.attrs["Spec"]["Labels"][swarm.STORAGE_LABEL] == marker


def test_swarm_image_without_no_new_privs_entrypoint_is_refused(swarm_cluster: Swarm):
    from enclave.errors import Conflict

    base = "enclave-base:trixie"  # the Debian base: its entrypoint sets nothing
    with pytest.raises(Conflict, match="no-new-privileges"):
        swarm.check_image(swarm_cluster.client, base)
