"""The request's life in the web: nothing falls out of the queues, returns carry the
reviewers' comments to the researcher, irreversible steps are confirmed, and the inbox
(page, top-bar badge and API) counts what waits on each person."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from tests.integration.web.jobs_steps import signed_in, xsrf_of
from tests.integration.web.world import PREFIX

API = PREFIX + "/api/egress"


def h(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


@pytest.fixture
def in_review(client: TestClient) -> int:
    """rob's request of a plain text file: in review, waiting on two reviewers."""
    rid = client.post(API + "/requests", headers=h("t-rob"), json={"project": "asthma", "title": "Notes"}).json()["id"]
    added = client.post(API + f"/requests/{rid}/files", headers=h("t-rob"),
                        json={"paths": ["notes.txt"], "group": "g", "context": "Method notes", "controls": "none"})
    assert added.status_code == 200, added.text
    submitted = client.post(API + f"/requests/{rid}/submit", headers=h("t-rob"), json={})
    assert submitted.json()["status"] == "in_review", submitted.text
    return rid


def _vote(client: TestClient, rid: int, token: str, decision: str, comment: str) -> None:
    response = client.post(API + f"/requests/{rid}/votes", headers=h(token),
                           json={"path": "notes.txt", "decision": decision, "comment": comment})
    assert response.status_code == 200, response.text


def _badge(page: str) -> str | None:
    found = re.search(r'data-inbox-count[^>]*>(\d+)<', page)
    return found.group(1) if found else None


