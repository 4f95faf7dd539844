"""The browser channel through the real hub and proxy: what a researcher's browser can
get out of a running project server, tried as someone who wants the data on a laptop.

Projects made here (service layer, in the session hub's database): ``br2`` (tier2, with
terminals) and ``br3`` (tier3, no terminals) for the contents API, kernel and terminals;
``brv`` and ``brs`` for a revocation and a suspension that must stop their servers through
the enforcer's wake-up, with the enforcer polling only every 10 minutes.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from enclave.catalog.service import revoke_grant
from enclave.clock import today
from enclave.db.models import AuditEvent, Grant, Incident, Project
from enclave.db.session import unit_of_work
from enclave.enums import IncidentKind, Role
from enclave.hub.browser_policy import load_browser_policy
from enclave.projects.lifecycle import ProjectAction
from enclave.projects.service import create_project, transition_project
from enclave.projects.tiers import load_tiers
from enclave.users import add_user, get_user
from enclave.wakeup import socket_path
from tests.hub_support import grant
from tests.register_support import EXAMPLE_REGISTER

MiB = 1024 * 1024
PROJECTS = {"br2": "tier2", "br3": "tier3", "brv": "tier2", "brs": "tier2"}
USER = "brenda"


@pytest.fixture(scope="module")
def world(hub):
    """brenda's projects, each granted the dataset 'tiny'."""
    with unit_of_work(hub.settings) as session:
        admin = get_user(session, "root-admin")
        add_user(session, admin, USER, {Role.RESEARCHER}, today() + dt.timedelta(days=365))
        tiers = load_tiers(hub.settings.policies_dir)
        for slug, tier in PROJECTS.items():
            create_project(session, admin, tiers, slug=slug, title=f"Browser {slug}", pi=USER,
                           lay_summary="How the browser channel is bounded.", end_date=today() + dt.timedelta(days=400),
                           tier=tier, register=EXAMPLE_REGISTER)
            for action in (ProjectAction.APPROVE, ProjectAction.ACTIVATE):
                transition_project(session, admin, slug, action, reason="set up by a test")
            grant(session, admin, hub.settings, slug, "tiny")
    return hub


def _server(hub, slug: str) -> str:
    response = hub.spawn(USER, slug)
    assert response.status_code in (201, 202), response.text
    hub.wait_ready(USER, slug)
    return f"{hub.url}/user/{USER}/{slug}"


@pytest.fixture(scope="module")
def br2(world):
    yield _server(world, "br2")
    world.stop(USER, "br2")


@pytest.fixture(scope="module")
def br3(world):
    yield _server(world, "br3")
    world.stop(USER, "br3")


def _view_file(hub, slug: str) -> Path:
    with unit_of_work(hub.settings) as session:
        project = session.scalars(select(Project).where(Project.slug == slug)).one()
        g = session.scalars(select(Grant).where(Grant.project_id == project.id, Grant.revoked_at.is_(None))).one()
        return sorted(Path(g.view_path).glob("*.parquet"))[0]


def _workspace(hub, slug: str) -> Path:
    return hub.settings.workspaces_dir / slug


def _get(hub, url: str, **params) -> httpx.Response:
    return httpx.get(url, params=params, headers={"Authorization": f"token {hub.token}"}, timeout=120,
                     trust_env=False)


def _put(hub, url: str, model: dict) -> httpx.Response:
    return httpx.put(url, json=model, headers={"Authorization": f"token {hub.token}"}, timeout=120,
                     trust_env=False)


# --- 1. the contents API ---------------------------------------------------------------


@pytest.fixture(scope="module")
def planted(world, br2):
    """What a researcher would plant in the workspace to get data out, written on the host
    (as code in the container would write it)."""
    ws = _workspace(world, "br2")
    view = _view_file(world, "br2")
    inside = "/data/tiny/" + view.name
    (ws / "copy.parquet").write_bytes(view.read_bytes())
    (ws / "renamed.txt").write_bytes(view.read_bytes())
    (ws / "link.parquet").symlink_to(inside)
    (ws / "linkdir").symlink_to("/data/tiny")
    (ws / "sub").mkdir(exist_ok=True)
    (ws / "sub" / "up").symlink_to("..")
    with open(ws / "big.txt", "wb") as f:
        f.truncate(100 * MiB)
    (ws / "hello.txt").write_text("hello from the workspace\n")
    for path in ws.iterdir():
        os.lchown(path, 1000, 100)
    return ws, view


