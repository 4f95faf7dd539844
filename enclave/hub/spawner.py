"""EnclaveSpawner: one isolated notebook server per (user, project).

The server's name is the project's slug (JupyterHub named servers). Who may open which
project, and what the server mounts, is decided by ``enclave.hub.access``; the container's
isolation (user, capabilities, read-only root, limits, internal network, mounts) comes
only from ``enclave.sandbox``: this class builds no isolation of its own. Every start,
stop and refusal is audited under the name of whoever asked for it (``enclave.hub.actors``),
and only the owner may start their server. A server that ends on its own (its container
killed, out of memory, exited, gone) is ended by the hub when its poll notices: removed,
and its stop audited once as the hub's with the reason (``EnclaveSpawner.poll``).
"""

from __future__ import annotations

import asyncio
import contextvars
import html
import json
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from dockerspawner import DockerSpawner
from tornado import web
from traitlets import Float, Unicode, default

from enclave import sandbox
from enclave.audit import append_event
from enclave.catalog.service import live_grants
from enclave.clock import utcnow
from enclave.config import Settings
from enclave.db.session import unit_of_work
from enclave.enums import ContainerEngine
from enclave.errors import EnclaveError
from enclave.hub import actors
from enclave.hub.access import (
    ServerAction,
    check_can_spawn,
    prepare_workspace,
    project_mounts,
    spawnable_projects,
)
from enclave.hub.browser_policy import TierBrowserPolicy, load_browser_policy
from enclave.hub.swarm import check_engine
from enclave.meter.client import MeterUnavailable, register_route, unregister_route
from enclave.users import find_user

ALLOWED_OPTIONS = frozenset({"project"})
PROJECT_LABEL = "org.enclave.project"
USER_LABEL = "org.enclave.user"


