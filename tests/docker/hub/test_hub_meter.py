"""The egress meter with the real hub, its proxy and containers: the only way to a
server, what it counts and audits, and what happens past the limit."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import uuid
from pathlib import Path

import aiohttp
import httpx
import pytest
import yaml
from sqlalchemy import select

from enclave.clock import today
from enclave.db.models import AuditEvent
from enclave.db.session import unit_of_work
from enclave.enums import IncidentStatus, Role
from enclave.hub.signin import enrol_totp, set_password
from enclave.incidents import clear_incident, enable_user, list_incidents
from enclave.meter.client import meter_state
from enclave.users import add_user, get_user
from tests.conftest import Factory
from tests.docker.hub.conftest import PASSWORD
from tests.hub_support import grant

USER, PROJECT = "mira", "meterp"
LIMIT = 300_000


def audit(hub, action: str) -> list[AuditEvent]:
    with unit_of_work(hub.settings) as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)))


def login(hub, username: str) -> httpx.Response:
    with httpx.Client(base_url=hub.url, trust_env=False, timeout=60) as browser:
        page = browser.get("/hub/login")
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
        return browser.post("/hub/login", follow_redirects=False, data={
            "username": username, "password": PASSWORD, "otp": hub.code(username), "_xsrf": xsrf})


@pytest.fixture(scope="module")
def metered(hub):
    """A person and a project of their own (tier2, granted 'tiny'), with a small limit for
    servers started while the fixture's browser.yaml is in place."""
    with unit_of_work(hub.settings) as session:
        f = Factory(session, hub.settings)
        f._admin = get_user(session, "root-admin")
        f.project(PROJECT, USER, "active")
        grant(session, f.admin, hub.settings, PROJECT, "tiny")
        set_password(session, f.admin, USER, PASSWORD)
        hub.totp[USER] = enrol_totp(session, f.admin, USER).secret
        add_user(session, f.admin, "olga", {Role.ADMIN}, today() + dt.timedelta(days=30))
    path = hub.settings.policies_dir / "browser.yaml"
    original = path.read_text()
    policy = yaml.safe_load(original)
    policy["tiers"]["tier2"]["meter"].update(max_bytes_per_window=LIMIT, suspend_user=True,
                                             disable_after_incidents=2)
    path.write_text(yaml.safe_dump(policy))
    yield hub
    path.write_text(original)
    hub.stop(USER, PROJECT)


def start(hub) -> None:
    response = hub.spawn(USER, PROJECT)
    assert response.status_code in (201, 202), response.text
    hub.wait_ready(USER, PROJECT)


def server_url(hub) -> str:
    return f"{hub.url}/user/{USER}/{PROJECT}"


def routes(hub) -> dict:
    response = hub.api.get("proxy")
    assert response.status_code == 200, response.text
    return response.json()


async def print_in_kernel(hub, code: str, base: str | None = None) -> tuple[int, bool]:
    """Run ``code`` in a new kernel over its websocket; (bytes received, whether the
    kernel said idle before the connection ended)."""
    base = base or server_url(hub)
    headers = {"Authorization": f"token {hub.token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{base}/api/kernels", json={"name": "python3"}) as response:
            assert response.status == 201, await response.text()
            kernel = (await response.json())["id"]
        ws_url = base.replace("http", "ws", 1) + f"/api/kernels/{kernel}/channels"
        msg_id = uuid.uuid4().hex
        received, idle = 0, False
        try:
            async with http.ws_connect(ws_url, max_msg_size=0) as ws:
                await ws.send_str(json.dumps({
                    "header": {"msg_id": msg_id, "username": USER, "session": uuid.uuid4().hex,
                               "msg_type": "execute_request", "version": "5.3", "date": ""},
                    "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                    "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                                "allow_stdin": False, "stop_on_error": True}}))
                async for message in ws:
                    if message.type is not aiohttp.WSMsgType.TEXT:
                        break
                    received += len(message.data.encode())
                    data = json.loads(message.data)
                    if (data.get("msg_type") == "status" and data["parent_header"].get("msg_id") == msg_id
                            and data["content"]["execution_state"] == "idle"):
                        idle = True
                        break
        except (aiohttp.ClientError, ConnectionError):
            pass
        return received, idle


# A cell that prints a granted view, base64-encoded, in 40 KB lines, until well past LIMIT.
DUMP = """
import base64, glob, time
raw = b"".join(open(f, "rb").read() for f in sorted(glob.glob("/data/tiny/**/*.parquet", recursive=True)))
text = base64.b64encode(raw * (40000 // len(raw) + 1)).decode()[:40000]
for _ in range(40):
    print(text)
    time.sleep(0.15)
"""