@pytest.mark.parametrize(
    "path, says",
    [
        ("copy.parquet", "holds Parquet data"),
        ("renamed.txt", "holds Parquet data"),
        ("link.parquet", "is a symbolic link"),
        ("linkdir", "is a symbolic link"),
        ("linkdir/" + "PLACEHOLDER", "is a symbolic link"),
        ("sub/up/hello.txt", "is a symbolic link"),
        ("big.txt", "is 104857600 bytes"),
    ],
)
@pytest.mark.parametrize("fmt", [None, "text", "base64"])
def test_hub_browser_contents_api_refuses_data_copies_links_and_big_files(world, br2, planted, path, says, fmt):
    ws, view = planted
    path = path.replace("PLACEHOLDER", view.name)
    params = {"content": "1", **({"format": fmt} if fmt else {})}
    response = _get(world, f"{br2}/api/contents/{path}", **params)
    assert response.status_code == 403, (response.status_code, response.text[:300])
    message = response.json()["message"]
    assert "\n" not in message
    if fmt != "base64" or says == "is a symbolic link":
        assert says in message, message
    secret = view.read_bytes()
    assert base64.b64encode(secret[:48]).decode()[:40] not in response.text
    assert len(response.content) < 1000


def test_hub_browser_contents_api_serves_text_and_lists_names_only(world, br2, planted):
    ok = _get(world, f"{br2}/api/contents/hello.txt", content="1")
    assert ok.status_code == 200 and ok.json()["content"] == "hello from the workspace\n"
    listing = _get(world, f"{br2}/api/contents", content="1").json()["content"]
    names = {e["name"]: e for e in listing}
    assert {"copy.parquet", "renamed.txt", "big.txt", "hello.txt"} <= set(names)
    assert names["big.txt"]["size"] == 100 * MiB  # names and sizes, fine
    assert all(e["content"] is None for e in listing)
    assert not {"link.parquet", "linkdir"} & set(names)  # links are not listed


@pytest.mark.parametrize(
    "path",
    ["..%2F..%2F..%2Fdata%2Ftiny", "..%2F..%2F..%2Fdata%2Ftiny%2FPLACEHOLDER", "%2Fdata%2Ftiny%2FPLACEHOLDER",
     "sub%2F..%2F..%2F..%2F..%2Fdata%2Ftiny%2FPLACEHOLDER"],
)
def test_hub_browser_contents_api_cannot_spell_its_way_to_data(world, br2, planted, path):
    _, view = planted
    response = _get(world, f"{br2}/api/contents/{path.replace('PLACEHOLDER', view.name)}", content="1")
    assert response.status_code in (400, 403, 404), response.text[:300]
    assert base64.b64encode(view.read_bytes()[:48]).decode()[:40] not in response.text


