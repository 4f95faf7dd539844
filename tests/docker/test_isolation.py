"""The notebook image under enclave.sandbox on a real engine: each test tries the attack
the isolation is meant to stop, with a control showing the attempt could have worked."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest

from enclave.errors import Conflict
from enclave.sandbox import WORKSPACE_PATH, ContainerPolicy, Mount, ensure_internal_network

from .conftest import PREFIX, HostServer, Net, Sandboxes, ip_on, probe_command, start_host_server, wait_for_http


def test_sandbox_process_has_no_privileges(sandboxes: Sandboxes):
    code, out = sandboxes.python(
        "import os; s = open('/proc/self/status').read();"
        "print('uid', os.getuid(), os.geteuid(), 'gid', os.getgid());"
        "print([l for l in s.splitlines() if l.startswith(('CapEff', 'CapPrm', 'CapBnd', 'NoNewPrivs'))])"
    )
    assert code == 0, out
    assert "uid 1000 1000 gid 100" in out
    assert "'CapEff:\\t0000000000000000'" in out
    assert "'CapPrm:\\t0000000000000000'" in out
    assert "'CapBnd:\\t0000000000000000'" in out
    assert "'NoNewPrivs:\\t1'" in out


def test_sandbox_cannot_become_root(sandboxes: Sandboxes):
    code, out = sandboxes.run(
        ["bash", "-c", "find / -xdev -perm /6000 -type f 2>/dev/null | sed 's/^/SETID /';"
         " python -c 'import os; os.setuid(0)' 2>&1 | tail -1"]
    )
    assert "SETID" not in out, out  # the image carries no setuid/setgid programs
    assert "PermissionError" in out, out


def test_sandbox_data_readable_not_writable(sandboxes: Sandboxes, dataset: Path):
    code, out = sandboxes.python(
        "import os\n"
        "print(open('/data/cohort/cohort.csv').read().splitlines()[1])\n"
        "for attempt in ("
        "  lambda: open('/data/cohort/cohort.csv', 'a').write('99,X\\n'),"
        "  lambda: open('/data/cohort/new.csv', 'w').write('x'),"
        "  lambda: os.remove('/data/cohort/cohort.csv'),"
        "  lambda: os.chmod('/data/cohort/cohort.csv', 0o600)):\n"
        "    try:\n"
        "        attempt(); print('WROTE')\n"
        "    except OSError as exc:\n"
        "        print('refused', exc.errno)\n",
        [Mount.dataset(dataset, "cohort")],
    )
    assert code == 0, out
    assert "34,F" in out
    assert "WROTE" not in out
    assert out.count("refused 30") == 4, out  # EROFS: the mount, not file permissions
    assert (dataset / "cohort.csv").read_text() == "age,sex\n34,F\n51,M\n"
    assert sorted(p.name for p in dataset.iterdir()) == ["cohort.csv"]


def test_sandbox_root_filesystem_read_only(sandboxes: Sandboxes):
    code, out = sandboxes.python(
        "import os\n"
        "for path in ('/etc/enclave', '/opt/env/lib/python3.13/site-packages/x.pth', '/usr/local/bin/x', '/x',"
        "             '/home/jovyan/project/../../../etc/y'):\n"
        "    try:\n"
        "        open(path, 'w').write('x'); print('WROTE', path)\n"
        "    except OSError as exc:\n"
        "        print('refused', exc.errno, path)\n"
        "open('/tmp/scratch', 'w').write('ok'); open('/home/jovyan/.scratch', 'w').write('ok'); print('scratch ok')\n"
    )
    assert code == 0, out
    assert "WROTE" not in out
    assert out.count("refused 30") == 5, out
    assert "scratch ok" in out


def test_sandbox_workspace_writable_and_persists(sandboxes: Sandboxes, workspace: Path):
    code, out = sandboxes.python(
        "open('outbox/table.csv', 'w').write('group,n\\nA,12\\n'); import os; print(os.getcwd())",
        [Mount.workspace(workspace)],
    )
    assert code == 0, out
    assert WORKSPACE_PATH in out
    written = workspace / "outbox" / "table.csv"
    assert written.read_text() == "group,n\nA,12\n"
    assert written.stat().st_uid == 1000


def test_sandbox_has_no_engine_socket(sandboxes: Sandboxes, workspace: Path, dataset: Path):
    code, out = sandboxes.run(
        ["bash", "-c", "ls -la /var/run/docker.sock /run/docker.sock 2>&1; grep -c sock /proc/self/mountinfo;"
         " find / -xdev -type s 2>/dev/null | grep -c . ; true"],
        [Mount.workspace(workspace), Mount.dataset(dataset, "cohort")],
    )
    assert out.count("No such file or directory") == 2, out
    assert out.split()[-2:] == ["0", "0"], out  # no socket mounted, no socket file anywhere


def test_sandbox_cannot_reach_sentinel_on_another_network(sandboxes: Sandboxes, outside: Net, image: str):
    sentinel = sandboxes.plain(
        ["python", "-c", "import http.server as h, os; os.chdir('/tmp'); open('index.html','w').write('outside');"
         " h.ThreadingHTTPServer(('0.0.0.0', 8000), h.SimpleHTTPRequestHandler).serve_forever()"],
        outside.name, image,
    )
    target = f"{ip_on(sentinel, outside.name)}:8000"
    # Control: from a container on that network the sentinel answers.
    control = sandboxes.plain(probe_command(target), outside.name, image)
    control.wait(timeout=60)
    assert f"{target} OPEN outside" in control.logs().decode(), control.logs()
    # Attack: the workspace container tries the same address.
    code, out = sandboxes.run(probe_command(target))
    assert code == 0, out
    assert f"{target} CLOSED" in out, out


def _default_bridge_address(client) -> list[str]:
    """The host's address on the engine's default bridge, if it has one."""
    for config in client.networks.get("bridge").attrs["IPAM"]["Config"]:
        address = config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))
        with socket.socket() as s:
            try:
                s.bind((address, 0))  # succeeds only for an address of this host
            except OSError:
                continue
        return [address]
    return []


def test_sandbox_cannot_reach_host_ports_but_reaches_hub(
    sandboxes: Sandboxes, client, internal: Net, outside: Net, host_sentinel: HostServer
):
    port = host_sentinel.port
    # Every address of the host a container could aim at: the internal gateway (where the
    # hub listens), the other network's gateway and the engine's default bridge.
    host_addresses = [internal.gateway, outside.gateway, *_default_bridge_address(client)]
    targets = [f"{addr}:{port}" for addr in host_addresses]
    hub = f"{internal.gateway}:{internal.hub.port}"
    code, out = sandboxes.run(probe_command(*targets, hub))
    assert code == 0, out
    for target in targets:
        assert f"{target} CLOSED" in out, out
    # Control: the allowed hub port on the gateway answers, so the path itself works.
    assert f"{hub} OPEN hub-stand-in" in out, out


def test_sandbox_host_port_reachable_without_firewall(sandboxes: Sandboxes, client, host_sentinel: HostServer):
    """Why restrict_host_access exists: an internal network alone leaves host services open."""

    name = f"{PREFIX}bare-{os.getpid()}"
    gateway = ensure_internal_network(client, name)
    try:
        container = sandboxes.start(probe_command(f"{gateway}:{host_sentinel.port}"), network_mode=name)
        container.wait(timeout=60)
        assert f"{gateway}:{host_sentinel.port} OPEN host-sentinel" in container.logs().decode()
    finally:
        for c in list(sandboxes.started):
            c.remove(force=True)
            sandboxes.started.remove(c)
        client.networks.get(name).remove()


def test_sandbox_containers_cannot_reach_each_other(sandboxes: Sandboxes, internal: Net):
    server = sandboxes.start(
        ["python", "-c", "import http.server as h, os; os.chdir('/tmp'); open('index.html','w').write('neighbour');"
         " h.ThreadingHTTPServer(('0.0.0.0', 8000), h.SimpleHTTPRequestHandler).serve_forever()"]
    )
    address = ip_on(server, internal.name)
    # Control: the host (where the hub's proxy runs) reaches the server.
    wait_for_http(f"http://{address}:8000/")
    code, out = sandboxes.run(probe_command(f"{address}:8000"))
    assert f"{address}:8000 CLOSED" in out, out


def test_sandbox_hub_reachable_only_on_gateway_address(sandboxes: Sandboxes, internal: Net, outside: Net):
    """A service bound to another host address on the hub's port stays closed."""
    other = start_host_server(outside.gateway, b"not-the-hub", port=internal.hub.port)
    try:
        code, out = sandboxes.run(probe_command(f"{outside.gateway}:{other.port}"))
        assert f"{outside.gateway}:{other.port} CLOSED" in out, out
    finally:
        other.close()


def test_sandbox_limits_memory_and_processes(client, image: str, internal: Net):
    policy = ContainerPolicy(image=image, network=internal.name, mem_limit="256m", pids_limit=64, cpu_limit=0.5)
    boxes = Sandboxes(client, policy)
    try:
        code, out = boxes.python("import threading, time\n"
                                 "started = 0\n"
                                 "try:\n"
                                 "    for _ in range(200):\n"
                                 "        threading.Thread(target=time.sleep, args=(5,), daemon=True).start()\n"
                                 "        started += 1\n"
                                 "except RuntimeError:\n"
                                 "    pass\n"
                                 "print('threads', started)\n")
        assert code == 0, out
        assert int(out.split("threads")[-1]) < 64, out
        code, out = boxes.python("x = bytearray(512 * 1024 * 1024); x[::4096] = b'1' * len(x[::4096]); print('ALLOCATED')")
        assert "ALLOCATED" not in out
        assert code in (1, 137), (code, out)  # MemoryError or killed by the kernel
    finally:
        for container in boxes.started:
            container.remove(force=True)


def test_sandbox_refuses_an_existing_network_that_is_not_internal(client, outside: Net):
    with pytest.raises(Conflict, match="not --internal"):
        ensure_internal_network(client, outside.name)
