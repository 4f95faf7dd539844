"""What the tests on a real engine share (tests/docker and tests/swarm): the engine client,
the docker marker, reports kept on the item (so fixtures can print logs of a failed test),
host sentinels, and the probe a container runs to try connections."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def write_notebook(path: Path, cells: list[str] | tuple[str, ...], *, owner: tuple[int, int] | None = (1000, 100)) -> Path:
    """A notebook of code cells at ``path``, owned by the containers' user (jovyan:users)
    unless ``owner`` says otherwise; returns ``path``."""
    nb = {"cells": [{"cell_type": "code", "source": c, "metadata": {}, "outputs": [], "execution_count": None,
                     "id": f"c{i}"} for i, c in enumerate(cells)],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb))
    if owner is not None:
        os.chown(path, *owner)
    return path


def engine_client():
    """A client of this host's engine, started first if it is not running."""
    import docker

    subprocess.run(["bash", str(REPO / "scripts" / "ensure-docker.sh")], check=True)
    return docker.from_env()


def mark_docker_tests(folder: Path, items: list[pytest.Item]) -> None:
    """Give every test below ``folder`` the ``docker`` marker (a conftest's collection hook)."""
    for item in items:
        if folder in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.docker)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Keep each phase's report on the item (``item.report_call``); a conftest imports it."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@dataclass
class HostServer:
    """A tiny HTTP server on the host that answers every GET with a fixed body."""

    host: str
    port: int
    body: bytes
    server: ThreadingHTTPServer = field(repr=False)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_host_server(host: str, body: bytes, port: int = 0) -> HostServer:
    """A sentinel on a host port (``port`` 0: any free one) answering every GET with ``body``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return HostServer(host, server.server_address[1], body, server)


@pytest.fixture
def host_sentinel() -> Iterator[HostServer]:
    """A sentinel on a host port, bound to every host address (0.0.0.0); a conftest
    imports it to offer it."""
    server = start_host_server("0.0.0.0", b"host-sentinel")
    yield server
    server.close()


def ip_on(container, network: str) -> str:
    """A container's address on ``network``."""
    container.reload()
    return container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]


def wait_for_http(url: str, timeout: float = 60) -> None:
    """Poll url from the host until it answers (any HTTP status)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


# Python run inside a container: try TCP connections, print one line per target.
PROBE = """
import socket, sys
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    s = socket.socket(); s.settimeout(3)
    try:
        s.connect((host, int(port)))
    except OSError as exc:
        print(target, "CLOSED", type(exc).__name__)
        continue
    reply = b""
    try:  # a connection that then stays silent still counts as OPEN
        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        while chunk := s.recv(4096):
            reply += chunk
    except OSError:
        pass
    print(target, "OPEN", reply.split(b"\\r\\n\\r\\n", 1)[-1].decode(errors="replace"))
    s.close()
"""


def probe_command(*targets: str) -> list[str]:
    return ["python", "-c", PROBE, *targets]
