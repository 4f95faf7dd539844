"""The meter as a real proxy on loopback, in front of a real (small) HTTP and websocket
server standing for a notebook server, with a real database. The hub it asks to stop
servers is a recorder on loopback; tests/docker/hub/test_hub_meter.py runs it all with
the real hub, proxy and containers."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web

from enclave.audit import list_events, verify_chain
from enclave.config import Settings
from enclave.db.models import Incident
from enclave.db.session import unit_of_work, upgrade
from enclave.enums import IncidentStatus
from enclave.incidents import check_not_suspended
from enclave.meter.client import MeterUnavailable, register_route, unregister_route
from enclave.meter.proxy import Meter
from enclave.users import get_user
from tests.conftest import REPO, Factory

TOKEN = "meter-test-token"
PREFIX = "/user/ada/cardio/"
LIMIT = 40_000


@pytest.fixture
def env(tmp_path: Path) -> Settings:
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    browser = yaml.safe_load((policies / "browser.yaml").read_text())
    browser["tiers"]["tier2"]["meter"].update(max_bytes_per_window=LIMIT, window_seconds=600,
                                              suspend_user=True, disable_after_incidents=2)
    (policies / "browser.yaml").write_text(yaml.safe_dump(browser))
    settings = Settings.from_env({"ENCLAVE_HOME": str(tmp_path / "home"), "ENCLAVE_POLICIES": str(policies)})
    upgrade(settings)
    with unit_of_work(settings) as session:
        Factory(session, settings).project("cardio", pi="ada", status="active")
    (settings.home / "hub").mkdir(parents=True, exist_ok=True)
    return settings


def notebook_server() -> web.Application:
    """Answers like a notebook server under PREFIX: contents, a big body, a websocket."""
    async def contents(request: web.Request) -> web.Response:
        path = request.match_info["path"]
        if request.method == "PUT":
            body = await request.read()
            return web.json_response({"path": path, "size": len(body)}, status=201)
        if path == "":
            return web.json_response({"name": "", "path": "", "content": [{"name": "a.txt", "type": "file"}],
                                      "type": "directory"})
        content = "x" * 3000 if request.query.get("content", "1") != "0" else None
        return web.json_response({"name": path, "path": path, "content": content, "type": "file"})

    async def big(request: web.Request) -> web.StreamResponse:
        size = int(request.query["size"])
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(size // 4096):
            await response.write(b"b" * 4096)
        await response.write_eof()
        return response

    async def channels(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=["v1.kernel.websocket.jupyter.org"])
        await ws.prepare(request)
        async for message in ws:
            size = int(message.data)
            for _ in range(max(1, size // 2000)):
                await ws.send_bytes(b"k" * 2000)
            await ws.send_str("idle")
        return ws

    app = web.Application()
    app.router.add_route("*", PREFIX + "api/contents/{path:.*}", contents)
    app.router.add_route("*", PREFIX + "api/contents", contents)
    app.router.add_get(PREFIX + "big", big)
    app.router.add_get(PREFIX + "api/kernels/k1/channels", channels)
    return app


def recording_hub(stops: list[str]) -> web.Application:
    async def delete(request: web.Request) -> web.Response:
        stops.append(request.path)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_delete("/hub/api/users/{user}/servers/{server}", delete)
    return app


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


class Running:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stops: list[str] = []

    async def __aenter__(self) -> Running:
        self.upstream, self.upstream_url = await _serve(notebook_server())
        self.hub, hub_url = await _serve(recording_hub(self.stops))
        self.meter = Meter(self.settings, token=TOKEN, hub_api_url=f"{hub_url}/hub/api",
                           hub_token="hub-token", state_file=self.settings.home / "hub" / "meter-state.json")
        self.runner, self.url = await _serve(self.meter.app())
        self.http = aiohttp.ClientSession()
        return self

    async def register(self) -> dict:
        return await register_route(self.url, TOKEN, prefix=PREFIX, user="ada", server="cardio",
                                    target=self.upstream_url)

    async def __aexit__(self, *exc: object) -> None:
        await self.http.close()
        for runner in (self.runner, self.hub, self.upstream):
            await runner.cleanup()

    def server_state(self) -> dict:
        return next(s for s in self.meter.snapshot()["servers"] if s["server"] == "cardio")


def _events(settings: Settings, action: str) -> list:
    with unit_of_work(settings) as session:
        return [(e.actor, e.project, e.target, e.details) for e in list_events(session, action=action)]


def test_meter_counts_http_bodies_websocket_frames_and_uploads(env):
    async def scenario() -> None:
        async with Running(env) as run:
            answer = await run.register()
            assert answer["max_bytes_per_window"] == LIMIT and answer["tier"] == "tier2"
            async with run.http.get(run.url + PREFIX + "big?size=8192") as response:
                assert len(await response.read()) == 8192
            after_http = run.server_state()["sent_window"]
            assert 8192 <= after_http < 8192 + 1000  # the body plus the status line and headers
            async with run.http.ws_connect(run.url + PREFIX + "api/kernels/k1/channels",
                                           protocols=["v1.kernel.websocket.jupyter.org"]) as ws:
                assert ws.protocol == "v1.kernel.websocket.jupyter.org"
                await ws.send_str("10000")
                got = 0
                while (message := await ws.receive()).type is aiohttp.WSMsgType.BINARY:
                    got += len(message.data)
                assert got == 10000 and message.data == "idle"
            assert run.server_state()["sent_window"] == after_http + 10000 + len("idle")
            async with run.http.put(run.url + PREFIX + "api/contents/up.bin", data=b"u" * 5000) as response:
                assert response.status == 201
            assert run.server_state()["received_day"] >= 5000 + len("10000")

    asyncio.run(scenario())


def test_meter_audits_content_reads_and_uploads_with_path_and_bytes(env):
    async def scenario() -> None:
        async with Running(env) as run:
            await run.register()
            async with run.http.get(run.url + PREFIX + "api/contents/project/notes.txt?content=1") as response:
                body = await response.read()
                assert json.loads(body)["content"] == "x" * 3000
            async with run.http.get(run.url + PREFIX + "api/%63ontents/project/other.txt") as response:
                assert response.status == 200
            async with run.http.get(run.url + PREFIX + "api/contents/project/meta.txt?content=0") as response:
                assert response.status == 200
            async with run.http.get(run.url + PREFIX + "api/contents/") as response:  # a folder's names
                assert response.status == 200
            async with run.http.put(run.url + PREFIX + "api/contents/project/up.csv", data=b"a,b\n" * 100) as response:
                assert response.status == 201
            return len(body)

    read_bytes = asyncio.run(scenario())
    reads = _events(env, "meter.content_read")
    assert [(actor, project, target, d["path"], d["status"]) for actor, project, target, d in reads] == [
        ("ada", "cardio", "server:ada/cardio", "project/notes.txt", 200),
        ("ada", "cardio", "server:ada/cardio", "project/other.txt", 200),
    ]
    assert reads[0][3]["bytes"] == read_bytes
    [upload] = _events(env, "meter.content_upload")
    assert upload[3]["path"] == "project/up.csv" and upload[3]["bytes"] == 400 and upload[3]["status"] == 201


def test_meter_over_the_limit_cuts_stops_and_suspends(env):
    async def scenario() -> tuple[int, int]:
        async with Running(env) as run:
            await run.register()
            with pytest.raises(aiohttp.ClientError):
                async with run.http.get(run.url + PREFIX + "big?size=200000") as response:
                    await response.read()
            for _ in range(100):  # the incident and the stop run in the background
                if run.stops and _events(env, "hub.server_enforced_stop"):
                    break
                await asyncio.sleep(0.05)
            state = run.server_state()
            async with run.http.get(run.url + PREFIX + "big?size=4096") as response:
                refused = response.status
            return state["sent_window"], refused, list(run.stops)

    sent, refused_status, stops = asyncio.run(scenario())
    assert sent <= LIMIT  # nothing past the limit reached the browser
    assert refused_status == 403
    assert stops == ["/hub/api/users/ada/servers/cardio"]
    [(actor, _, target, details)] = _events(env, "hub.server_enforced_stop")
    assert actor == "enclave-meter" and target == "server:ada/cardio" and "egress limit" in details["reason"]
    with unit_of_work(env) as session:
        [incident] = session.query(Incident).all()
        assert incident.status is IncidentStatus.OPEN and incident.suspends
        assert incident.details_json["max_bytes_per_window"] == LIMIT
        with pytest.raises(Exception, match="suspended until an admin clears incident"):
            check_not_suspended(session, get_user(session, "ada"))
        assert verify_chain(session).ok


def test_meter_websocket_over_the_limit_is_cut(env):
    async def scenario() -> int:
        async with Running(env) as run:
            await run.register()
            got = 0
            async with run.http.ws_connect(run.url + PREFIX + "api/kernels/k1/channels") as ws:
                await ws.send_str(str(LIMIT * 3))
                while (message := await ws.receive()).type is aiohttp.WSMsgType.BINARY:
                    got += len(message.data)
            for _ in range(100):
                if run.stops:
                    break
                await asyncio.sleep(0.05)
            assert run.stops
            return got

    assert asyncio.run(scenario()) <= LIMIT


def test_meter_control_needs_its_token_and_refuses_unknown_servers(env):
    async def scenario() -> None:
        async with Running(env) as run:
            with pytest.raises(MeterUnavailable, match="a valid meter token"):
                await register_route(run.url, "wrong", prefix=PREFIX, user="ada", server="cardio",
                                     target=run.upstream_url)
            with pytest.raises(MeterUnavailable, match="no project named 'nosuch'"):
                await register_route(run.url, TOKEN, prefix="/user/ada/nosuch/", user="ada", server="nosuch",
                                     target=run.upstream_url)
            with pytest.raises(MeterUnavailable, match="is not /user/ada/cardio/"):
                await register_route(run.url, TOKEN, prefix="/user/bob/cardio/", user="ada", server="cardio",
                                     target=run.upstream_url)
            async with run.http.get(run.url + PREFIX + "big?size=4096") as response:
                assert response.status == 404  # not registered: nothing is forwarded
            async with run.http.get(run.url + "/_meter/state") as response:
                assert response.status == 403
            await run.register()
            await unregister_route(run.url, TOKEN, PREFIX)
            async with run.http.get(run.url + PREFIX + "big?size=4096") as response:
                assert response.status == 404

    asyncio.run(scenario())


def test_meter_no_answer_means_no_server(env):
    with pytest.raises(MeterUnavailable, match="did not answer"):
        asyncio.run(register_route("http://127.0.0.1:9", TOKEN, prefix=PREFIX, user="ada", server="cardio",
                                   target="http://127.0.0.1:1", attempts=2, interval=0.01))


def test_meter_counts_and_routes_survive_a_restart(env):
    async def first() -> int:
        async with Running(env) as run:
            await run.register()
            async with run.http.get(run.url + PREFIX + "big?size=8192") as response:
                await response.read()
            return run.server_state()["sent_window"]

    async def second() -> tuple[int, list]:
        async with Running(env) as run:
            return run.server_state()["sent_window"], [r["prefix"] for r in run.meter.snapshot()["routes"]]

    sent = asyncio.run(first())
    assert asyncio.run(second()) == (sent, [PREFIX])
