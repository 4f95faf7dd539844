"""Sign-in through the hub's real /hub/login form (password + TOTP)."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy import select

from enclave.db.models import AuditEvent
from enclave.db.session import unit_of_work
from tests.docker.hub.conftest import PASSWORD


def login(hub, username: str, password: str, otp: str | None) -> httpx.Response:
    with httpx.Client(base_url=hub.url, trust_env=False, timeout=60) as browser:
        page = browser.get("/hub/login")
        assert page.status_code == 200
        assert 'name="otp"' in page.text  # the form asks for the second factor
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
        form = {"username": username, "password": password, "_xsrf": xsrf}
        if otp is not None:
            form["otp"] = otp
        return browser.post("/hub/login", data=form, follow_redirects=False)


def test_hub_login_accepts_password_and_code_and_mirrors_roles(hub):
    response = login(hub, "alice", PASSWORD, hub.code("alice"))
    assert response.status_code == 302, response.text[:500]
    assert "jupyterhub-session-id" in response.headers.get("set-cookie", "")
    roles = set(hub.api.get("users/alice").json()["roles"])
    assert {"user", "enclave-researcher"} <= roles and "admin" not in roles


def test_hub_login_leads_to_the_consoles_not_a_default_server(hub):
    # The hub's own default (a spawn page for an unnamed server) offers a start the
    # enclave always refuses: a server belongs to one project, chosen in the consoles.
    response = login(hub, "alice", PASSWORD, hub.code("alice"))
    assert response.status_code == 302 and response.headers["location"] == "/services/enclave/"


@pytest.mark.parametrize(
    ("password", "otp", "says"),
    [
        ("not the password!", "right", "wrong user name, password or authenticator code"),
        (PASSWORD, None, "wrong user name, password or authenticator code"),
        (PASSWORD, "wrong", "wrong user name, password or authenticator code"),
    ],
)
def test_hub_login_refuses_wrong_password_or_code(hub, password, otp, says):
    code = hub.code("bob")
    if otp == "right":
        otp = code
    elif otp == "wrong":
        otp = f"{(int(code) + 1) % 1_000_000:06d}"
    response = login(hub, "bob", password, otp)
    assert response.status_code == 403
    assert says in response.text
    assert "jupyterhub-session-id" not in response.headers.get("set-cookie", "")


def test_hub_login_refuses_a_user_without_an_authenticator_app(hub):
    response = login(hub, "nora", PASSWORD, "123456")
    assert response.status_code == 403 and "ask an admin to enrol you" in response.text


def test_hub_login_attempts_are_audited_without_secrets(hub):
    login(hub, "bob", "a wrong secret pw", "000000")
    with unit_of_work(hub.settings) as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action.startswith("hub.login"))).all()
    assert {"hub.login", "hub.login_failed"} <= {e.action for e in events}
    assert all("a wrong secret pw" not in str(e.details) for e in events)


def test_hub_login_refuses_a_replayed_code_and_audits_it(hub):
    code = hub.code("alice")
    assert login(hub, "alice", PASSWORD, code).status_code == 302
    replay = login(hub, "alice", PASSWORD, code)
    assert replay.status_code == 403 and "wrong user name, password or authenticator code" in replay.text
    assert "jupyterhub-session-id" not in replay.headers.get("set-cookie", "")
    with unit_of_work(hub.settings) as session:
        last = session.scalars(select(AuditEvent).where(AuditEvent.target == "user:alice")
                               .order_by(AuditEvent.seq.desc())).first()
    assert last.action == "hub.login_failed" and last.details["reason"] == "code already used"