class EnclaveSpawner(DockerSpawner):
    """A DockerSpawner whose servers are project workspaces inside the enclave's sandbox."""

    # The engine policies/containers.yaml must name for this spawner to start servers.
    engine = ContainerEngine.DOCKER
    # Settings that would bypass enclave.sandbox; a start is refused while any is set.
    sandbox_only_traits: tuple[str, ...] = ("volumes", "extra_host_config", "extra_create_kwargs")
    # Why the server ends, when the enclave (not a person) ends it; recorded with its stop.
    _enclave_stop_reason: str | None = None
    # The object (container, service) whose end is under way or done: it is stopped and
    # audited once, whichever of a stop and any number of polls comes first.
    _enclave_ending: str = ""

    enclave_home = Unicode(
        "",
        help="""ENCLAVE_HOME of the enclave whose projects this hub serves (empty: from
        the environment, as Settings.from_env() reads it). Workspaces and views are found
        below it.""",
    ).tag(config=True)

    container_policy_file = Unicode(
        "",
        help="""The containers policy (image, network, limits) as a YAML file (empty:
        containers.yaml in the enclave's policy directory). See policies/containers.yaml.""",
    ).tag(config=True)

    ready_poll_interval = Float(
        0.1,
        help="""Seconds between checks that a starting server accepts connections. The
        spawner returns as soon as it does, so the hub's own readiness check (which backs
        off from 0.2 s to 5 s between tries) succeeds at its first try instead of waiting
        out a back-off step.""",
    ).tag(config=True)

    meter_url = Unicode(
        "",
        help="""URL of the egress meter (enclave.meter) on loopback. Each server is
        registered with it and the hub's proxy routes the server's URL to the meter,
        never to the container; a server does not start when the meter does not answer
        (fail closed). Set by jupyterhub_config.py.""",
    ).tag(config=True)

    meter_token = Unicode(
        "",
        help="The token of the egress meter's control API (set by jupyterhub_config.py).",
    ).tag(config=True)

    @default("prefix")
    def _default_prefix(self) -> str:
        return "enclave-nb"

    @default("remove")
    def _default_remove(self) -> bool:
        # Nothing worth keeping lives outside the mounted workspace (the root is read-only).
        return True

    @default("use_internal_ip")
    def _default_use_internal_ip(self) -> bool:
        return True

    @default("pull_policy")
    def _default_pull_policy(self) -> str:
        # No registry to pull from: the image is built locally by scripts/build-images.sh.
        return "never"

    @default("image")
    def _default_image(self) -> str:
        return self.container_policy().image

    @default("network_name")
    def _default_network_name(self) -> str:
        return self.container_policy().network

    @default("options_form")
    def _default_options_form(self) -> Any:
        return EnclaveSpawner._render_options_form

    def enclave_settings(self) -> Settings:
        if not self.enclave_home:
            return Settings.from_env()
        return Settings.from_env({**os.environ, "ENCLAVE_HOME": self.enclave_home})

    def container_policy(self) -> sandbox.ContainerPolicy:
        path = self.container_policy_file or str(self.enclave_settings().policies_dir / "containers.yaml")
        return sandbox.load_container_policy(path)

    # --- the options form: the user's active projects ------------------------------------

    async def _render_options_form(self) -> str:
        if self.name:
            # A named server is its project's server: open it at once (the start re-checks
            # access and refuses with the reason), with no form to confirm what the URL says.
            return ""

        def active_projects() -> list[tuple[str, str]]:
            with unit_of_work(self.enclave_settings()) as session:
                user = find_user(session, self.user.name)
                return [(p.slug, p.title) for p in spawnable_projects(session, user)] if user else []

        return render_options_form(await asyncio.to_thread(active_projects), selected=self.name)

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, str]:
        return {"project": (formdata.get("project") or [""])[0]}

    # --- start / stop ----------------------------------------------------------------------

    def _requested_project(self) -> str:
        """The project this server is for: its name, which a form choice must match."""
        unknown = sorted(set(self.user_options or {}) - ALLOWED_OPTIONS)
        if unknown:
            raise web.HTTPError(400, f"unknown server option {unknown[0]!r}: only 'project' may be given")
        chosen = (self.user_options or {}).get("project")
        if chosen and self.name and chosen != self.name:
            raise web.HTTPError(
                403, f"this server is for project {self.name}, not {chosen}: open /hub/spawn/{self.user.name}/{chosen}"
            )
        return self.name

    def _check_and_prepare(
        self, slug: str, requester: actors.Requester | None = None
    ) -> tuple[sandbox.ContainerPolicy, list[sandbox.Mount]]:
        """Re-check access now, compute the mounts, create the workspace, audit the start
        under the name of whoever asked for it; on refusal audit it and raise HTTPError
        403 with the reason."""
        settings = self.enclave_settings()
        policy = self.container_policy()
        refused: str | None = None
        with unit_of_work(settings) as session:
            try:
                actors.check_may_start(self.user.name, requester)
                user, project = check_can_spawn(session, self.user.name, slug, utcnow())
                # The tier's browser channel (limits passed on the command line and in the
                # environment); a tier without settings gets no server.
                self._enclave_browser = load_browser_policy(settings.policies_dir).for_tier(project.tier)
                mounts = project_mounts(settings, session, project)
                prepare_workspace(settings, project.slug)
                # What enclave.safe records in each output's evidence: the versions read.
                self._enclave_datasets = {
                    g.dataset_version.dataset.name: str(g.dataset_version.version)
                    for g in live_grants(session, project)
                }
            except EnclaveError as exc:
                refused = str(exc)
                append_event(session, requester.name if requester else self.user.name, ServerAction.REFUSE,
                             project=slug[:40] or None, target=f"server:{self.user.name}/{slug}",
                             details={"reason": refused, "by": requester.kind if requester else "user"})
            else:
                by = requester or actors.Requester(user.name, "user")
                append_event(session, user if by.name == user.name and by.is_user else by.name,
                             ServerAction.SPAWN, project=project, target=f"server:{user.name}/{slug}",
                             details={"image": policy.image, "mounts": [m.target for m in mounts], "by": by.kind})
        if refused is not None:
            raise web.HTTPError(403, refused)
        return policy, [
            sandbox.Mount(source=str(m.source), target=m.target, read_only=m.read_only) for m in mounts
        ]

    async def start(self) -> str:
        if not (self.meter_url and self.meter_token):
            raise web.HTTPError(500, "no egress meter is configured: set c.EnclaveSpawner.meter_url and meter_token")
        for trait in self.sandbox_only_traits:
            if getattr(self, trait):
                raise web.HTTPError(
                    500, f"{type(self).__name__} takes isolation only from enclave.sandbox: remove c.{type(self).__name__}.{trait}"
                )
        try:
            check_engine(self.enclave_settings(), self.container_policy(), self.engine)
        except EnclaveError as exc:
            raise web.HTTPError(500, str(exc)) from None
        slug = self._requested_project()
        self._enclave_policy, self._enclave_mounts = await asyncio.to_thread(
            self._check_and_prepare, slug, actors.requester_of(self.handler))
        ip, port = await super().start()
        await wait_until_listening(ip, port, timeout=self.http_timeout, interval=self.ready_poll_interval,
                                   stopped=self._container_stopped)
        # The browser reaches the server only through the meter: the hub's proxy gets the
        # meter's URL, the meter the container's address.
        try:
            await register_route(self.meter_url, self.meter_token, prefix=self.server.base_url,
                                 user=self.user.name, server=self.name, target=f"http://{ip}:{port}")
        except MeterUnavailable as exc:
            await super().stop(now=True)
            raise web.HTTPError(503, str(exc)) from None
        return self.meter_url

    async def _container_stopped(self) -> bool:
        # The engine's own answer: a server that dies while it starts is ended by the stop
        # of the failed start, not in the middle of it.
        return await super().poll() is not None

    async def poll(self) -> Any:
        """The engine's poll (DockerSpawner's, or SwarmSpawner's beneath the Swarm
        spawner), and a server that has ended for good is ended here, once.

        JupyterHub only forgets a server whose poll says it ended: it never calls stop, so
        the container (or service) would be left behind and the end never audited. So the
        first poll to see the end removes it and audits the stop as the hub's, with the
        reason (:meth:`_end_reason`); a later poll, or one racing it or a stop under way,
        finds the end claimed and changes nothing."""
        known = self.object_id
        status = await super().poll()
        if not known:
            return status  # nothing started, or already ended
        reason = await self._end_reason(status)
        if reason is None:
            return status
        if self._enclave_ending != known:  # no await between this check and the claim
            self._enclave_ending = known
            self.object_id = known  # gone from the engine already: still forget it through stop
            await self._end_as_hub(reason)
        return reason

    async def _end_reason(self, status: Any) -> str | None:
        """Why the server has ended for good, or None while it runs: here, its container is
        not running (or is gone), and a container that stopped is never started again."""
        if status is None:
            return None
        container = await self.get_object()
        if container is None:
            return "the server's container is gone from the engine"
        return container_end_reason(container.get("State") or {})

    async def _end_as_hub(self, reason: str) -> None:
        """Stop the server as the hub's own act (no request behind it), recording ``reason``."""
        self._enclave_stop_reason = reason
        context = contextvars.copy_context()
        context.run(actors.act_for, actors.HUB)
        await asyncio.get_running_loop().create_task(self.stop(), context=context)

    async def create_object(self) -> dict[str, Any]:
        """Create the container with exactly the sandbox's host config and create arguments."""
        extra = sandbox.create_kwargs(self._enclave_policy)
        labels = {**extra.pop("labels", {}), PROJECT_LABEL: self.name, USER_LABEL: self.user.name}
        host_config = sandbox.host_config(self._enclave_policy, self._enclave_mounts)
        return await self.docker(
            "create_container",
            image=self.image,
            name=self.container_name,
            command=await self.get_command(),
            environment=self.get_env(),
            ports={f"{self.port}/tcp": None},
            labels=labels,
            host_config=self.client.create_host_config(**host_config),
            **extra,
        )

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        env["ENCLAVE_DATASETS"] = json.dumps(getattr(self, "_enclave_datasets", {}), sort_keys=True)
        browser: TierBrowserPolicy | None = getattr(self, "_enclave_browser", None)
        if browser is not None:  # without it the server refuses to start (fail closed)
            env.update(browser.server_environment())
        return env

    def get_args(self) -> list[str]:
        browser: TierBrowserPolicy | None = getattr(self, "_enclave_browser", None)
        return [*super().get_args(), *(browser.server_args() if browser is not None else [])]

    async def stop(self, now: bool = False) -> None:
        had_container = bool(self.object_id)  # not after a refused start: nothing ran
        if had_container:
            self._enclave_ending = self.object_id  # a poll seeing it end now leaves it to this stop
        if self.server is not None and self.meter_url:
            try:
                await unregister_route(self.meter_url, self.meter_token, self.server.base_url)
            except Exception as exc:  # noqa: BLE001 - the stop goes on; the hub removes its route anyway
                self.log.warning("the egress meter did not forget %s: %s", self.server.base_url, exc)
        await super().stop(now=now)
        if had_container:
            # Who asked: the stop's request (kept by the authenticator), else the start's, else the hub.
            requester = actors.current() or actors.requester_of(self.handler) or actors.HUB
            await asyncio.to_thread(self._audit_stop, requester)

    async def stop_object(self) -> None:
        if self.object_id:  # a second stop (after a poll ended it) has nothing to stop
            await super().stop_object()

    async def remove_object(self) -> None:
        import docker.errors

        if not self.object_id:  # nor anything to remove
            return
        try:
            await super().remove_object()
        except docker.errors.NotFound:
            pass  # gone from the engine already

    def _audit_stop(self, requester: actors.Requester) -> None:
        details = {"by": requester.kind}
        if self._enclave_stop_reason:
            details["reason"] = self._enclave_stop_reason
            self._enclave_stop_reason = None
        with unit_of_work(self.enclave_settings()) as session:
            append_event(session, requester.name, ServerAction.STOP, project=self.name[:40] or None,
                         target=f"server:{self.user.name}/{self.name}", details=details)


