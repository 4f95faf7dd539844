"""Nobody reaches into another person's server through the real hub: not an enclave admin
(cookie or token, server URL or hub API), not the enforcer. Break-glass opens one server
to one admin only where the policy allows it and with a written reason; it is audited
under the admin. Starts and stops are audited under whoever asked."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import select

from enclave.db.models import AuditEvent
from enclave.db.session import unit_of_work
from tests.docker.hub.conftest import PASSWORD

ADMIN = "root-admin"  # an enclave admin who is a member of no project
REASON = "alice's kernel hangs at every start; she asked for help on ticket 4711"
REFRESH = 6  # seconds: a little over the authenticator's auth_refresh_age


def signed_in(hub, name: str) -> httpx.Client:
    """A browser session of ``name`` after the hub's real login form."""
    browser = httpx.Client(base_url=hub.url, trust_env=False, timeout=60)
    page = browser.get("/hub/login")
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
    done = browser.post("/hub/login", data={"username": name, "password": PASSWORD, "otp": hub.code(name),
                                            "_xsrf": xsrf}, follow_redirects=False)
    assert done.status_code == 302, done.text[:300]
    return browser


def own_token(browser: httpx.Client, name: str) -> str:
    """An API token the signed-in person makes for themselves (all their own permissions)."""
    made = browser.post(f"/hub/api/users/{name}/tokens", json={"note": "test"},
                        headers={"X-XSRFToken": browser.cookies.get("_xsrf", "")})
    assert made.status_code == 201, made.text
    return made.json()["token"]


def hub_api(hub, token: str) -> httpx.Client:
    return httpx.Client(base_url=f"{hub.url}/hub/api/", headers={"Authorization": f"token {token}"},
                        timeout=60, trust_env=False)


def contents(client: httpx.Client, user: str = "alice", server: str = "alpha",
             token: str | None = None) -> httpx.Response:
    """The server's file listing: with a token, or as a browser does (the server's page
    first, whose OAuth round trip through the hub sets the server's own cookie)."""
    if token:
        return client.get(f"/user/{user}/{server}/api/contents/", headers={"Authorization": f"token {token}"})
    page = client.get(f"/user/{user}/{server}/lab", follow_redirects=True)
    if page.status_code == 200 and "/oauth2/authorize" in str(page.url):
        # Another person's server: the hub asks them to confirm, as a browser shows it.
        fields = {"_xsrf": re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1),
                  "scopes": re.findall(r'name="scopes" value="([^"]+)"', page.text)}
        page = client.post(str(page.url), data=fields, follow_redirects=True)
    if page.status_code != 200:
        return page
    return client.get(f"/user/{user}/{server}/api/contents/")


def events(hub, action: str, target: str) -> list[AuditEvent]:
    with unit_of_work(hub.settings) as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.action == action, AuditEvent.target == target)
                               .order_by(AuditEvent.seq)).all()
        session.expunge_all()
        return list(rows)


