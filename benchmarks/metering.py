"""The egress meter's overhead: the same requests to one real server through the meter
and straight to its container, side by side in the same run.

Starts the enclave's hub (jupyterhub_config.py, so the meter runs as its service) on free
loopback ports in a temporary ENCLAVE_HOME, with one tier1 project server. Then, in
alternating order each round:

- opening a 5 MB notebook through the contents API (GET with content, as JupyterLab
  does), which the meter also writes to the audit log before the response ends;
- a kernel round trip: execute_request over the kernel's websocket until the kernel
  reports idle.

"metered" goes to the meter's port (what the hub's proxy forwards to); "direct" goes to
the container's address from the host, which only this benchmark does. The ratio of the
medians is printed (goal: at most 1.10). Only loopback and the benchmark's own container
are contacted.

    .venv/bin/python benchmarks/metering.py                 # 9 opens, 60 round trips each way
    .venv/bin/python benchmarks/metering.py --opens 5 --trips 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import docker
import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.spawn import PREFIX, Hub, cleanup, free_port  # noqa: E402
from enclave.audit import list_events  # noqa: E402
from enclave.clock import today  # noqa: E402
from enclave.config import Settings  # noqa: E402
from enclave.db.session import unit_of_work, upgrade  # noqa: E402
from enclave.enums import Role  # noqa: E402
from enclave.meter.client import meter_state  # noqa: E402
from enclave.policy import load_policies  # noqa: E402
from enclave.projects import service as projects  # noqa: E402
from enclave.projects.lifecycle import ProjectAction  # noqa: E402
from enclave.users import add_user  # noqa: E402
from tests.register_support import EXAMPLE_REGISTER  # noqa: E402  (approval needs register details)

SERVER = "bench-01"
NOTEBOOK_BYTES = 5_000_000


def populate(settings: Settings) -> None:
    import datetime as dt

    with unit_of_work(settings) as session:
        admin = add_user(session, None, "bench-admin", {Role.ADMIN})
        add_user(session, admin, "res", {Role.RESEARCHER}, today() + dt.timedelta(days=365))
        tiers = load_policies(settings.policies_dir).tiers
        projects.create_project(session, admin, tiers, slug=SERVER, title=SERVER, pi="res", tier="tier1",
                                lay_summary="benchmark", end_date=today() + dt.timedelta(days=100),
                                register=EXAMPLE_REGISTER)
        for action in (ProjectAction.APPROVE, ProjectAction.ACTIVATE):
            projects.transition_project(session, admin, SERVER, action)


def write_notebook(path: Path) -> int:
    """A valid notebook of about NOTEBOOK_BYTES: markdown cells of text."""
    line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\n"
    cells = [{"cell_type": "markdown", "id": f"c{i}", "metadata": {}, "source": [line] * 600} for i in range(100)]
    notebook = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    data = json.dumps(notebook)
    while len(data) < NOTEBOOK_BYTES:
        cells.append({"cell_type": "markdown", "id": f"c{len(cells)}", "metadata": {}, "source": [line] * 600})
        data = json.dumps(notebook)
    path.write_text(data)
    os.chown(path, 1000, 100)
    return len(data)


def open_notebook(client: httpx.Client, base: str) -> float:
    start = time.perf_counter()
    response = client.get(f"{base}/api/contents/big.ipynb", params={"content": "1", "type": "notebook"})
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        sys.exit(f"opening the notebook at {base} failed: {response.status_code} {response.text[:300]}")
    return elapsed


async def round_trips(bases: dict[str, str], token: str, trips: int) -> dict[str, list[float]]:
    """``trips`` execute_request -> idle round trips on one kernel, alternating between paths."""
    headers = {"Authorization": f"token {token}"}
    times: dict[str, list[float]] = {name: [] for name in bases}
    async with aiohttp.ClientSession(headers=headers) as http:
        first = next(iter(bases.values()))
        async with http.post(f"{first}/api/kernels", json={"name": "python3"}) as response:
            kernel = (await response.json())["id"]
        sockets = {name: await http.ws_connect(base.replace("http", "ws", 1) + f"/api/kernels/{kernel}/channels",
                                               max_msg_size=0)
                   for name, base in bases.items()}
        session = uuid.uuid4().hex
        try:
            for i in range(trips + 2):
                for name in (list(bases) if i % 2 == 0 else list(bases)[::-1]):
                    ws, msg_id = sockets[name], uuid.uuid4().hex
                    start = time.perf_counter()
                    await ws.send_str(json.dumps({
                        "header": {"msg_id": msg_id, "username": "res", "session": session,
                                   "msg_type": "execute_request", "version": "5.3", "date": ""},
                        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                        "content": {"code": "1 + 1", "silent": False, "store_history": False,
                                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
                    async for message in ws:
                        data = json.loads(message.data)
                        if (data.get("msg_type") == "status" and data["parent_header"].get("msg_id") == msg_id
                                and data["content"]["execution_state"] == "idle"):
                            break
                    if i >= 2:  # the first two warm up the kernel and the connections
                        times[name].append(time.perf_counter() - start)
        finally:
            for ws in sockets.values():
                await ws.close()
            await http.delete(f"{first}/api/kernels/{kernel}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--opens", type=int, default=9, help="notebook opens each way (default 9)")
    parser.add_argument("--trips", type=int, default=60, help="kernel round trips each way (default 60)")
    parser.add_argument("--image", default=os.environ.get("ENCLAVE_NOTEBOOK_IMAGE", "enclave-notebook:latest"))
    args = parser.parse_args()

    client = docker.from_env()
    client.images.get(args.image)
    cleanup(client)
    work = Path(tempfile.mkdtemp(prefix="enclave-bench-meter-"))
    hub: Hub | None = None
    try:
        policies = work / "policies"
        shutil.copytree(REPO / "policies", policies)
        containers = yaml.safe_load((policies / "containers.yaml").read_text())
        containers.update(image=args.image, network=f"{PREFIX}meter-{uuid.uuid4().hex[:4]}")
        (policies / "containers.yaml").write_text(yaml.safe_dump(containers))
        browser = yaml.safe_load((policies / "browser.yaml").read_text())
        browser["tiers"]["tier1"]["meter"]["max_bytes_per_window"] = 10 * 1024 ** 3  # measure, do not trip
        (policies / "browser.yaml").write_text(yaml.safe_dump(browser))
        settings = Settings.from_env({"ENCLAVE_HOME": str(work / "home"), "ENCLAVE_POLICIES": str(policies)})
        upgrade(settings)
        populate(settings)
        env = {k: v for k, v in os.environ.items() if k not in ("ENCLAVE_DB_URL", "ENCLAVE_METER_PORT")}
        env |= {"ENCLAVE_HOME": str(settings.home), "ENCLAVE_POLICIES": str(policies),
                "ENCLAVE_HUB_PORT": str(free_port()), "ENCLAVE_HUB_API_PORT": str(free_port()),
                "ENCLAVE_PROXY_API_PORT": str(free_port())}
        hub = Hub("enclave", f"load_subconfig({str(REPO / 'jupyterhub_config.py')!r})\n"
                  f"c.EnclaveSpawner.prefix = {PREFIX + 'nb'!r}\n"
                  "c.JupyterHub.load_roles = list(c.JupyterHub.load_roles) + [{'name': 'bench-access',"
                  " 'services': ['bench'], 'scopes': ['access:servers', 'proxy']}]\n", env, work)
        hub.spawn_and_wait(SERVER)
        size = write_notebook(settings.workspaces_dir / SERVER / "big.ipynb")
        prefix = f"/user/res/{SERVER}"
        metered = hub.api.get("proxy").json()[prefix + "/"]["target"]
        direct = next(r["target"] for r in (meter_state(settings) or {}).get("routes", []) if r["server"] == SERVER)
        bases = {"direct": direct + prefix, "metered": metered + prefix}
        print(f"server {SERVER}: the hub's proxy routes it to {metered} (the meter); its container is {direct}")

        opens: dict[str, list[float]] = {name: [] for name in bases}
        with httpx.Client(headers={"Authorization": f"token {hub.token}"}, timeout=120, trust_env=False) as http:
            for name in bases:  # warm up
                open_notebook(http, bases[name])
            for i in range(args.opens):
                for name in (list(bases) if i % 2 == 0 else list(bases)[::-1]):
                    opens[name].append(open_notebook(http, bases[name]))
        trips = asyncio.run(round_trips(bases, hub.token, args.trips))

        def line(label: str, times: dict[str, list[float]], unit: float, unit_name: str) -> None:
            d, m = statistics.median(times["direct"]), statistics.median(times["metered"])
            print(f"  {label:<34} direct {d * unit:8.2f} {unit_name}   metered {m * unit:8.2f} {unit_name}"
                  f"   ratio {m / d:5.2f}   goal <= 1.10")

        print(f"medians ({args.opens} opens, {args.trips} round trips each way):")
        line(f"open a {size / 1e6:.1f} MB notebook", opens, 1000, "ms")
        line("kernel round trip (execute -> idle)", trips, 1000, "ms")
        with unit_of_work(settings) as session:
            audited = sum(1 for _ in list_events(session, action="meter.content_read"))
        print(f"  content reads written to the audit log by the meter: {audited} (every metered open)")
    except SystemExit:
        print(f"kept {work} (hub log) for a look", file=sys.stderr)
        raise
    else:
        shutil.rmtree(work, ignore_errors=True)
    finally:
        if hub is not None:
            hub.close()
        cleanup(client)


if __name__ == "__main__":
    main()
