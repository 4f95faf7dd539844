"""Pages and security: XSRF, CSP, error pages without tracebacks, no open redirect,
escaping, and cross-project access through page URLs."""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from enclave.config import Settings
from enclave.db.models import AuditEvent
from enclave.db.session import unit_of_work
from enclave.web.app import create_app
from enclave.web.auth import SESSION_COOKIE, safe_next
from tests.integration.web.world import REGISTER_FORM, PREFIX, authenticator
from tests.tampering import drop_immutability


def signed_in(client: TestClient, token: str) -> TestClient:
    client.cookies.set(SESSION_COOKIE, token)
    return client


def xsrf_of(client: TestClient, page: str) -> str:
    html = client.get(PREFIX + page).text
    found = re.search(r'name="_xsrf" value="([0-9a-f]+)"', html)
    assert found, "page has no XSRF field"
    return found.group(1)


def test_pages_carry_csp_and_security_headers(client: TestClient):
    for path in ("/register", "/api/register", "/nope"):
        response = client.get(PREFIX + path)
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"


def test_pages_form_post_without_xsrf_token_is_refused(client: TestClient):
    signed_in(client, "t-ada")
    response = client.post(PREFIX + "/admin/projects/copd/transition", data={"action": "approve"},
                           follow_redirects=False)
    assert response.status_code == 403
    assert "reload the page" in response.text
    assert client.get(PREFIX + "/api/projects/copd", headers={"Authorization": "token t-ada"}).json()["status"] == "proposed"


def test_pages_xsrf_token_of_another_session_is_refused(client: TestClient):
    rob_token = xsrf_of(signed_in(client, "t-rob"), "/apply")
    signed_in(client, "t-ada")
    response = client.post(PREFIX + "/admin/projects/copd/transition",
                           data={"action": "approve", "_xsrf": rob_token}, follow_redirects=False)
    assert response.status_code == 403


def test_pages_cookie_api_call_needs_xsrf_header(client: TestClient):
    signed_in(client, "t-ada")
    body = {"action": "approve"}
    assert client.post(PREFIX + "/api/projects/copd/transitions", json=body).status_code == 403
    token = xsrf_of(client, "/admin/applications")
    ok = client.post(PREFIX + "/api/projects/copd/transitions", json=body, headers={"X-XSRF-Token": token})
    assert ok.status_code == 200 and ok.json()["status"] == "approved"


