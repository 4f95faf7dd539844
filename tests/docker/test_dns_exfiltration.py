"""DNS exfiltration through the engine's embedded resolver (CVE-2024-29018), tried on a
throw-away engine of the same binary that sees a loopback resolver.

This host's resolver is not on loopback, and its /etc/resolv.conf is never touched. The
test starts a private dockerd in its own mount and network namespaces (``unshare``), with
its own data root, exec root, pid file, socket and no default bridge. Inside that mount
namespace only, /etc/resolv.conf is a private file naming 127.0.0.1, where a DNS sentinel
(a tiny UDP server started in the same network namespace) records every name it is asked
and answers 127.0.0.1. Names are under ``enclave.test``; nothing leaves the machine.

- Control: a container on an ``--internal`` network with Docker's default DNS settings
  reaches the sentinel (the flaw reproduces on this engine).
- The enclave: the same container built by ``enclave.sandbox`` (the servers' and the
  jobs' host config) reaches no resolver.
- The hub's start-up check, run against that engine and resolver, warns of the risk.

Everything started is stopped, and its folders removed, even when a test fails.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

docker = pytest.importorskip("docker")

from enclave import sandbox  # noqa: E402
from enclave.hub import dns_guard  # noqa: E402

pytestmark = pytest.mark.slow

SENTINEL = r"""
import socket, sys
log = open(sys.argv[1], "a", buffering=1)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 53))
open(sys.argv[2], "w").close()  # ready
while True:
    data, peer = sock.recvfrom(4096)
    i, labels = 12, []
    while i < len(data) and data[i]:
        labels.append(data[i + 1:i + 1 + data[i]].decode(errors="replace"))
        i += 1 + data[i]
    log.write(".".join(labels).lower() + "\n")
    # One answer record: the name is 127.0.0.1 (a query of any type gets it).
    answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x7f\x00\x00\x01"
    sock.sendto(data[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + data[12:i + 5] + answer, peer)
"""

# Runs as the first process of the new namespaces; the mounts it makes are seen by it alone.
INNER = """
set -e
ip link set lo up
mount --bind "$D/resolv.conf" /etc/resolv.conf
mkdir -p /etc/docker && mount -t tmpfs tmpfs /etc/docker
python3 "$D/sentinel.py" "$D/queries.log" "$D/sentinel.ready" &
while [ ! -e "$D/sentinel.ready" ]; do sleep 0.05; done
exec dockerd --config-file "$D/daemon.json" --data-root "$D/data" --exec-root "$D/exec" \\
    --pidfile "$D/docker.pid" -H "unix://$D/docker.sock" --bridge none --cgroup-parent "/$CG"
"""


@dataclass
class PrivateEngine:
    client: object  # docker.DockerClient of the private engine
    folder: Path
    image: str

    @property
    def resolv_conf(self) -> Path:
        return self.folder / "resolv.conf"

    def queries(self) -> list[str]:
        log = self.folder / "queries.log"
        return log.read_text().split() if log.exists() else []


def _netns_processes(netns: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/net") == netns:
                    found.append(int(entry))
            except OSError:
                pass
    return found


@pytest.fixture(scope="module")
def private_engine(client, image: str) -> Iterator[PrivateEngine]:
    if os.geteuid() != 0 or not shutil.which("dockerd") or not shutil.which("unshare"):
        pytest.fail("this test needs root, dockerd and unshare (it starts its own engine)")
    base = os.environ.get("ENCLAVE_BASE_IMAGE", "enclave-base:trixie")
    try:
        client.images.get(base)
    except docker.errors.ImageNotFound:
        base = image  # larger, but the same resolver library
    folder = Path(tempfile.mkdtemp(prefix="enclave-dns-", dir="/tmp"))
    cgroup = folder.name
    (folder / "sentinel.py").write_text(SENTINEL)
    (folder / "inner.sh").write_text(textwrap.dedent(INNER))
    (folder / "resolv.conf").write_text("nameserver 127.0.0.1\n")
    (folder / "daemon.json").write_text("{}\n")
    log = open(folder / "dockerd.log", "wb")
    proc = subprocess.Popen(["unshare", "--mount", "--net", "--fork", "bash", str(folder / "inner.sh")],
                            env={**os.environ, "D": str(folder), "CG": cgroup}, stdout=log, stderr=log,
                            start_new_session=True)
    netns = None
    private = None
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                # The client asks the engine its API version at once: made when it answers.
                private = docker.DockerClient(base_url=f"unix://{folder / 'docker.sock'}", timeout=60)
                break
            except Exception:  # noqa: BLE001 - not up yet
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the private engine did not start: "
                                + (folder / "dockerd.log").read_text(errors="replace")[-2000:])
                time.sleep(0.2)
        netns = os.readlink(f"/proc/{int((folder / 'docker.pid').read_text())}/ns/net")
        assert netns != os.readlink("/proc/self/ns/net"), "the private engine shares this host's network namespace"
        save = subprocess.Popen(["docker", "save", base], stdout=subprocess.PIPE)
        subprocess.run(["docker", "-H", f"unix://{folder / 'docker.sock'}", "load", "-q"], stdin=save.stdout,
                       check=True, capture_output=True)
        assert save.wait() == 0
        yield PrivateEngine(private, folder, base)
    finally:
        if private is not None:
            private.close()
        pidfile = folder / "docker.pid"
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), signal.SIGTERM)
            except (ValueError, ProcessLookupError):
                pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        # Whatever is left in the private namespace (the sentinel, a stuck containerd) is ours.
        for pid in _netns_processes(netns) if netns else []:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        log.close()
        shutil.rmtree(folder, ignore_errors=True)
        for controller in Path("/sys/fs/cgroup").iterdir():
            leftover = controller / cgroup
            if leftover.is_dir():
                try:
                    leftover.rmdir()
                except OSError:
                    pass


@pytest.fixture(scope="module")
def internal_net(private_engine: PrivateEngine) -> str:
    name = "enclave-dns-internal"
    sandbox.ensure_internal_network(private_engine.client, name)
    return name


def _look_up(engine: PrivateEngine, kwargs: dict, name: str) -> str:
    """Run ``getent hosts name`` in a container made from ``kwargs``; its output."""
    container = engine.client.containers.run(
        command=["sh", "-c", f"timeout 5 getent hosts {name}; cat /etc/resolv.conf"], detach=True, **kwargs)
    try:
        container.wait(timeout=60)
        return container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


def _kwargs(engine: PrivateEngine, network: str, *, job: bool = False) -> dict:
    policy = sandbox.ContainerPolicy(image=engine.image, network=network)
    kwargs = sandbox.container_kwargs(policy, [], job=job)
    if job:  # what the job runner adds: no network at all
        kwargs["network_mode"] = "none"
    return kwargs


def test_dns_default_settings_reach_a_loopback_resolver_past_an_internal_network(private_engine, internal_net):
    """The control: the flaw reproduces on this engine when the container has Docker's
    default DNS settings."""
    name = f"control-{secrets.token_hex(4)}.exfil.enclave.test"
    kwargs = _kwargs(private_engine, internal_net)
    del kwargs["dns"]
    out = _look_up(private_engine, kwargs, name)
    assert name in private_engine.queries(), out
    assert "127.0.0.1" in out.split("\n")[0]  # the sentinel's answer came back in


@pytest.mark.parametrize("job", [False, True], ids=["server", "job"])
def test_dns_enclave_settings_reach_no_resolver(private_engine, internal_net, job):
    name = f"{'job' if job else 'server'}-{secrets.token_hex(4)}.exfil.enclave.test"
    out = _look_up(private_engine, _kwargs(private_engine, internal_net, job=job), name)
    assert name not in private_engine.queries(), out
    assert f"nameserver {sandbox.CONTAINER_NAMESERVER}" in out or "nameserver 127.0.0.11" in out, out


def test_dns_startup_check_warns_of_this_engine_and_resolver(private_engine, caplog):
    logger = logging.getLogger("test-dns-startup")
    with caplog.at_level(logging.INFO, logger="test-dns-startup"):
        report = dns_guard.startup_check(private_engine.client, sandbox.ContainerPolicy(), logger,
                                         resolv_conf=private_engine.resolv_conf)
    assert report.affected and report.at_risk and report.mitigated
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "CVE-2024-29018" in record.getMessage() and "127.0.0.1" in record.getMessage()