def test_hub_browser_other_ways_to_fetch_file_bytes_are_closed(world, client, br2, planted):
    """files/, view/, nbconvert/, and the server's own static handlers that read files code
    in the container could write (kernel specs, Lab extensions, settings, workspaces)."""
    _, view = planted
    name = world.container_name(USER, "br2")
    plant = (
        "set -e; for d in $HOME/.local/share/jupyter/kernels/evil $HOME/.local/share/jupyter/labextensions/evil/static "
        "$HOME/.jupyter/lab/user-settings/@evil/x $HOME/.jupyter/lab/workspaces $HOME/.jupyter/custom; do mkdir -p $d; done; "
        "cp /data/tiny/* $HOME/.local/share/jupyter/kernels/evil/; "
        "echo '{\"argv\":[\"python\"],\"display_name\":\"evil\",\"language\":\"python\"}' "
        "> $HOME/.local/share/jupyter/kernels/evil/kernel.json; "
        "cp /data/tiny/* $HOME/.local/share/jupyter/labextensions/evil/static/; "
        "echo '{\"stolen\": \"SECRET-SETTING\"}' > $HOME/.jupyter/lab/user-settings/@evil/x/plugin.jupyterlab-settings; "
        "echo '{\"data\": {\"x\": \"SECRET-WORKSPACE\"}, \"metadata\": {\"id\": \"evil\"}}' "
        "> $HOME/.jupyter/lab/workspaces/evil.jupyterlab-workspace; "
        "cp /data/tiny/* $HOME/.jupyter/custom/; "
        # JupyterLab's own (writable) layout store: a 2 MB "workspace" is not sent.
        "d=$HOME/.local/share/jupyter/lab-state/workspaces; mkdir -p $d; "
        "python -c \"import json; print(json.dumps({'data': {'x': 'SECRET-' + 'y' * 2000000}, "
        "'metadata': {'id': 'big'}}))\" > $d/big.jupyterlab-workspace"
    )
    done = client.containers.get(name).exec_run(["sh", "-c", plant], user="1000")
    assert done.exit_code == 0, done.output
    for path in (f"files/{view.name}", "files/hello.txt", "view/hello.txt", "nbconvert/html/hello.txt",
                 f"kernelspecs/evil/{view.name}", f"lab/extensions/evil/static/{view.name}",
                 f"static/custom/{view.name}", f"custom/{view.name}"):
        response = _get(world, f"{br2}/{path}")
        assert response.status_code in (403, 404), (path, response.status_code)
        assert b"PAR1" not in response.content, path
    # A checkpoint of a link would copy its target beside the workspace's files.
    for path in ("link.parquet", "linkdir/" + view.name):
        checkpoint = httpx.post(f"{br2}/api/contents/{path}/checkpoints", trust_env=False, timeout=60,
                                headers={"Authorization": f"token {world.token}"})
        assert checkpoint.status_code == 403 and "symbolic link" in checkpoint.text, path
    big = _get(world, f"{br2}/lab/api/workspaces")  # the listing carries every workspace's data
    assert big.status_code == 403 and len(big.content) < 1000 and "over 1 MiB" in big.text
    for path in ("lab/api/settings", "lab/api/workspaces/big", "lab/api/workspaces/evil", "api/kernelspecs"):
        response = _get(world, f"{br2}/{path}")
        assert "SECRET-" not in response.text and "evil" not in json.dumps(response.json().get("kernelspecs", {}))


def test_hub_browser_upload_within_the_limit_works_and_above_is_refused(world, br3):
    """tier3: uploads up to 10 MiB, in one request or in chunks (all chunks counted)."""
    limit = load_browser_policy(world.settings.policies_dir).for_tier("tier3").contents.max_upload_bytes
    ws = _workspace(world, "br3")
    small = os.urandom(2 * MiB)
    done = _put(world, f"{br3}/api/contents/small.bin",
                {"type": "file", "format": "base64", "content": base64.b64encode(small).decode()})
    assert done.status_code in (200, 201), done.text[:300]
    assert (ws / "small.bin").read_bytes() == small
    # One request just over the limit.
    over = _put(world, f"{br3}/api/contents/over.bin",
                {"type": "file", "format": "base64", "content": base64.b64encode(os.urandom(limit + 1)).decode()})
    assert over.status_code == 403 and "over this tier's limit" in over.json()["message"]
    assert not (ws / "over.bin").exists()
    # Chunks: 4 + 4 MiB pass, a third 4 MiB chunk goes over; the partial file is removed.
    chunk = base64.b64encode(os.urandom(4 * MiB)).decode()
    for number in (1, 2):
        step = _put(world, f"{br3}/api/contents/chunked.bin",
                    {"type": "file", "format": "base64", "content": chunk, "chunk": number})
        assert step.status_code in (200, 201), step.text[:300]
    assert (ws / "chunked.bin").stat().st_size == 8 * MiB
    last = _put(world, f"{br3}/api/contents/chunked.bin",
                {"type": "file", "format": "base64", "content": chunk, "chunk": -1})
    assert last.status_code == 403 and "over this tier's limit" in last.json()["message"]
    assert not (ws / "chunked.bin").exists()


# --- 2. kernel and terminal output -------------------------------------------------------


async def _execute(base: str, token: str, code: str, timeout: float = 120) -> list[dict]:
    """Run ``code`` in a new kernel through the hub; every message the browser would get."""
    headers = {"Authorization": f"token {token}"}
    async with httpx.AsyncClient(trust_env=False, timeout=60) as http:
        kernel = (await http.post(f"{base}/api/kernels", headers=headers, json={"name": "python3"})).json()
    url = base.replace("http", "ws", 1) + f"/api/kernels/{kernel['id']}/channels?session_id={uuid.uuid4().hex}"
    conn = await websocket_connect(HTTPRequest(url, headers=headers), max_message_size=256 * MiB)
    msg_id = uuid.uuid4().hex
    conn.write_message(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": USER, "session": uuid.uuid4().hex,
                   "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False},
    }))
    received: list[dict] = []
    replied = idle = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            raw = await asyncio.wait_for(conn.read_message(), timeout)
            if raw is None:
                break
            message = json.loads(raw)
            message["_bytes"] = len(raw)
            received.append(message)
            # Shell and iopub are separate channels: done once both the reply and the
            # kernel's return to idle for this request have arrived.
            if message["parent_header"].get("msg_id") == msg_id:
                kind = message["header"]["msg_type"]
                replied = replied or kind == "execute_reply"
                idle = idle or (kind == "status" and message["content"].get("execution_state") == "idle")
                if replied and idle:
                    break
    finally:
        conn.close()
        async with httpx.AsyncClient(trust_env=False, timeout=60) as http:
            await http.delete(f"{base}/api/kernels/{kernel['id']}", headers=headers)
    return received


