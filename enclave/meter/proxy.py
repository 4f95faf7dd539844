"""The egress meter: a reverse proxy on the host between the hub's proxy and every server.

The hub's proxy (configurable-http-proxy) routes ``/user/<name>/<server>/`` to this
process, never to a container: ``EnclaveSpawner`` registers each server's internal
address here and gives the hub the meter's URL. For each request the meter finds the
server by its path prefix, forwards it, and counts what the server sends back (status
line, headers, bodies, websocket frames) and what the browser uploads. Before a chunk
or frame goes to the browser, the meter checks the server's window: a chunk that would
pass the tier's ``max_bytes_per_window`` is not sent. The server's connections are cut
at once, the hub is asked to stop it, and an incident opens (``enclave.incidents``).

Contents API reads (``GET .../api/contents/<path>``) and uploads (``PUT``/``POST``) are
written to the audit log with path, bytes and status *before* the response ends: the
last chunk of such a response is held back until the audit event has committed, and
if it cannot be written the response is cut instead.

Control API (loopback, ``Authorization: token <ENCLAVE_METER_TOKEN>``):
``PUT /_meter/routes`` (register), ``DELETE /_meter/routes?prefix=...``,
``GET /_meter/state``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import posixpath
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from aiohttp import WSMsgType, web

from enclave.config import Settings
from enclave.db.session import unit_of_work
from enclave.errors import EnclaveError
from enclave.meter.accounting import DAY, HOUR, ServerMeter
from enclave.meter.service import (
    ContentEvent,
    MeterAction,
    ServerLimits,
    audit_stop,
    record_content_events,
    report_over_limit,
    server_limits,
)

log = logging.getLogger("enclave.meter")

CONTROL = "/_meter/"
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
    "transfer-encoding", "upgrade",
})
# What a websocket handshake sets itself; never copied from the browser's request.
WS_OWN = frozenset({"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
                    "sec-websocket-protocol", "sec-websocket-accept"})
NAME_RE = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
PREFIX_RE = re.compile(rf"^/(?:[^?#]*/)?user/{NAME_RE}/{NAME_RE}/$")
TARGET_RE = re.compile(r"^http://\d{1,3}(?:\.\d{1,3}){3}:\d{1,5}$")
CONTENTS_RE = re.compile(r"/api/contents(?:/(.*))?$")
# The first structural "content" key of a contents model is its top-level one: every
# other top-level value is a scalar, and quotes inside JSON strings are escaped.
TOP_CONTENT_RE = re.compile(rb'"content"\s*:\s*(\S)')
HEAD_BYTES = 64 * 1024
READ_BODY_AT_ONCE = 8 * 1024 * 1024
SAVE_EVERY = 2.0


@dataclass
class Route:
    """One registered server: where its path prefix is forwarded, and its limits."""

    prefix: str
    target: str
    limits: ServerLimits
    tripped: bool = False
    cutters: set[Callable[[], None]] = field(default_factory=set)

    @property
    def key(self) -> tuple[str, str]:
        return (self.limits.user, self.limits.server)

    def cut(self) -> None:
        for cutter in list(self.cutters):
            try:
                cutter()
            except Exception:  # noqa: BLE001 - cutting a connection already gone
                pass
        self.cutters.clear()


class AuditWriter:
    """Writes content events to the audit log in batches; :meth:`record` returns once
    its event has committed (and raises if it could not be written)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pending: list[tuple[ContentEvent, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()

    async def record(self, event: ContentEvent) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((event, future))
        self._wake.set()
        await future

    def _write(self, events: list[ContentEvent]) -> None:
        with unit_of_work(self.settings) as session:
            record_content_events(session, events)

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                await asyncio.to_thread(self._write, [event for event, _ in batch])
            except Exception as exc:  # noqa: BLE001 - each waiting response is cut instead
                log.error("audit of %d content events failed: %s", len(batch), exc)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(RuntimeError(f"audit failed: {exc}"))
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)


def _header_bytes(headers: Any) -> int:
    return sum(len(k) + len(v) + 4 for k, v in headers.items()) + 32


def _forward_headers(headers: Any, *, websocket: bool = False) -> list[tuple[str, str]]:
    drop = HOP_BY_HOP | (WS_OWN if websocket else frozenset())
    return [(k, v) for k, v in headers.items() if k.lower() not in drop]


def contents_path(relative: str) -> str | None:
    """The contents-API path of a request path below a server's prefix, or None when
    the request is not for the contents API (decoded and normalised first, so no
    spelling of the path avoids the audit)."""
    decoded = posixpath.normpath("/" + urllib.parse.unquote(relative.split("?", 1)[0]))
    found = CONTENTS_RE.search(decoded)
    if found is None:
        return None
    path = found.group(1) or ""
    if path.endswith("/checkpoints") or "/checkpoints/" in path or path == "checkpoints":
        return None
    return path


class Meter:
    """The meter's state (routes, per-server counters) and its aiohttp application."""

    def __init__(
        self,
        settings: Settings,
        *,
        token: str,
        hub_api_url: str,
        hub_token: str,
        state_file: Path,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.token = token
        self.hub_api_url = hub_api_url.rstrip("/") + "/"
        self.hub_token = hub_token
        self.state_file = Path(state_file)
        self.clock = clock
        self.routes: dict[str, Route] = {}
        self.meters: dict[tuple[str, str], ServerMeter] = {}
        self.audit = AuditWriter(settings)
        self._client: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dirty = False

    # --- application ---------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        self._client = aiohttp.ClientSession(
            auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )
        for route in await asyncio.to_thread(self.load_state):
            self._spawn(self._stop_server(route))  # tripped before a restart: make sure it stopped
        self._spawn(self.audit.run())
        self._spawn(self._save_loop())

    async def _on_cleanup(self, app: web.Application) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._client is not None:
            await self._client.close()
        self.save_state()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- routing -------------------------------------------------------------------------

    def match(self, raw_path: str) -> Route | None:
        """The route whose prefix the path starts with (longest first)."""
        path = raw_path.split("?", 1)[0]
        best: Route | None = None
        for prefix, route in self.routes.items():
            if (path.startswith(prefix) or path == prefix[:-1]) and (best is None or len(prefix) > len(best.prefix)):
                best = route
        return best

    def meter_of(self, route: Route) -> ServerMeter:
        meter = self.meters.get(route.key)
        limits = route.limits.limits
        if meter is None:
            meter = self.meters[route.key] = ServerMeter(route.limits.user, route.limits.server,
                                                         limits.window_seconds, limits.max_bytes_per_window)
        return meter

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith(CONTROL):
            return await self.control(request)
        route = self.match(request.raw_path)
        if route is None:
            return web.Response(status=404, text="no running server at this address: start it from the enclave console\n")
        if route.tripped:
            return web.Response(status=403, text="this server passed its egress limit and is being stopped\n")
        if (request.headers.get("Upgrade", "").lower() == "websocket"
                and "upgrade" in request.headers.get("Connection", "").lower()):
            return await self._proxy_websocket(request, route)
        return await self._proxy_http(request, route)

    # --- HTTP ----------------------------------------------------------------------------

    async def _proxy_http(self, request: web.Request, route: Route) -> web.StreamResponse:
        assert self._client is not None
        meter = self.meter_of(route)
        relative = request.raw_path[len(route.prefix) - 1:] if request.raw_path.startswith(route.prefix) else "/"
        content_path = contents_path(relative)
        uploaded = 0

        async def body_stream() -> Any:
            nonlocal uploaded
            async for chunk in request.content.iter_chunked(256 * 1024):
                uploaded += len(chunk)
                meter.received(self.clock(), len(chunk))
                yield chunk

        data: Any = None
        if request.body_exists:
            length = request.content_length
            if length is not None and length <= READ_BODY_AT_ONCE:
                data = await request.read()
                uploaded = len(data)
                meter.received(self.clock(), uploaded)
            else:
                data = body_stream()
        meter.received(self.clock(), _header_bytes(request.headers))

        response: web.StreamResponse | None = None
        transport = request.transport

        def cut() -> None:
            if transport is not None:
                transport.abort()

        route.cutters.add(cut)
        try:
            try:
                upstream = await self._client.request(
                    request.method, route.target + request.raw_path, headers=_forward_headers(request.headers),
                    data=data, allow_redirects=False,
                )
            except aiohttp.ClientError as exc:
                log.warning("%s %s: the server did not answer: %r", request.method, request.path, exc)
                return web.Response(status=502, text=f"the server did not answer ({type(exc).__name__}): try again\n")
            try:
                audit_action = self._audit_action(request.method, content_path, request.query)
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                for name, value in upstream.headers.items():
                    if name.lower() not in HOP_BY_HOP:
                        response.headers.add(name, value)
                if not self._send(route, meter, _header_bytes(response.headers)):
                    return self._cut_response(request)
                await response.prepare(request)
                held = b""
                head = bytearray()
                sent = 0
                # A read whose length the server announced is audited while its body
                # streams (the write overlaps the transfer); either way the last chunk
                # waits until the audit event has committed.
                length = upstream.content_length if audit_action is MeterAction.CONTENT_READ else None
                audit_task: asyncio.Future[None] | None = None

                def audit_event(count: int) -> ContentEvent:
                    return ContentEvent(audit_action, route.limits.user, route.limits.server,  # type: ignore[arg-type]
                                        request.method, content_path or "", count, upstream.status)

                async for chunk in upstream.content.iter_any():
                    if not self._send(route, meter, len(chunk)):
                        if audit_task is not None:
                            audit_task.add_done_callback(lambda t: t.exception())
                        return self._cut_response(request, response)
                    if audit_action is MeterAction.CONTENT_READ and len(head) < HEAD_BYTES:
                        head += chunk[: HEAD_BYTES - len(head)]
                        if (length is not None and len(head) >= HEAD_BYTES
                                and not _is_directory_listing(bytes(head))):
                            audit_task = asyncio.ensure_future(self.audit.record(audit_event(length)))
                    sent += len(chunk)
                    if audit_action is None:
                        await response.write(chunk)
                        continue
                    if held:
                        await response.write(held)
                    held = chunk
                if audit_task is None and audit_action is not None and not (
                        audit_action is MeterAction.CONTENT_READ and _is_directory_listing(bytes(head))):
                    count = uploaded if audit_action is MeterAction.CONTENT_UPLOAD else sent
                    audit_task = asyncio.ensure_future(self.audit.record(audit_event(count)))
                if audit_task is not None:
                    try:
                        await audit_task
                    except RuntimeError:
                        return self._cut_response(request, response)
                if held:
                    await response.write(held)
                await response.write_eof()
                return response
            finally:
                upstream.release()
        finally:
            route.cutters.discard(cut)

    @staticmethod
    def _audit_action(method: str, content_path: str | None, query: Any) -> MeterAction | None:
        if content_path is None:
            return None
        if method == "GET":
            return None if query.get("content", "1") == "0" else MeterAction.CONTENT_READ
        if method in ("PUT", "POST"):
            return MeterAction.CONTENT_UPLOAD
        return None

    def _cut_response(self, request: web.Request, response: web.StreamResponse | None = None) -> web.StreamResponse:
        if request.transport is not None:
            request.transport.abort()
        return response if response is not None else web.Response(status=403)

    def _send(self, route: Route, meter: ServerMeter, count: int) -> bool:
        """Count ``count`` bytes about to go to the browser; False (and the server
        tripped) when they would pass its limit."""
        if route.tripped:
            return False
        now = self.clock()
        if not meter.allows(now, count):
            self.trip(route, meter.in_window(now), count)
            return False
        meter.sent(now, count)
        self._dirty = True
        return True

    # --- websockets ----------------------------------------------------------------------

    async def _proxy_websocket(self, request: web.Request, route: Route) -> web.StreamResponse:
        assert self._client is not None
        meter = self.meter_of(route)
        protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        try:
            upstream = await self._client.ws_connect(
                route.target + request.raw_path, headers=_forward_headers(request.headers, websocket=True),
                protocols=protocols, autoping=True, max_msg_size=0, compress=0,
            )
        except aiohttp.WSServerHandshakeError as exc:
            return web.Response(status=exc.status, text="the server refused the websocket\n")
        except aiohttp.ClientError as exc:
            return web.Response(status=502, text=f"the server did not answer ({type(exc).__name__}): try again\n")
        browser = web.WebSocketResponse(protocols=[upstream.protocol] if upstream.protocol else (),
                                        max_msg_size=0, autoping=True, compress=False)
        transport = request.transport

        def cut() -> None:
            if transport is not None:
                transport.abort()
            self._spawn(upstream.close())

        route.cutters.add(cut)
        try:
            await browser.prepare(request)

            async def downstream() -> None:
                async for message in upstream:
                    if message.type is WSMsgType.TEXT:
                        if not self._send(route, meter, len(message.data.encode())):
                            return
                        await browser.send_str(message.data)
                    elif message.type is WSMsgType.BINARY:
                        if not self._send(route, meter, len(message.data)):
                            return
                        await browser.send_bytes(message.data)
                    else:
                        return

            async def upstream_pump() -> None:
                async for message in browser:
                    if message.type is WSMsgType.TEXT:
                        meter.received(self.clock(), len(message.data.encode()))
                        await upstream.send_str(message.data)
                    elif message.type is WSMsgType.BINARY:
                        meter.received(self.clock(), len(message.data))
                        await upstream.send_bytes(message.data)
                    else:
                        return

            pumps = [asyncio.ensure_future(downstream()), asyncio.ensure_future(upstream_pump())]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await upstream.close()
                if route.tripped and transport is not None:
                    transport.abort()
                else:
                    await browser.close()
            return browser
        finally:
            route.cutters.discard(cut)
            if not upstream.closed:
                await upstream.close()

    # --- over the limit ------------------------------------------------------------------

    def trip(self, route: Route, sent_in_window: int, refused: int) -> None:
        """Cut the server's connections now; stop it and open the incident in the background."""
        if route.tripped:
            return
        route.tripped = True
        self.meter_of(route).tripped = True
        self._dirty = True
        log.warning("%s/%s passed its limit (%d bytes in %d s, %d more refused): cutting and stopping it",
                    route.limits.user, route.limits.server, sent_in_window, route.limits.limits.window_seconds, refused)
        route.cut()
        self._spawn(self._after_trip(route, sent_in_window, refused))

    async def _after_trip(self, route: Route, sent_in_window: int, refused: int) -> None:
        await asyncio.gather(self._stop_server(route), self._open_incident(route, sent_in_window, refused),
                             return_exceptions=True)

    async def _open_incident(self, route: Route, sent_in_window: int, refused: int) -> None:
        def write() -> int:
            with unit_of_work(self.settings) as session:
                return report_over_limit(session, self.settings, route.limits, sent_in_window, refused).id

        for attempt in range(5):
            try:
                incident = await asyncio.to_thread(write)
                log.warning("incident #%d opened for %s/%s", incident, route.limits.user, route.limits.server)
                return
            except Exception as exc:  # noqa: BLE001 - retried; the server is cut and stopping anyway
                log.error("could not open the incident for %s/%s (try %d): %s",
                          route.limits.user, route.limits.server, attempt + 1, exc)
                await asyncio.sleep(1 + attempt)

    async def _stop_server(self, route: Route) -> None:
        user, server = route.limits.user, route.limits.server
        path = f"users/{urllib.parse.quote(user)}/servers/{urllib.parse.quote(server)}"
        async with httpx.AsyncClient(base_url=self.hub_api_url, timeout=30, trust_env=False,
                                     headers={"Authorization": f"token {self.hub_token}"}) as client:
            for attempt in range(10):
                try:
                    response = await client.delete(path)
                    if response.status_code in (202, 204, 404):
                        break
                    log.error("the hub refused to stop %s/%s: %s %s", user, server, response.status_code,
                              response.text[:200])
                except httpx.HTTPError as exc:
                    log.error("could not reach the hub to stop %s/%s: %s", user, server, exc)
                await asyncio.sleep(min(5, 0.5 * (attempt + 1)))
        reason = f"passed its egress limit of {route.limits.limits.max_bytes_per_window} bytes " \
                 f"in {route.limits.limits.window_seconds} s"

        def write() -> None:
            with unit_of_work(self.settings) as session:
                audit_stop(session, user, server, reason)

        try:
            await asyncio.to_thread(write)
        except Exception as exc:  # noqa: BLE001 - the stop happened; the hub audits it too
            log.error("could not audit the stop of %s/%s: %s", user, server, exc)

    # --- control API ---------------------------------------------------------------------

    async def control(self, request: web.Request) -> web.StreamResponse:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"token {self.token}".encode()):
            return web.json_response({"error": "a valid meter token is required"}, status=403)
        action = request.path[len(CONTROL):].rstrip("/")
        if action == "routes" and request.method == "PUT":
            return await self._register(request)
        if action == "routes" and request.method == "DELETE":
            prefix = request.query.get("prefix", "")
            route = self.routes.pop(prefix, None)
            if route is not None:
                route.cut()
                await asyncio.to_thread(self.save_state)
            return web.json_response({"removed": route is not None})
        if action == "state" and request.method == "GET":
            return web.json_response(self.snapshot())
        return web.json_response({"error": f"no control action {request.method} {action!r}"}, status=404)

    async def _register(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
            prefix, target = str(body["prefix"]), str(body["target"])
            user, server = str(body["user"]), str(body["server"])
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "give prefix, target, user and server as JSON"}, status=400)
        if not PREFIX_RE.match(prefix) or not prefix.endswith(f"/user/{user}/{server}/"):
            return web.json_response({"error": f"prefix {prefix!r} is not /user/{user}/{server}/"}, status=400)
        if not TARGET_RE.match(target):
            return web.json_response({"error": f"target {target!r} is not http://<ip>:<port>"}, status=400)
        try:
            limits = await asyncio.to_thread(self._limits, user, server)
        except EnclaveError as exc:
            return web.json_response({"error": str(exc)}, status=409)
        for other_prefix, other in list(self.routes.items()):
            if other.target == target and other_prefix != prefix:
                del self.routes[other_prefix]  # a container address is reused: the old route is stale
        route = Route(prefix, target, limits)
        meter = self.meter_of(route)
        meter.set_limits(limits.limits.window_seconds, limits.limits.max_bytes_per_window, self.clock())
        if meter.tripped:
            meter.start_new_window()
        self.routes[prefix] = route
        await asyncio.to_thread(self.save_state)
        log.info("route %s -> %s (%s, %d bytes per %d s)", prefix, target, limits.tier,
                 limits.limits.max_bytes_per_window, limits.limits.window_seconds)
        return web.json_response({"prefix": prefix, "tier": limits.tier,
                                  "max_bytes_per_window": limits.limits.max_bytes_per_window,
                                  "window_seconds": limits.limits.window_seconds})

    def _limits(self, user: str, server: str) -> ServerLimits:
        with unit_of_work(self.settings) as session:
            return server_limits(session, self.settings, user, server)

    # --- state: the dashboard's view, and what survives a restart ----------------------

    def snapshot(self) -> dict[str, Any]:
        now = self.clock()
        running = {route.key: route for route in self.routes.values()}
        servers = []
        for key, meter in sorted(self.meters.items()):
            route = running.get(key)
            servers.append({
                "user": meter.user, "server": meter.server, "running": route is not None,
                "tripped": bool(route and route.tripped),
                "tier": route.limits.tier if route else None,
                "window_seconds": meter.window_seconds, "max_bytes_per_window": meter.max_bytes_per_window,
                "sent_window": meter.in_window(now), "sent_hour": meter.sent_within(now, HOUR),
                "sent_day": meter.sent_within(now, DAY), "received_day": meter.received_within(now, DAY),
                "sent_total": meter.sent_total, "received_total": meter.received_total,
                "last_seen": meter.last_seen,
            })
        return {"at": now, "servers": servers,
                "routes": [{"prefix": r.prefix, "target": r.target, "user": r.limits.user,
                            "server": r.limits.server, "tripped": r.tripped} for r in self.routes.values()]}

    def save_state(self) -> None:
        """Write routes, counters and the dashboard's snapshot atomically (0600)."""
        state = {"snapshot": self.snapshot(),
                 "meters": [meter.dump() for meter in self.meters.values()]}
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(state, fh)
        os.replace(tmp, self.state_file)
        self._dirty = False

    def load_state(self) -> list[Route]:
        """Restore counters and routes after a restart; a route whose limits cannot be
        found any more is dropped (its server gets 404s until restarted: fail closed).
        Returns the routes that had tripped."""
        try:
            state = json.loads(self.state_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.error("meter state %s unreadable (%s): starting empty", self.state_file, exc)
            return []
        now = self.clock()
        for data in state.get("meters", []):
            meter = ServerMeter.load(data, now)
            self.meters[(meter.user, meter.server)] = meter
        for item in state.get("snapshot", {}).get("routes", []):
            try:
                limits = self._limits(item["user"], item["server"])
            except (EnclaveError, KeyError) as exc:
                log.error("route %s dropped at restart: %s", item.get("prefix"), exc)
                continue
            route = Route(item["prefix"], item["target"], limits, tripped=bool(item.get("tripped")))
            self.routes[route.prefix] = route
        return [route for route in self.routes.values() if route.tripped]

    async def _save_loop(self) -> None:
        while True:
            await asyncio.sleep(SAVE_EVERY)
            if self._dirty:
                try:
                    await asyncio.to_thread(self.save_state)
                except OSError as exc:
                    log.error("could not save the meter state: %s", exc)


def _is_directory_listing(head: bytes) -> bool:
    """A contents model whose top-level content is a list: names, not file content."""
    found = TOP_CONTENT_RE.search(head)
    return found is not None and found.group(1) == b"["


def read_state(path: Path) -> dict[str, Any] | None:
    """The dashboard's snapshot as the meter last saved it (None if there is none)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8")).get("snapshot")
    except (OSError, ValueError):
        return None