def container_end_reason(state: dict[str, Any]) -> str:
    """Why a container that is not running ended, from its engine ``State``: out of
    memory, a signal, or its exit code, and the engine's error if it gave one."""
    code = int(state.get("ExitCode") or 0)
    if state.get("OOMKilled"):
        reason = f"the server's container was killed for lack of memory (out of memory, exit code {code})"
    elif code > 128 and code - 128 in {s.value for s in signal.Signals}:
        reason = f"the server's container was ended by {signal.Signals(code - 128).name} (exit code {code})"
    else:
        reason = f"the server's container exited with code {code}"
    error = str(state.get("Error") or "").strip()
    return f"{reason}: {error}" if error else reason


async def wait_until_listening(
    ip: str, port: int, *, timeout: float, interval: float, stopped: Callable[[], Awaitable[bool]]
) -> bool:
    """Wait until ``ip:port`` accepts a TCP connection (True), the container has
    ``stopped`` (False, checked about once a second) or ``timeout`` passes (False)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    next_stop_check = loop.time() + 1.0
    while loop.time() < deadline:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout=1.0)
        except (OSError, asyncio.TimeoutError):
            if loop.time() >= next_stop_check:
                if await stopped():
                    return False
                next_stop_check = loop.time() + 1.0
            await asyncio.sleep(interval)
            continue
        writer.close()
        return True
    return False


def render_options_form(projects: list[tuple[str, str]], selected: str = "") -> str:
    """The spawn form: a choice among ``projects`` ((slug, title) pairs), or a note that
    there is none."""
    if not projects:
        return ("<p>You have no active project: a server opens only for an active project "
                "you are a member of. Ask the project's PI or an admin.</p>")
    options = "".join(
        f'<option value="{html.escape(slug)}"{" selected" if slug == selected else ""}>'
        f"{html.escape(slug)}: {html.escape(title)}</option>"
        for slug, title in projects
    )
    return (
        '<label for="project">Project</label>'
        f'<select class="form-control" name="project" id="project">{options}</select>'
    )