def wait_for(check, timeout: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError("condition not met in time")


def server_running(hub) -> bool:
    return PROJECT in hub.api.get(f"users/{USER}").json().get("servers", {})


def test_hub_meter_is_the_only_route_to_a_server(metered, client):
    hub = metered
    start(hub)
    route = routes(hub)[f"/user/{USER}/{PROJECT}/"]
    container = client.containers.get(hub.container_name(USER, PROJECT))
    container_ip = next(iter(container.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", route["target"]), route
    # No route of the hub's proxy leads to any container's address.
    assert all(container_ip not in r["target"] for r in routes(hub).values())
    # The meter knows where the container is; the hub does not give it to the browser.
    state = meter_state(hub.settings)
    assert {"prefix": f"/user/{USER}/{PROJECT}/", "target": f"http://{container_ip}:8888", "user": USER,
            "server": PROJECT, "tripped": False} in state["routes"]


def test_hub_meter_audits_content_reads_with_path_and_bytes(metered):
    hub = metered
    if not server_running(hub):
        start(hub)
    (hub.settings.workspaces_dir / PROJECT / "notes.txt").write_text("n" * 5000)
    response = httpx.get(f"{server_url(hub)}/api/contents/notes.txt",
                         params={"content": "1", "type": "file", "format": "text"},
                         headers={"Authorization": f"token {hub.token}"}, trust_env=False, timeout=60)
    assert response.status_code == 200, response.text
    reads = [e for e in audit(hub, "meter.content_read") if e.details["path"] == "notes.txt"]
    assert reads, "the content read was not audited"
    assert reads[-1].actor == USER and reads[-1].target == f"server:{USER}/{PROJECT}"
    assert reads[-1].details["bytes"] == len(response.content) and reads[-1].details["status"] == 200


def test_hub_meter_counts_http_and_websocket_bytes(metered):
    hub = metered
    if not server_running(hub):
        start(hub)

    def sent() -> int:
        state = meter_state(hub.settings) or {"servers": []}
        return next((s["sent_window"] for s in state["servers"] if s["server"] == PROJECT), 0)

    before = sent()
    received, idle = asyncio.run(print_in_kernel(hub, "print('w' * 20000)"))
    assert idle and received > 20000
    wait_for(lambda: sent() >= before + received)  # the state file is saved every 2 s


def test_hub_meter_stops_a_kernel_printing_a_dataset_and_suspends_until_cleared(metered, client):
    hub = metered
    if not server_running(hub):
        start(hub)
    received, idle = asyncio.run(print_in_kernel(hub, DUMP))
    assert not idle and received <= LIMIT  # cut before the cell ended, within the limit
    wait_for(lambda: not server_running(hub))
    wait_for(lambda: not client.containers.list(filters={"name": hub.container_name(USER, PROJECT)}))
    stops = [e for e in audit(hub, "hub.server_enforced_stop") if e.target == f"server:{USER}/{PROJECT}"]
    assert stops and stops[-1].actor == "enclave-meter"
    with unit_of_work(hub.settings) as session:
        admin = get_user(session, "olga")
        [incident] = list_incidents(session, admin, status=IncidentStatus.OPEN, user=USER)
        assert incident.details_json["max_bytes_per_window"] == LIMIT and incident.suspends
        incident_id = incident.id
    # Suspended: no server, no sign-in.
    response = hub.spawn(USER, PROJECT)
    assert response.status_code == 403 and f"clears incident #{incident_id}" in response.json()["message"]
    refused = login(hub, USER)
    assert refused.status_code == 403 and "suspended" in refused.text
    with unit_of_work(hub.settings) as session:
        clear_incident(session, get_user(session, "olga"), incident_id, "reviewed with the researcher")
    assert login(hub, USER).status_code == 302
    start(hub)  # a new window: the cleared incident's bytes no longer count

    # A second incident: the policy disables the account at two.
    received, idle = asyncio.run(print_in_kernel(hub, DUMP))
    assert not idle
    wait_for(lambda: not server_running(hub))
    with unit_of_work(hub.settings) as session:
        olga = get_user(session, "olga")
        [second] = list_incidents(session, olga, status=IncidentStatus.OPEN, user=USER)
        clear_incident(session, olga, second.id, "reviewed")
        assert get_user(session, USER).disabled_at is not None
    refused = login(hub, USER)
    assert refused.status_code == 403 and "disabled" in refused.text
    response = hub.spawn(USER, PROJECT)
    assert response.status_code == 403 and "disabled" in response.json()["message"]
    with unit_of_work(hub.settings) as session:
        enable_user(session, get_user(session, "olga"), USER, "second review done")
    assert login(hub, USER).status_code == 302