def _texts(messages: list[dict]) -> str:
    return "".join(m["content"].get("text", "") for m in messages if m["header"]["msg_type"] == "stream")


def test_hub_browser_kernel_output_over_the_message_size_is_truncated_with_a_notice(world, br2):
    limit = load_browser_policy(world.settings.policies_dir).for_tier("tier2").kernel.max_output_bytes
    messages = asyncio.run(_execute(br2, world.token, "print('x' * 2_000_000)"))
    assert "[output truncated: this message was" in _texts(messages), [
        (m["header"]["msg_type"], m["_bytes"], str(m["content"])[:200]) for m in messages]
    assert max(m["_bytes"] for m in messages) < limit
    assert "x" * 10_000 not in _texts(messages)
    assert [m["content"]["status"] for m in messages if m["header"]["msg_type"] == "execute_reply"] == ["ok"]


def test_hub_browser_kernel_output_flood_is_rate_limited_on_every_message_type(world, br2):
    """Display data (which Jupyter's own limit does not count) in a flood, with the kernel
    sending 'idle' after each (which resets Jupyter's own counter): 20 MB produced, at most
    a window's worth reaches the browser."""
    kernel = load_browser_policy(world.settings.policies_dir).for_tier("tier2").kernel
    code = (
        "from IPython.display import display\n"
        "k = get_ipython().kernel\n"
        "for i in range(100):\n"
        "    display({'text/plain': 'z' * 200_000}, raw=True)\n"
        "    k.session.send(k.iopub_socket, 'status', {'execution_state': 'idle'}, parent=k.get_parent('shell'))\n"
    )
    started = time.monotonic()
    messages = asyncio.run(_execute(br2, world.token, code))
    lasted = time.monotonic() - started
    shown = sum(m["_bytes"] for m in messages if m["header"]["msg_type"] == "display_data")
    assert "[output paused:" in _texts(messages)
    # The rate over the time the flood lasted, plus one window and one message (on a fast
    # machine: one window's worth); produced: 100 x 200 kB.
    bound = kernel.iopub_data_rate_limit * (lasted + kernel.rate_limit_window) + kernel.max_output_bytes
    assert 0 < shown <= bound, (shown, lasted)
    assert shown < 20_000_000 / 4


async def _terminal_flood(base: str, token: str, command: str, timeout: float = 60) -> tuple[int, str]:
    headers = {"Authorization": f"token {token}"}
    async with httpx.AsyncClient(trust_env=False, timeout=60) as http:
        term = (await http.post(f"{base}/api/terminals", headers=headers)).json()["name"]
    url = base.replace("http", "ws", 1) + f"/terminals/websocket/{term}"
    conn = await websocket_connect(HTTPRequest(url, headers=headers))
    conn.write_message(json.dumps(["stdin", command + "; echo FLOOD-DONE-$((6*7))\r"]))
    total, tail = 0, ""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                raw = await asyncio.wait_for(conn.read_message(), 5)
            except TimeoutError:
                if "FLOOD-DONE-42" in tail or "output dropped" in tail:
                    break  # quiet after the flood
                continue
            if raw is None:
                break
            kind, *rest = json.loads(raw)
            if kind == "stdout":
                total += len(rest[0])
                tail = (tail + rest[0])[-100_000:]
    finally:
        conn.close()
    return total, tail