def test_pages_admin_approves_and_rejects_through_forms(client: TestClient):
    signed_in(client, "t-ada")
    token = xsrf_of(client, "/admin/applications")
    response = client.post(PREFIX + "/admin/projects/copd/transition",
                           data={"action": "reject", "_xsrf": token, "back": "applications"}, follow_redirects=False)
    assert response.status_code == 400 and "needs a reason" in response.text
    response = client.post(PREFIX + "/admin/projects/copd/transition",
                           data={"action": "reject", "reason": "No ethics approval yet", "_xsrf": token,
                                 "back": "applications"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].endswith("/admin/applications?done=reject")
    page = client.get(PREFIX + "/admin/projects/copd").text
    assert "No ethics approval yet" in page and "badge-rejected" in page


def test_pages_researcher_applies_and_admin_sees_the_application(client: TestClient):
    signed_in(client, "t-rob")
    token = xsrf_of(client, "/apply")
    end = (dt.date.today() + dt.timedelta(days=200)).isoformat()
    form = {"_xsrf": token, "slug": "sepsis-early", "title": "<script>alert(1)</script> Sepsis",
            "purpose": "Earlier sepsis recognition.", "lay_summary": "Spotting sepsis sooner.",
            "lawful_basis": "6(1)(e)", "organisation": "Royal Infirmary", "team": "ria\n",
            "datasets_wanted": "hes-apc, ons-deaths", "end_date": end, **REGISTER_FORM}
    response = client.post(PREFIX + "/apply", data=form, follow_redirects=False)
    assert response.status_code == 303, response.text
    signed_in(client, "t-ada")
    queue = client.get(PREFIX + "/admin/applications").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Sepsis" in queue and "<script>alert" not in queue
    assert "hes-apc, ons-deaths" in queue and "ria" in queue


def test_pages_other_teams_project_is_refused(client: TestClient):
    signed_in(client, "t-rob")
    response = client.get(PREFIX + "/projects/diabetes")
    assert response.status_code == 403
    assert "Type 2 diabetes" not in response.text and "not a member" in response.text
    assert client.get(PREFIX + "/admin").status_code == 403
    assert client.get(PREFIX + "/admin/projects/diabetes").status_code == 403


def test_pages_researcher_sees_notebook_link_only_for_own_active_projects(client: TestClient):
    page = signed_in(client, "t-rob").get(PREFIX + "/projects").text
    assert "/hub/spawn/rob/asthma" in page
    assert "diabetes" not in page


def test_pages_unknown_page_is_a_clear_404(client: TestClient):
    response = signed_in(client, "t-rob").get(PREFIX + "/no/such/page")
    assert response.status_code == 404 and "no such page" in response.text


def test_pages_unexpected_error_shows_no_traceback(world: Settings):
    class Broken:
        cookie_secure = False

        async def identify(self, token, via):
            raise RuntimeError("secret internals /etc/enclave")

        def xsrf_secret(self):
            return b"x"

    client = TestClient(create_app(world, Broken()), raise_server_exceptions=False)
    for path in ("/projects", "/api/me"):
        response = client.get(PREFIX + path, headers={"Authorization": "token x"})
        assert response.status_code == 500
        assert "Traceback" not in response.text and "secret internals" not in response.text
        assert "something went wrong" in response.text


def test_pages_missing_database_is_503_with_what_to_do(tmp_path, world: Settings):
    broken = Settings(home=tmp_path / "empty", db_url=f"sqlite:///{tmp_path / 'empty' / 'enclave.db'}",
                      policies_dir=world.policies_dir)
    response = TestClient(create_app(broken, authenticator())).get(PREFIX + "/api/register")
    assert response.status_code == 503 and "enclave db upgrade" in response.json()["detail"]


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/hub/../x", "/services/enclave\\@evil",
                                    "javascript:alert(1)", None, ""])
def test_auth_next_url_never_leaves_the_service(target):
    assert safe_next("/services/enclave", target) == "/services/enclave/"


def test_pages_verify_chain_reports_tampering(client: TestClient, world: Settings):
    signed_in(client, "t-ada")
    token = xsrf_of(client, "/admin/audit")
    assert "The audit log is intact" in client.post(PREFIX + "/admin/audit/verify", data={"_xsrf": token}).text
    with unit_of_work(world) as session:
        drop_immutability(session)  # the database refuses the edit; its owner can drop that first
        session.execute(update(AuditEvent).where(AuditEvent.seq == 3).values(actor="someone-else"))
    page = client.post(PREFIX + "/admin/audit/verify", data={"_xsrf": token}).text
    assert "tampered with" in page and "event #3" in page


def test_pages_audit_filters_and_csv_export(client: TestClient):
    signed_in(client, "t-ada")
    page = client.get(PREFIX + "/admin/audit", params={"project": "copd"}).text
    assert "project.application" in page and "project:asthma" not in page
    csv_text = client.get(PREFIX + "/admin/audit.csv", params={"user": "eve"}).text
    lines = csv_text.strip().splitlines()
    assert lines[0].startswith("seq,at,actor,action")
    assert len(lines) == 3 and all(",eve," in line for line in lines[1:])
    assert client.get(PREFIX + "/admin/audit", params={"since": "yesterday"}).status_code == 400
    assert client.get(PREFIX + "/admin/audit", params={"since": "", "until": "", "project": ""}).status_code == 200


def test_api_csv_export_neutralises_formulas(client: TestClient):
    signed_in(client, "t-rob")
    token = xsrf_of(client, "/apply")
    client.post(PREFIX + "/apply", data={"_xsrf": token, "slug": "formula-test", "title": "=HYPERLINK(\"x\")",
                                         "purpose": "P", "lay_summary": "L", "lawful_basis": "B",
                                         "end_date": "2099-01-01", **REGISTER_FORM})
    csv_text = client.get(PREFIX + "/api/audit/events.csv", headers={"Authorization": "token t-ada"}).text
    assert "=HYPERLINK" in csv_text  # inside the JSON details cell, which starts with "{"
    assert not any(cell.startswith("=") for line in csv_text.splitlines() for cell in line.split(","))