def test_web_approved_request_waits_in_the_release_queue_and_release_is_confirmed(client: TestClient, in_review: int):
    _vote(client, in_review, "t-rita", "approve", "plain notes")
    _vote(client, in_review, "t-rudy", "approve", "plain notes")
    assert client.get(API + "/queue", headers=h("t-rita")).json() == []  # reviewed: out of the review queue
    waiting = client.get(API + "/release-queue", headers=h("t-rudy")).json()
    assert [r["id"] for r in waiting] == [in_review] and waiting[0]["waiting_on"].startswith("a releaser")
    assert client.get(API + "/release-queue", headers=h("t-rob")).status_code == 403
    signed_in(client, "t-rudy")
    queue = client.get(PREFIX + "/review").text
    section = queue.split('id="to-release"', 1)[1]
    assert f'href="{PREFIX}/egress/{in_review}/release"' in section and "Notes" in section
    # A release without the confirmation does nothing.
    token = xsrf_of(client, f"/egress/{in_review}/release")
    refused = client.post(PREFIX + f"/egress/{in_review}/release", data={"_xsrf": token}, follow_redirects=False)
    assert refused.status_code == 400 and "confirm" in refused.text
    assert client.get(API + f"/requests/{in_review}", headers=h("t-rob")).json()["status"] == "approved"
    # An enclave admin whose hub token lacks the admin and reviewer roles is refused (fail closed).
    signed_in(client, "t-ann")
    ann = client.post(PREFIX + f"/egress/{in_review}/release", data={"_xsrf": xsrf_of(client, "/apply"), "confirm": "yes"})
    assert ann.status_code == 403
    signed_in(client, "t-rudy")
    confirm = client.get(PREFIX + f"/egress/{in_review}/release").text
    assert "A release cannot be undone" in confirm and 'name="confirm" value="yes"' in confirm
    done = client.post(PREFIX + f"/egress/{in_review}/release", data={"_xsrf": token, "confirm": "yes"},
                       follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"].endswith("/review?done=released")
    assert client.get(API + f"/requests/{in_review}", headers=h("t-rob")).json()["status"] == "released"
    # Someone inside the project cannot release, confirmed or not (the page offers no button).
    signed_in(client, "t-ria")
    assert "Release for good" not in client.get(PREFIX + f"/egress/{in_review}/release").text


def test_web_return_shows_the_reviewers_comments_and_withdraw_is_confirmed(client: TestClient, in_review: int):
    _vote(client, in_review, "t-rita", "request_changes", "Say which years the notes cover.")
    _vote(client, in_review, "t-rudy", "request_changes", "Name the data source.")
    signed_in(client, "t-rob")
    page = client.get(PREFIX + f"/egress/{in_review}").text
    returned = page.split('id="returned"', 1)[1].split("</section>", 1)[0]
    assert "Say which years the notes cover." in returned and "Name the data source." in returned
    assert "rob (author): change and resubmit, or withdraw" in page
    token = xsrf_of(client, f"/egress/{in_review}")
    refused = client.post(PREFIX + f"/egress/{in_review}/withdraw", data={"_xsrf": token}, follow_redirects=False)
    assert refused.status_code == 400
    assert "Withdraw for good" in client.get(PREFIX + f"/egress/{in_review}/withdraw").text
    done = client.post(PREFIX + f"/egress/{in_review}/withdraw", data={"_xsrf": token, "confirm": "yes"},
                       follow_redirects=False)
    assert done.status_code == 303
    assert client.get(API + f"/requests/{in_review}", headers=h("t-rob")).json()["status"] == "withdrawn"


def test_web_author_withdraws_a_request_in_review(client: TestClient, in_review: int):
    _vote(client, in_review, "t-rita", "approve", "fine")
    signed_in(client, "t-rob")
    assert f'href="{PREFIX}/egress/{in_review}/withdraw"' in client.get(PREFIX + f"/egress/{in_review}").text
    signed_in(client, "t-ria")  # a member, not the author: no withdraw offered, and refused
    assert f'{in_review}/withdraw"' not in client.get(PREFIX + f"/egress/{in_review}").text
    token = xsrf_of(client, "/egress")
    refused = client.post(PREFIX + f"/egress/{in_review}/withdraw", data={"_xsrf": token, "confirm": "yes"})
    assert refused.status_code == 403
    assert client.post(API + f"/requests/{in_review}/withdraw", headers=h("t-rob")).json()["status"] == "withdrawn"
    assert client.get(API + "/queue", headers=h("t-rudy")).json() == []


def test_web_inbox_counts_what_waits_on_each_person(client: TestClient, in_review: int):
    assert client.get(API + "/inbox", headers=h("t-rita")).json()["counts"]["reviews_waiting"] == 1
    signed_in(client, "t-rita")
    assert _badge(client.get(PREFIX + "/egress").text) == "1"
    inbox = client.get(PREFIX + "/inbox").text
    assert re.search(r'data-count="reviews_waiting"><a[^>]*><b>1</b>', inbox)
    assert f'href="{PREFIX}/review/{in_review}"' in inbox
    _vote(client, in_review, "t-rita", "request_changes", "Say which years.")
    _vote(client, in_review, "t-rudy", "approve", "fine")
    rob = client.get(API + "/inbox", headers=h("t-rob")).json()
    # The reviewers disagree: the request waits on a further reviewer, not on rob.
    assert rob["counts"]["changes_requested"] == 0
    detail = client.get(API + f"/requests/{in_review}", headers=h("t-rob")).json()
    assert detail["waiting_on"] == "a further independent reviewer: the reviewers disagree"
    assert client.get(API + "/inbox", headers=h("t-rita")).json()["total"] == 0
    signed_in(client, "t-rob")
    assert _badge(client.get(PREFIX + "/egress").text) is None  # nothing waits on rob: no badge
    assert client.get(PREFIX + "/inbox").status_code == 200


def test_web_inbox_badge_is_one_count_per_page_and_right_after_each_transition(client: TestClient, in_review: int,
                                                                                monkeypatch: pytest.MonkeyPatch):
    from enclave.web import context

    counted: list[str] = []

    def counting(session, actor):  # type: ignore[no-untyped-def]
        counted.append(actor.name)
        return real(session, actor)

    real = context.inbox_total
    monkeypatch.setattr(context, "inbox_total", counting)

    def page(path: str) -> str | None:
        counted.clear()
        response = client.get(PREFIX + path)
        assert response.status_code == 200, response.text[-300:]
        assert len(counted) == (0 if path == "/inbox" else 1), counted  # the inbox page shows its own total
        return _badge(response.text)

    def form(action: str, **fields: str) -> str | None:
        """A form sent as a page sends it (the session's XSRF token); the badge of the page it leads to."""
        token = xsrf_of(client, "/apply")
        counted.clear()
        done = client.post(PREFIX + action, data={"_xsrf": token, **fields})
        assert done.status_code == 200 and len(counted) == 1, (done.status_code, counted, done.text[-300:])
        return _badge(done.text)

    signed_in(client, "t-rita")
    assert page(f"/review/{in_review}") == "1" and page("/inbox") == "1"
    # Her vote on the request's only file: it no longer waits on her.
    assert form(f"/review/{in_review}/vote", path="notes.txt", decision="request_changes", comment="Which years?") is None
    signed_in(client, "t-rob")
    assert page("/egress") is None
    signed_in(client, "t-rudy")
    assert form(f"/review/{in_review}/vote", path="notes.txt", decision="request_changes", comment="Source?") is None
    # Returned to rob for changes: his badge says so on every page, the inbox page too.
    signed_in(client, "t-rob")
    assert page("/egress") == "1" and page("/inbox") == "1" and page(f"/egress/{in_review}") == "1"
    assert form(f"/egress/{in_review}/submit") is None  # resubmitted: nothing waits on him
    signed_in(client, "t-rita")
    assert page("/egress") == "1"  # a new round: it waits on her review again


def test_web_close_and_revoke_ask_for_confirmation_and_close_records_its_reason(client: TestClient, world):
    from enclave.audit import list_events
    from enclave.db.session import unit_of_work

    signed_in(client, "t-ada")
    page = client.get(PREFIX + "/admin/projects/diabetes").text
    assert re.search(r'<input type="checkbox" name="confirm" value="yes" required>', page)
    token = xsrf_of(client, "/admin/projects/diabetes")
    close = {"_xsrf": token, "action": "close"}
    unconfirmed = client.post(PREFIX + "/admin/projects/diabetes/transition", data={**close, "reason": "ended"})
    assert unconfirmed.status_code == 400 and "tick the box to confirm" in unconfirmed.text
    no_reason = client.post(PREFIX + "/admin/projects/diabetes/transition", data={**close, "confirm": "yes"})
    assert no_reason.status_code == 400 and "needs a reason" in no_reason.text
    assert client.get(PREFIX + "/api/projects/diabetes", headers=h("t-ada")).json()["status"] == "active"
    done = client.post(PREFIX + "/admin/projects/diabetes/transition",
                       data={**close, "confirm": "yes", "reason": "The study has ended."}, follow_redirects=False)
    assert done.status_code == 303
    with unit_of_work(world) as s:
        closing = [e for e in list_events(s, project="diabetes") if e.details.get("to") == "closed"]
    assert [e.details["reason"] for e in closing] == ["The study has ended."]
    grants = client.get(PREFIX + "/api/grants", headers=h("t-ada")).json()
    live = next(g for g in grants if g["live"])
    refused = client.post(PREFIX + f"/admin/grants/{live['id']}/revoke", data={"_xsrf": token, "reason": "ended"})
    assert refused.status_code == 400
    assert next(g for g in client.get(PREFIX + "/api/grants", headers=h("t-ada")).json() if g["id"] == live["id"])["live"]
