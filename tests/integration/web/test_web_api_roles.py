"""Every API endpoint x every kind of caller: who is allowed, who is refused, and that
refusals change nothing (including IDs of another team's project)."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient

from tests.integration.web.world import PREFIX

API = PREFIX + "/api"
ANON = None

SOON = (dt.date.today() + dt.timedelta(days=30)).isoformat()
ENCLAVE_USERS = ("t-ada", "t-rob", "t-ria", "t-rita", "t-rudy", "t-eve", "t-mal", "t-ann")


def only(*allowed: str, code: int = 200) -> dict:
    """``allowed`` get ``code``; everyone else signed in gets 403, nobody signed in 401."""
    return {ANON: 401, **{t: code for t in allowed}}


# (method, path, json body, {token: expected status}); signed-in callers not listed get 403.
CASES = [
    ("GET", "/me", None, only(*ENCLAVE_USERS)),
    ("GET", "/projects", None, only(*ENCLAVE_USERS)),
    ("GET", "/projects/asthma", None, only("t-ada", "t-ann", "t-rita", "t-rudy", "t-rob", "t-ria")),
    ("GET", "/projects/no-such", None, only(*ENCLAVE_USERS, code=404)),
    ("GET", "/projects/queue", None, only("t-ada")),
    ("POST", "/projects/asthma/transitions", {"action": "suspend", "reason": "audit"}, only("t-ada")),
    ("POST", "/projects/asthma/members", {"user": "rex"}, only("t-ada", code=201)),
    ("DELETE", "/projects/asthma/members/ria", None, only("t-ada", code=204)),
    ("GET", "/audit/events", None, only("t-ada")),
    ("GET", "/audit/events.csv", None, only("t-ada")),
    ("GET", "/audit/verify", None, only("t-ada")),
    ("GET", "/dashboard", None, only("t-ada")),
    ("GET", "/datasets", None, only(*ENCLAVE_USERS)),
    ("GET", "/datasets/hospital-episodes", None, only(*ENCLAVE_USERS)),
    ("GET", "/datasets/no-such", None, only(*ENCLAVE_USERS, code=404)),
    ("GET", "/grants", None, only("t-ada")),
    ("POST", "/grants", {"project": "diabetes", "dataset": "hospital-episodes", "expires": SOON},
     only("t-ada", code=201)),
    ("POST", "/grants/1/revoke", {"reason": "study ended"}, only("t-ada")),
    ("POST", "/grants/999/revoke", {"reason": "x"}, only("t-ada", code=404)),
    ("GET", "/egress/requests", None, only(*ENCLAVE_USERS)),
    ("GET", "/egress/queue", None, only("t-rita", "t-rudy")),
    ("GET", "/egress/outbox/asthma", None, only("t-rob", "t-ria")),
    ("GET", "/egress/outbox/diabetes", None, only("t-eve")),
    ("POST", "/egress/requests", {"project": "asthma", "title": "t"}, only("t-rob", "t-ria", code=201)),
    ("POST", "/egress/requests", {"project": "diabetes", "title": "t"}, only("t-eve", code=201)),
    ("GET", "/register", None, {t: 200 for t in (ANON, *ENCLAVE_USERS, "t-nick")}),
]
CALLERS = [ANON, "t-ada", "t-rob", "t-ria", "t-rita", "t-rudy", "t-eve", "t-mal", "t-ann", "t-nick"]


def _call(client: TestClient, method: str, path: str, body: dict | None, token: str | None):
    headers = {"Authorization": f"token {token}"} if token else {}
    return client.request(method, API + path, json=body, headers=headers)


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(("method", "path", "body", "expected"), CASES,
                         ids=[f"{m} {p} {i}" for i, (m, p, _, _) in enumerate(CASES)])
def test_api_endpoint_allows_and_refuses_by_role(client: TestClient, method, path, body, expected, caller):
    before = _call(client, "GET", "/audit/verify", None, "t-ada").json()["checked"]
    response = _call(client, method, path, body, caller)
    want = expected.get(caller, 403)
    assert response.status_code == want, response.text
    if want >= 400:
        detail = response.json()["detail"] if response.content else ""
        assert isinstance(detail, str) and "\n" not in detail and "Traceback" not in detail
        # A refused request writes nothing (no audit event, so no change).
        assert _call(client, "GET", "/audit/verify", None, "t-ada").json()["checked"] == before


def test_api_researcher_sees_only_own_projects(client: TestClient):
    slugs = {p["slug"] for p in _call(client, "GET", "/projects", None, "t-rob").json()}
    assert slugs == {"asthma"}
    assert {p["slug"] for p in _call(client, "GET", "/projects", None, "t-ada").json()} >= {"asthma", "diabetes", "copd"}


@pytest.mark.parametrize("path", ["/projects/diabetes", "/projects/copd", "/projects/DIABETES",
                                  "/projects/diabetes%2F..%2Fasthma", "/projects/..%2Fdiabetes"])
def test_api_tampered_project_ids_do_not_cross_projects(client: TestClient, path: str):
    response = _call(client, "GET", path, None, "t-rob")
    assert response.status_code in (403, 404)
    assert "Type 2 diabetes" not in response.text and "COPD" not in response.text


def test_api_member_of_one_project_cannot_change_another(client: TestClient):
    # rob leads asthma; the hub gives him no admin role, so every change to diabetes is refused.
    for method, path, body in [("POST", "/projects/diabetes/transitions", {"action": "close"}),
                               ("POST", "/projects/diabetes/members", {"user": "rob"}),
                               ("DELETE", "/projects/diabetes/members/eve", None)]:
        assert _call(client, method, path, body, "t-rob").status_code == 403
    assert _call(client, "GET", "/projects/diabetes", None, "t-ada").json()["status"] == "active"
    assert _call(client, "GET", "/projects/diabetes", None, "t-ada").json()["members"] == ["eve"]


def test_api_hub_admin_role_without_enclave_admin_changes_nothing(client: TestClient):
    response = _call(client, "POST", "/projects/copd/transitions", {"action": "approve"}, "t-mal")
    assert response.status_code == 403
    assert "needs the admin role" in response.json()["detail"]
    assert _call(client, "GET", "/projects/copd", None, "t-ada").json()["status"] == "proposed"


def test_api_enclave_admin_without_hub_admin_role_is_refused(client: TestClient):
    response = _call(client, "POST", "/projects/copd/transitions", {"action": "approve"}, "t-ann")
    assert response.status_code == 403
    assert "enclave-admin role in the hub" in response.json()["detail"]


def test_api_unknown_or_forged_token_is_401(client: TestClient):
    for header in ("token nope", "bearer t-ada-forged", "token ", "Basic dDphZGE="):
        response = client.get(API + "/me", headers={"Authorization": header})
        assert response.status_code == 401
