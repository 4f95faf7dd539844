"""The researcher console starts and stops servers with the signed-in person's own sign-in
token (hub scopes ``read:servers!user`` and ``servers!user``). Through the real hub and the
real web service, one person tries to start, stop and read another person's server: with
the console's start and stop endpoints (forged form fields, another person's server name,
path tricks, the sign-in token as a header), with that token straight against the hub's
REST API, and with the web service's own token; and a member of one project tries to
start a server for another. Controls show each token does work for what it may do.

Everybody here is made by this module (carol and dave share project kappa; sigma is
dave's alone), so the session's other hub tests keep their world.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from enclave.db.models import AuditEvent
from enclave.db.session import unit_of_work
from enclave.hub.signin import enrol_totp, set_password
from enclave.users import get_user
from enclave.web.auth import SESSION_COOKIE
from enclave.web.servers import ServerEvent
from tests.conftest import Factory
from tests.docker.hub.conftest import PASSWORD
from tests.docker.hub.test_hub_admin_access import contents, hub_api, signed_in

CONSOLE = "/services/enclave"
MARKER = "marker-kappa.txt"  # in kappa's workspace: what a listing through dave's server would show
SERVER_WAIT = 240  # seconds: a server start on a busy 2-core machine
# What a forged form may name instead of the signed-in person's own server.
FORGED = {"user": "dave", "username": "dave", "owner": "dave", "name": "dave", "server": "sigma",
          "server_name": "sigma", "project": "sigma", "slug": "sigma", "back": "projects"}
# Slugs that try to reach dave's servers by the path the console builds for the hub.
PATH_TRICKS = ["..%2F..%2Fdave%2Fservers%2Fkappa", "kappa%2F..%2F..%2Fdave%2Fservers%2Fkappa",
               "dave%2Fservers%2Fkappa", "..", "dave", "kappa%00dave", "KAPPA"]


@dataclass
class Console:
    """One person signed in to the hub and, through its OAuth, to the web service."""

    name: str
    browser: httpx.Client
    token: str  # the sign-in token the console holds for this person (its session cookie)

    def xsrf(self) -> str:
        page = self.browser.get(f"{CONSOLE}/projects")
        assert page.status_code == 200, page.text[-400:]
        return re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)

    def post(self, path: str, data: dict[str, str] | None = None) -> httpx.Response:
        """A console form as the browser sends it (cookie and the session's XSRF token)."""
        return self.browser.post(f"{CONSOLE}{path}", data={**(data or {}), "_xsrf": self.xsrf()},
                                 follow_redirects=False)


def _console(hub, name: str) -> Console:  # type: ignore[no-untyped-def]
    browser = signed_in(hub, name)
    page = browser.get(f"{CONSOLE}/projects", follow_redirects=True)  # the service's OAuth round trip
    assert page.status_code == 200 and page.url.path == f"{CONSOLE}/projects", page.text[-400:]
    token = next(c.value for c in browser.cookies.jar if c.name == SESSION_COOKIE)
    return Console(name, browser, token)


def _server(hub, user: str, server: str) -> dict | None:  # type: ignore[no-untyped-def]
    model = hub.api.get(f"users/{user}")
    assert model.status_code == 200, model.text
    return (model.json().get("servers") or {}).get(server)


def _running(hub, user: str, server: str) -> bool:  # type: ignore[no-untyped-def]
    found = _server(hub, user, server)
    return bool(found and found.get("ready"))


def _gone(hub, user: str, server: str, timeout: float = SERVER_WAIT) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _server(hub, user, server)
        if not found or not (found.get("ready") or found.get("pending")):
            return True
        time.sleep(1)
    return False


def _start_from_console(hub, person: Console, slug: str, data: dict[str, str] | None = None) -> None:  # type: ignore[no-untyped-def]
    """Start the person's server from the console (retrying while the hub's meter service is
    still starting on a busy machine), then wait until the hub says it is ready."""
    deadline = time.monotonic() + 120
    while (answer := person.post(f"/projects/{slug}/server/start", data)).status_code != 303:
        assert time.monotonic() < deadline, f"{answer.status_code}: {answer.text[-600:]}"
        time.sleep(3)
    hub.wait_ready(person.name, slug, timeout=SERVER_WAIT)


def _requests(hub) -> list[tuple[str, str, str | None]]:  # type: ignore[no-untyped-def]
    """Every start and stop the console recorded: (actor, action, target)."""
    with unit_of_work(hub.settings) as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.action.in_(list(ServerEvent)))
                               .order_by(AuditEvent.seq)).all()
        return [(e.actor, e.action, e.target) for e in rows]