def break_glass(hub, *args: str, policies: Path | None = None) -> subprocess.CompletedProcess:
    env = {**hub.env, "ENCLAVE_USER": ADMIN}
    if policies is not None:
        env["ENCLAVE_POLICIES"] = str(policies)
    return subprocess.run([sys.executable, "-m", "enclave.cli.main", "hub", "break-glass", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def one_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def alice(hub):
    """alice signed in, with her alpha server started by herself."""
    browser = signed_in(hub, "alice")
    token = own_token(browser, "alice")
    with hub_api(hub, token) as api:
        deadline = time.monotonic() + 60
        # 503 while the egress meter (a hub service) is still starting on a busy machine.
        while (started := api.post("users/alice/servers/alpha", json={})).status_code == 503 \
                and time.monotonic() < deadline:
            time.sleep(2)
        assert started.status_code in (201, 202), started.text
    hub.wait_ready("alice", "alpha")
    yield browser, token
    hub.stop("alice", "alpha")
    browser.close()


@pytest.fixture(scope="module")
def admin(hub, alice):
    browser = signed_in(hub, ADMIN)
    yield browser, own_token(browser, ADMIN)
    browser.close()


def test_hub_spawn_by_the_owner_is_audited_with_the_owner(hub, alice):
    starts = events(hub, "hub.server_start", "server:alice/alpha")
    assert (starts[-1].actor, starts[-1].details["by"]) == ("alice", "user")
    browser, token = alice
    listing = contents(browser)
    assert listing.status_code == 200 and "marker-alpha.txt" in listing.text  # control: the owner gets in


def test_hub_admin_gets_no_hub_admin_role(hub, admin):
    roles = set(hub.api.get(f"users/{ADMIN}").json()["roles"])
    assert "admin" not in roles and {"user", "enclave-admin"} <= roles


def test_hub_admin_cannot_open_a_researchers_server(hub, admin):
    browser, token = admin
    by_cookie = contents(browser)
    assert by_cookie.status_code in (403, 404) and "marker-alpha" not in by_cookie.text
    with httpx.Client(base_url=hub.url, trust_env=False, timeout=60) as bare:
        by_token = contents(bare, token=token)
    assert by_token.status_code in (401, 403, 404) and "marker-alpha" not in by_token.text
    kernels = browser.get("/user/alice/alpha/api/kernels")
    assert kernels.status_code in (401, 403, 404)


def test_hub_admin_cannot_start_or_stop_a_researchers_server(hub, client, admin):
    browser, token = admin
    with hub_api(hub, token) as api:
        for attempt in (api.post("users/bob/servers/beta", json={}), api.delete("users/alice/servers/alpha"),
                        api.post("users/alice/servers/delta", json={})):
            assert attempt.status_code in (403, 404), attempt.text
    page = browser.get("/hub/spawn/bob/beta", follow_redirects=True)
    assert page.status_code in (403, 404)
    assert not client.containers.list(all=True, filters={"name": hub.container_name("bob", "beta")})
    assert hub.api.get("users/alice").json()["servers"]["alpha"]["ready"]


def test_hub_enforcer_may_stop_but_not_open_a_server(hub, alice):
    with httpx.Client(base_url=hub.url, trust_env=False, timeout=60) as bare:
        attempt = contents(bare, token=hub.enforcer_token)
    assert attempt.status_code in (401, 403, 404) and "marker-alpha" not in attempt.text
    with hub_api(hub, hub.enforcer_token) as api:
        assert api.post("users/bob/servers/beta", json={}).status_code in (403, 404)


def test_hub_break_glass_only_when_enabled_with_a_reason_audited_and_ended(hub, admin, tmp_path):
    browser, token = admin
    refused = break_glass(hub, "open", "alice/alpha", "--reason", REASON)
    assert "break-glass is not enabled for tier tier2" in one_line(refused)

    enabled = tmp_path / "policies"
    shutil.copytree(hub.settings.policies_dir, enabled)
    tiers = yaml.safe_load((enabled / "tiers.yaml").read_text())
    tiers["tiers"]["tier2"]["break_glass_minutes"] = 10
    (enabled / "tiers.yaml").write_text(yaml.safe_dump(tiers))
    assert "written reason" in one_line(break_glass(hub, "open", "alice/alpha", "--reason", "because", policies=enabled))
    assert contents(browser).status_code in (403, 404)  # nothing opened by the refusals

    opened = break_glass(hub, "open", "alice/alpha", "--reason", REASON, "--minutes", "5", policies=enabled)
    assert opened.returncode == 0, opened.stderr
    window = int(re.search(r"break-glass (\d+):", opened.stdout).group(1))
    [event] = events(hub, "hub.break_glass_open", "server:alice/alpha")
    assert event.actor == ADMIN and event.details["reason"] == REASON

    time.sleep(REFRESH)  # the admin's roles follow the database at their next request
    inside = contents(browser)
    assert inside.status_code == 200 and "marker-alpha.txt" in inside.text
    roles = set(hub.api.get(f"users/{ADMIN}").json()["roles"])
    assert f"enclave-break-glass-{window}" in roles and "admin" not in roles
    # One server only: starting or stopping it, or another, is still refused.
    with hub_api(hub, token) as api:
        assert api.delete("users/alice/servers/alpha").status_code in (403, 404)
        assert api.post("users/alice/servers/delta", json={}).status_code in (403, 404)

    closed = break_glass(hub, "close", str(window))
    assert closed.returncode == 0, closed.stderr
    assert events(hub, "hub.break_glass_close", "server:alice/alpha")[-1].actor == ADMIN
    time.sleep(REFRESH)
    with hub_api(hub, token) as api:
        api.get("user")  # the admin's next request: the hub drops the window's role
    assert f"enclave-break-glass-{window}" not in set(hub.api.get(f"users/{ADMIN}").json()["roles"])
    fresh = signed_in(hub, ADMIN)
    try:
        again = contents(fresh)
    finally:
        fresh.close()
    assert again.status_code in (403, 404) and "marker-alpha" not in again.text


def test_hub_stop_by_the_owner_is_audited_with_the_owner(hub, alice):
    # Last in this module: alice stops her own server.
    browser, token = alice
    with hub_api(hub, token) as api:
        assert api.delete("users/alice/servers/alpha").status_code in (202, 204)
    deadline = time.monotonic() + 60
    while not events(hub, "hub.server_stop", "server:alice/alpha") and time.monotonic() < deadline:
        time.sleep(0.5)
    stop = events(hub, "hub.server_stop", "server:alice/alpha")[-1]
    assert (stop.actor, stop.details["by"]) == ("alice", "user")
