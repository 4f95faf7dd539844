"""Sentinel servers the hub tests start themselves, to prove a server cannot reach them."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Answer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"sentinel")

    def log_message(self, *args) -> None:
        pass


@contextmanager
def host_sentinel() -> Iterator[int]:
    """An HTTP server on every host address, on a free port other than the hub's; yields the port."""
    server = ThreadingHTTPServer(("0.0.0.0", 0), _Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def network_sentinel(client, image: str, network: str) -> Iterator[str]:
    """An HTTP server in a container on ``network`` (not the internal one); yields its IP."""
    container = client.containers.run(
        image, command=["python", "-m", "http.server", "8000"], detach=True, network=network,
        name=f"enclave-hubtest-sentinel-{uuid.uuid4().hex[:8]}", user="1000:100", working_dir="/tmp",
    )
    try:
        for _ in range(60):
            container.reload()
            ip = container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
            if ip and container.exec_run(["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000')"]).exit_code == 0:
                break
            time.sleep(0.5)
        yield ip
    finally:
        container.remove(force=True)