def _service_token(hub) -> str:  # type: ignore[no-untyped-def]
    """The web service's own hub token, as the service process holds it: the environment of
    the process listening on this hub's web port (the hub gave it when it started it)."""
    port = int(hub.env["ENCLAVE_WEB_PORT"])
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # LISTEN
                inodes.add(fields[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            sockets = {Path(fd).readlink().name for fd in (proc / "fd").iterdir()}
        except OSError:
            continue
        if {f"socket:[{inode}]" for inode in inodes} & sockets:
            environ = dict(item.split("=", 1) for item in
                           (proc / "environ").read_text().split("\0") if "=" in item)
            return environ["JUPYTERHUB_API_TOKEN"]
    raise AssertionError(f"no process listens on the web service's port {port}")


@pytest.fixture(scope="module")
def people(hub) -> Iterator[dict[str, Console]]:  # type: ignore[no-untyped-def]
    """carol and dave (both in kappa; sigma is dave's alone), signed in to the console, with
    dave's kappa server started by dave from his console (the control: it does start)."""
    with unit_of_work(hub.settings) as session:
        f = Factory(session, hub.settings)
        f._admin = get_user(session, "root-admin")
        f.project("kappa", "carol", "active", members=("dave",))
        f.project("sigma", "dave", "active")
        for name in ("carol", "dave"):
            set_password(session, f.admin, name, PASSWORD)
            hub.totp[name] = enrol_totp(session, f.admin, name).secret
    (hub.settings.workspaces_dir / "kappa").mkdir(parents=True, exist_ok=True)
    (hub.settings.workspaces_dir / "kappa" / MARKER).write_text("kappa")
    consoles = {name: _console(hub, name) for name in ("carol", "dave")}
    _start_from_console(hub, consoles["dave"], "kappa")
    yield consoles
    for user, server in (("dave", "kappa"), ("carol", "kappa"), ("carol", "sigma"), ("dave", "sigma")):
        hub.stop(user, server)
    for console in consoles.values():
        console.browser.close()


def test_hub_console_forged_fields_start_and_stop_only_the_signed_in_persons_server(hub, people):
    carol, dave = people["carol"], people["dave"]
    assert _running(hub, "dave", "kappa")
    # carol's start names dave and sigma in every field a handler might read: her own kappa starts.
    _start_from_console(hub, carol, "kappa", FORGED)
    assert _running(hub, "carol", "kappa") and _running(hub, "dave", "kappa")
    assert not _running(hub, "dave", "sigma") and _server(hub, "carol", "sigma") is None
    # Her stop with the same fields, while dave's server of the same name runs: hers stops.
    stopped = carol.post("/projects/kappa/server/stop", FORGED)
    assert stopped.status_code == 303, stopped.text[-400:]
    assert _gone(hub, "carol", "kappa")
    assert _running(hub, "dave", "kappa")
    # The same again with the query string and the sign-in token as a header (no cookie).
    with httpx.Client(base_url=hub.url, trust_env=False, timeout=60) as bare:
        by_header = bare.post(f"{CONSOLE}/projects/kappa/server/stop", params=FORGED, data=FORGED,
                              headers={"Authorization": f"token {carol.token}"})
    assert by_header.status_code == 303, by_header.text[-400:]
    assert _running(hub, "dave", "kappa")
    kappa = [(actor, target) for actor, _, target in _requests(hub) if target and target.endswith("/kappa")]
    assert set(kappa) == {("dave", "server:dave/kappa"), ("carol", "server:carol/kappa")}
    assert dave.browser.get(f"{CONSOLE}/projects").status_code == 200  # dave's session is untouched


def test_hub_console_member_of_one_project_cannot_start_or_stop_another_projects_server(hub, people):
    carol = people["carol"]
    before = _requests(hub)
    for action in ("start", "stop"):
        refused = carol.post(f"/projects/sigma/server/{action}", {"user": "dave", "back": "projects"})
        assert refused.status_code == 403 and "carol is not a member of a project named" in refused.text, refused.text
        assert "Traceback" not in refused.text
        with httpx.Client(base_url=hub.url, trust_env=False, timeout=60) as bare:
            by_header = bare.post(f"{CONSOLE}/projects/sigma/server/{action}",
                                  headers={"Authorization": f"token {carol.token}"})
        assert by_header.status_code == 403, by_header.text
    for slug in PATH_TRICKS:
        for action in ("start", "stop"):
            tried = carol.browser.post(f"{CONSOLE}/projects/{slug}/server/{action}",
                                       data={"_xsrf": carol.xsrf()}, follow_redirects=False)
            assert tried.status_code in (403, 404), (slug, action, tried.status_code, tried.text[-300:])
    # Her cookie without the session's XSRF token (a form on another site) starts nothing either.
    forged_site = carol.browser.post(f"{CONSOLE}/projects/kappa/server/start", data=FORGED, follow_redirects=False)
    assert forged_site.status_code == 403, forged_site.text[-300:]
    assert _requests(hub) == before  # nothing was asked of the hub, so nothing recorded
    assert not _running(hub, "carol", "kappa")
    assert _server(hub, "carol", "sigma") is None and not _running(hub, "dave", "sigma")
    assert _running(hub, "dave", "kappa")


def test_hub_console_shows_only_the_signed_in_persons_own_server(hub, people):
    carol = people["carol"]
    assert _running(hub, "dave", "kappa") and not _running(hub, "carol", "kappa")
    mine = carol.browser.get(f"{CONSOLE}/projects")
    page = carol.browser.get(f"{CONSOLE}/projects/kappa")
    for answer in (mine, page):
        assert answer.status_code == 200
        # dave's kappa runs, carol's does not: her page says stopped and offers only her start.
        assert 'data-server-state="stopped"' in answer.text and 'data-server-state="running"' not in answer.text
        assert "/user/dave/" not in answer.text and "/spawn/dave/" not in answer.text
    # Nor does any other page or API of hers report servers: the count is the admins' dashboard.
    assert carol.browser.get(f"{CONSOLE}/api/dashboard").status_code == 403
    other = carol.browser.get(f"{CONSOLE}/projects/sigma")
    assert other.status_code == 403 and "/user/dave/" not in other.text


def test_hub_console_sign_in_token_reaches_only_its_owner_in_the_hub_api(hub, people):
    carol = people["carol"]
    with hub_api(hub, carol.token) as api:
        mine = api.get("users/carol")
        # Control: the token works, and reads its owner's servers (the model has them only with read:servers).
        assert mine.status_code == 200 and mine.json()["name"] == "carol" and "servers" in mine.json(), mine.text
        assert api.get("users/dave").status_code in (403, 404)
        assert api.get("users").status_code in (403, 404)
        assert api.post("users/dave/servers/kappa", json={}).status_code in (403, 404)
        assert api.post("users/dave/servers/sigma", json={}).status_code in (403, 404)
        assert api.delete("users/dave/servers/kappa").status_code in (403, 404)
        assert api.delete("users/dave", params={"remove": "true"}).status_code in (403, 404)
        # No broader token can be made from it, for herself or for dave.
        assert api.post("users/carol/tokens", json={"note": "more"}).status_code in (403, 404)
        assert api.post("users/dave/tokens", json={"note": "more"}).status_code in (403, 404)
        # Her own server for a project she is not in, or her kappa server asked to be sigma's.
        sigma = api.post("users/carol/servers/sigma", json={})
        assert sigma.status_code >= 400 and "not a member of a project named 'sigma'" in sigma.text, sigma.text
        renamed = api.post("users/carol/servers/kappa", json={"project": "sigma"})
        assert renamed.status_code == 403 and "not sigma" in renamed.text, renamed.text
    with httpx.Client(base_url=hub.url, trust_env=False, timeout=60) as bare:
        opened = contents(bare, "dave", "kappa", token=carol.token)
    assert opened.status_code in (401, 403, 404) and MARKER not in opened.text
    assert _running(hub, "dave", "kappa")
    assert not _running(hub, "carol", "sigma") and not _running(hub, "carol", "kappa")


def test_hub_console_service_token_cannot_start_stop_or_open_anybodys_server(hub, people):
    with hub_api(hub, _service_token(hub)) as api:
        seen = api.get("users/dave")
        assert seen.status_code == 200 and seen.json()["servers"]["kappa"]["ready"]  # control: it reads states
        for user, server in (("dave", "kappa"), ("dave", "sigma"), ("carol", "kappa")):
            assert api.post(f"users/{user}/servers/{server}", json={}).status_code in (403, 404)
            assert api.delete(f"users/{user}/servers/{server}").status_code in (403, 404)
        assert api.post("users/dave/tokens", json={"note": "more"}).status_code in (403, 404)
        token = api.headers["Authorization"].split(" ", 1)[1]
    with httpx.Client(base_url=hub.url, trust_env=False, timeout=60) as bare:
        opened = contents(bare, "dave", "kappa", token=token)
    assert opened.status_code in (401, 403, 404) and MARKER not in opened.text
    assert _running(hub, "dave", "kappa") and not _running(hub, "carol", "kappa")