def test_pages_admin_grants_and_revokes_through_forms(client: TestClient, world: Settings):
    signed_in(client, "t-ada")
    page = client.get(PREFIX + "/admin/datasets/hospital-episodes")
    assert page.status_code == 200 and "nhs_number" in page.text and "direct" in page.text
    token = xsrf_of(client, "/admin/datasets/hospital-episodes")
    until = (dt.date.today() + dt.timedelta(days=60)).isoformat()
    response = client.post(PREFIX + "/admin/datasets/hospital-episodes/grants",
                           data={"_xsrf": token, "project": "diabetes", "version": "1", "expires": until,
                                 "columns": ["admissions.admission_id", "admissions.specialty"]},
                           follow_redirects=False)
    assert response.status_code == 303, response.text
    grants = client.get(PREFIX + "/api/grants", headers={"Authorization": "token t-ada"}).json()
    new = next(g for g in grants if g["project"] == "diabetes")
    assert new["live"] and new["expires_at"].startswith((dt.date.today() + dt.timedelta(days=61)).isoformat())
    eve = client.get(PREFIX + "/api/projects/diabetes", headers={"Authorization": "token t-eve"}).json()
    assert [g["dataset"] for g in eve["grants"] if g["live"]] == ["hospital-episodes"]
    response = client.post(PREFIX + f"/admin/grants/{new['id']}/revoke", data={"_xsrf": token, "reason": "ended", "confirm": "yes"},
                           follow_redirects=False)
    assert response.status_code == 303
    eve = client.get(PREFIX + "/api/projects/diabetes", headers={"Authorization": "token t-eve"}).json()
    assert not any(g["live"] for g in eve["grants"])
    # A researcher can neither grant nor revoke, whatever ids they send.
    signed_in(client, "t-rob")
    rob_token = xsrf_of(client, "/apply")
    assert client.post(PREFIX + "/admin/grants/1/revoke", data={"_xsrf": rob_token}).status_code == 403


PAGES = {
    # path: callers allowed (200); every other signed-in caller gets 403 (or 404 where stated)
    "/": {"t-ada", "t-rob", "t-rita", "t-eve", "t-mal"},
    "/projects": {"t-ada", "t-rob", "t-rita", "t-eve", "t-mal"},
    "/projects/asthma": {"t-ada", "t-rob", "t-rita"},
    "/apply": {"t-ada", "t-rob", "t-rita", "t-eve", "t-mal"},
    "/egress": {"t-ada", "t-rob", "t-rita", "t-eve", "t-mal"},
    "/review": {"t-rita"},
    "/admin": {"t-ada"},
    "/admin/applications": {"t-ada"},
    "/admin/projects": {"t-ada"},
    "/admin/projects/diabetes": {"t-ada"},
    "/admin/datasets": {"t-ada"},
    "/admin/datasets/hospital-episodes": {"t-ada"},
    "/admin/audit": {"t-ada"},
    "/admin/audit.csv": {"t-ada"},
    "/register": {"t-ada", "t-rob", "t-rita", "t-eve", "t-mal", "t-nick"},
}


@pytest.mark.parametrize("caller", ["t-ada", "t-rob", "t-rita", "t-eve", "t-mal", "t-nick"])
def test_pages_every_page_allows_and_refuses_by_role(client: TestClient, caller: str):
    signed_in(client, caller)
    for path, allowed in PAGES.items():
        response = client.get(PREFIX + path, follow_redirects=False)
        want = 200 if caller in allowed else 403
        assert response.status_code == want, (path, response.status_code)
        if want == 403:
            assert '<p class="error-message">' in response.text and "Traceback" not in response.text


def test_pages_signed_out_are_sent_to_sign_in(client: TestClient):
    for path in PAGES:
        if path == "/register":
            continue
        response = client.get(PREFIX + path, follow_redirects=False)
        assert response.status_code == 401  # the test authenticator's stand-in for the hub redirect