def test_hub_browser_terminals_follow_the_tier(world, br2, br3):
    assert _get(world, f"{br2}/api/terminals").status_code == 200
    on = httpx.post(f"{br2}/api/terminals", headers={"Authorization": f"token {world.token}"}, trust_env=False,
                    timeout=60)
    assert on.status_code == 200, on.text
    off = httpx.post(f"{br3}/api/terminals", headers={"Authorization": f"token {world.token}"}, trust_env=False,
                     timeout=60)
    assert off.status_code == 403 and "terminals are not available" in off.text
    assert _get(world, f"{br3}/terminals/websocket/1").status_code == 403
    page = _get(world, f"{br3}/lab").text
    assert '"terminalsAvailable": false' in page.replace("'", '"')


def test_hub_browser_terminal_output_flood_is_rate_limited(world, br2):
    kernel = load_browser_policy(world.settings.policies_dir).for_tier("tier2").kernel
    total, tail = asyncio.run(_terminal_flood(br2, world.token, "head -c 20000000 /dev/zero | tr '\\0' a"))
    assert "terminal output over" in tail
    assert total < 20_000_000 / 2
    assert total >= kernel.iopub_data_rate_limit * kernel.rate_limit_window * 0.5


# --- 4. revocation and suspension stop servers on the change, not at the poll ------------


@pytest.fixture(scope="module")
def enforcer(world):
    """The real enforcer service, polling only every 10 minutes: only the wake-up of a
    committed change can stop a server within these tests."""
    env = {**world.env, "JUPYTERHUB_API_URL": f"{world.url}/hub/api", "JUPYTERHUB_API_TOKEN": world.token}
    log = world.settings.home / "enforcer-test.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "enclave.cli.main", "hub", "enforce", "--interval=600"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not socket_path(world.settings).exists():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        print(log.read_text()[-4000:])


def _wait_gone(hub, slug: str, timeout: float = 120) -> None:
    """Until the hub no longer lists the server (a generous bound: the poll is 10 minutes
    away, so only the wake-up can have stopped it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if slug not in hub.api.get(f"users/{USER}").json().get("servers", {}):
            return
        time.sleep(0.2)
    raise AssertionError(f"{USER}/{slug} still runs {timeout} s after the change")


def _enforced_stops(hub, slug: str) -> list[AuditEvent]:
    with unit_of_work(hub.settings) as session:
        return list(session.scalars(select(AuditEvent).where(
            AuditEvent.action == "hub.server_enforced_stop", AuditEvent.target == f"server:{USER}/{slug}")))


def test_hub_browser_revoked_grant_stops_its_server_at_the_change_and_copies_are_an_incident(world, client, enforcer):
    _server(world, "brv")
    view = _view_file(world, "brv")
    copy = _workspace(world, "brv") / "outbox" / "keep-me.bin"
    copy.write_bytes(view.read_bytes())
    with unit_of_work(world.settings) as session:
        project = session.scalars(select(Project).where(Project.slug == "brv")).one()
        g = session.scalars(select(Grant).where(Grant.project_id == project.id)).one()
        revoke_grant(session, get_user(session, "root-admin"), g.id, reason="consent withdrawn")
        grant_id = g.id
    _wait_gone(world, "brv")
    [stop] = _enforced_stops(world, "brv")
    assert stop.details["reason"] == "the grant of tiny to brv was revoked"
    assert stop.details["trigger"] == "change" and stop.details["cause"] == ["grant.revoke"]
    assert not client.containers.list(all=True, filters={"name": world.container_name(USER, "brv")})
    # The copy left in the workspace is reported to admins.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with unit_of_work(world.settings) as session:
            incidents = session.scalars(select(Incident).where(Incident.kind == IncidentKind.REVOKED_VIEW_COPY)).all()
            found = [i for i in incidents if i.details_json.get("grant") == f"grant {grant_id}"]
            if found:
                break
        time.sleep(0.2)
    assert found and found[0].details_json["copies"][0]["path"] == "outbox/keep-me.bin"
    assert found[0].user.name == USER and found[0].project.slug == "brv"


def test_hub_browser_suspended_project_stops_its_server_at_the_change(world, client, enforcer):
    _server(world, "brs")
    with unit_of_work(world.settings) as session:
        transition_project(session, get_user(session, "root-admin"), "brs", ProjectAction.SUSPEND,
                           reason="data sharing agreement lapsed")
    _wait_gone(world, "brs")
    [stop] = _enforced_stops(world, "brs")
    assert stop.details["reason"] == "project brs is suspended"
    assert stop.details["trigger"] == "change" and stop.details["cause"] == ["project.transition"]
    assert not client.containers.list(all=True, filters={"name": world.container_name(USER, "brs")})
