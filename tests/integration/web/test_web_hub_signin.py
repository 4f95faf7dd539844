"""Real sign-in through a real JupyterHub: the web app runs as the hub-managed service
``enclave`` (the entry from enclave.web.service), people log in to the hub once and the
app learns who they are through HubOAuth; the hub's roles open the admin console."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.web.world import build_world
from tests.ports import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    if not shutil.which("configurable-http-proxy"):
        pytest.skip("configurable-http-proxy is not installed (npm install -g configurable-http-proxy)")
    root = tmp_path_factory.mktemp("hub")
    settings = build_world(root / "home")
    public, api, proxy, web = free_port(), free_port(), free_port(), free_port()
    config = root / "jupyterhub_config.py"
    config.write_text(textwrap.dedent(f"""
        from enclave.config import Settings
        from enclave.web.service import USER_SCOPES, hub_service, hub_service_role, hub_template_paths
        settings = Settings.from_env()
        env = {{"ENCLAVE_HOME": str(settings.home), "ENCLAVE_DB_URL": settings.db_url,
               "ENCLAVE_POLICIES": str(settings.policies_dir), "ENCLAVE_WEB_PORT": "{web}"}}
        c.JupyterHub.bind_url = "http://127.0.0.1:{public}"
        c.JupyterHub.hub_ip = "127.0.0.1"
        c.JupyterHub.hub_port = {api}
        c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy}"
        c.ConfigurableHTTPProxy.pid_file = r"{root / 'proxy.pid'}"
        c.JupyterHub.db_url = r"sqlite:///{root / 'hub.sqlite'}"
        c.JupyterHub.cookie_secret_file = r"{root / 'cookie_secret'}"
        c.JupyterHub.pid_file = r"{root / 'hub.pid'}"
        c.JupyterHub.authenticator_class = "dummy"
        c.DummyAuthenticator.password = "correct horse"
        c.Authenticator.allow_all = True
        c.JupyterHub.services = [hub_service(settings, env)]
        c.JupyterHub.template_paths = hub_template_paths()
        c.JupyterHub.load_roles = [
            hub_service_role(),
            {{"name": "user", "scopes": ["self", *USER_SCOPES]}},
            {{"name": "enclave-admin", "scopes": [], "users": ["ada"]}},
            {{"name": "enclave-reviewer", "scopes": [], "users": ["rita"]}},
        ]
    """))
    env = {**os.environ, "ENCLAVE_HOME": str(settings.home), "ENCLAVE_DB_URL": settings.db_url,
           "ENCLAVE_POLICIES": str(settings.policies_dir)}
    log = open(root / "hub.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(config)], cwd=root, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{public}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                if httpx.get(f"{base}/services/enclave/register", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("the hub or the enclave service did not start:\n" + (root / "hub.log").read_text()[-3000:])
            time.sleep(0.5)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def sign_in(base: str, name: str) -> httpx.Client:
    client = httpx.Client(base_url=base, follow_redirects=True, timeout=20)
    page = client.get("/hub/login")
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
    done = client.post("/hub/login", data={"username": name, "password": "correct horse", "_xsrf": xsrf},
                       follow_redirects=False)
    assert done.status_code == 302, done.text[-300:]
    return client


def test_hub_signin_opens_the_consoles_by_hub_role(hub: str):
    ada = sign_in(hub, "ada")
    home = ada.get("/hub/home")
    assert 'id="enclave-consoles" class="btn btn-primary btn-sm" href="/services/enclave/"' in home.text
    # No "My Server" or "Add New Server": every server belongs to a project and opens from the consoles.
    assert 'id="start"' not in home.text and "new-server-btn" not in home.text
    assert 'id="no-project-servers"' in home.text
    page = ada.get("/services/enclave/admin")
    assert page.status_code == 200 and "Dashboard" in page.text, page.text[-500:]
    assert page.url.path == "/services/enclave/admin"
    assert "enclave-session" in {c.name for c in ada.cookies.jar}
    # The service's own token may count servers (its role's scopes work in a real hub).
    assert ada.get("/services/enclave/api/dashboard").json()["running_servers"] == 0

    rob = sign_in(hub, "rob")
    mine = rob.get("/services/enclave/projects")
    assert mine.status_code == 200 and "Asthma outcomes in children" in mine.text
    assert rob.get("/services/enclave/admin").status_code == 403
    assert rob.get("/services/enclave/projects/diabetes").status_code == 403


def test_hub_signin_hub_user_unknown_to_the_enclave_is_refused(hub: str):
    nick = sign_in(hub, "nick")
    response = nick.get("/services/enclave/projects")
    assert response.status_code == 403 and "not an enclave user" in response.text


def test_hub_signin_forged_cookie_and_token_are_refused(hub: str):
    client = httpx.Client(base_url=hub, timeout=20)
    client.cookies.set("enclave-session", "forged-token", path="/services/enclave/")
    assert client.get("/services/enclave/api/me").status_code == 401
    assert client.get("/services/enclave/api/me", headers={"Authorization": "token nope"}).status_code == 401
    stale = client.get("/services/enclave/oauth_callback", params={"code": "x", "state": "y"})
    assert stale.status_code == 403


def test_hub_signin_hub_down_is_503_not_a_traceback(world_template, monkeypatch):
    from fastapi.testclient import TestClient

    from enclave.web.app import create_app
    from enclave.web.auth import HubAuthenticator

    # A hub API address where nothing listens: identification fails closed with one line.
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "service-secret")
    monkeypatch.setenv("JUPYTERHUB_CLIENT_ID", "service-enclave")
    monkeypatch.setenv("JUPYTERHUB_API_URL", f"http://127.0.0.1:{free_port()}/hub/api")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_NAME", "enclave")
    client = TestClient(create_app(world_template, HubAuthenticator("/services/enclave")),
                        raise_server_exceptions=False)
    response = client.get("/services/enclave/api/me", headers={"Authorization": "token t"})
    assert response.status_code == 503 and "hub cannot be reached" in response.json()["detail"]
    login = client.get("/services/enclave/projects", follow_redirects=False)
    assert login.status_code == 302 and "/hub/api/oauth2/authorize" in login.headers["location"]
    assert "code_challenge=" in login.headers["location"]


def test_hub_signin_api_accepts_a_real_hub_api_token(hub: str):
    ada = sign_in(hub, "ada")
    ada.get("/hub/token")
    xsrf = ada.cookies.get("_xsrf", path="/hub/") or ada.cookies.get("_xsrf")
    made = ada.post("/hub/api/users/ada/tokens", json={"note": "script", "expires_in": 600},
                    headers={"X-XSRFToken": xsrf, "Referer": f"{hub}/hub/token"})
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    api = httpx.Client(base_url=hub, timeout=20)
    me = api.get("/services/enclave/api/me", headers={"Authorization": f"token {token}"})
    assert me.status_code == 200 and me.json()["user"]["name"] == "ada" and me.json()["admin_console"] is True
    queue = api.get("/services/enclave/api/projects/queue", headers={"Authorization": f"token {token}"})
    assert [p["slug"] for p in queue.json()] == ["copd"]
