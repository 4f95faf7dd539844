"""In Chromium: two reviewers and a releaser move a request through its whole life, with a
return for changes that the researcher reads and answers, a confirmed release, the inbox
and its badge, and a researcher withdrawing a request that is in review."""

from __future__ import annotations

import re

import pytest

from tests.browser.test_web_consoles import PREFIX, shot

pytestmark = pytest.mark.browser


def _start_request(page, server: str, title: str) -> int:  # type: ignore[no-untyped-def]
    page.goto(server + PREFIX + "/egress")
    page.get_by_label("Title").fill(title)
    page.get_by_role("button", name="Start a request").click()
    page.get_by_label("outbox/notes.txt").check()
    page.get_by_label("Group").fill("notes")
    page.get_by_label("Context: what the files show, and for which population").fill("Method notes, no figures")
    page.get_by_label("Disclosure controls applied").fill("None needed: text only")
    page.get_by_role("button", name="Add selected files").click()
    page.get_by_role("button", name="Submit for review").click()
    assert page.locator(".page-head .badge").inner_text().lower() == "in review"
    return int(page.url.split("/egress/")[1].split("?")[0])


def _vote(page, server: str, rid: int, title: str, decision: str, comment: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(server + PREFIX + "/review")
    page.locator("#to-review").get_by_role("link", name=title).click()
    page.get_by_role("link", name="notes.txt").click()
    page.get_by_label("Comment (required to request changes, to approve a failed file or reject a passed one)").fill(comment)
    page.get_by_role("button", name=decision).click()
    page.wait_for_url(re.compile(rf".*/review/{rid}\?done=voted"))


def _badge(page) -> str:  # type: ignore[no-untyped-def]
    badge = page.locator("[data-inbox-count]")
    return badge.inner_text() if badge.count() else "0"


def test_browser_two_reviewers_return_then_approve_and_a_releaser_releases(as_user, server):
    title = "Method notes for the paper"
    rob = as_user("t-rob")
    rid = _start_request(rob, server, title)
    assert "independent reviewers (0 of 2" in rob.locator("[data-waiting-on]").inner_text()

    rita, rudy = as_user("t-rita"), as_user("t-rudy")
    rita.goto(server + PREFIX + "/review")
    assert _badge(rita) == "1"
    _vote(rita, server, rid, title, "Request changes", "Say which years the notes cover.")
    _vote(rudy, server, rid, title, "Request changes", "Name the data source.")

    # The return reaches rob: a badge, an inbox entry, and the comments on the request page.
    rob.goto(server + PREFIX + "/egress")
    assert _badge(rob) == "1"
    rob.get_by_role("link", name=re.compile(r"^Inbox")).click()
    assert rob.locator('[data-count="changes_requested"] b').inner_text() == "1"
    rob.locator("#changes_requested").get_by_role("link", name=title).click()
    returned = rob.locator("#returned")
    assert "Say which years the notes cover." in returned.inner_text()
    assert "Name the data source." in returned.inner_text()
    shot(rob, "researcher-egress-returned")
    rob.get_by_label("Reply to the reviewers' comments on this file").fill("Years 2020-2024, source HES APC: added.")
    rob.get_by_role("button", name="Send reply").click()
    rob.get_by_role("button", name="Resubmit for review").click()
    assert rob.locator(".page-head .badge").inner_text().lower() == "in review"

    _vote(rita, server, rid, title, "Approve", "Years and source given; text only.")
    _vote(rudy, server, rid, title, "Approve", "Fine.")
    assert rudy.locator(".page-head .badge").inner_text().lower() == "approved"

    # Approved: it leaves the review queue and waits in the release queue, saying on whom.
    rita.goto(server + PREFIX + "/review")
    assert rita.locator("#to-review").get_by_role("link", name=title).count() == 0
    waiting = rita.locator("#to-release tr", has_text=title)
    assert "a releaser" in waiting.inner_text()
    shot(rita, "reviewer-release-queue")

    # An admin outside the project releases it from the inbox, after a confirmation step.
    ada = as_user("t-ada")
    ada.goto(server + PREFIX + "/inbox")
    assert ada.locator('[data-count="waiting_release"] b').inner_text() == "1"
    ada.locator("#waiting_release").get_by_role("link", name=title).click()
    ada.get_by_role("link", name="Release…").click()
    assert ada.get_by_text("A release cannot be undone").is_visible()
    shot(ada, "egress-confirm-release")
    ada.get_by_role("button", name="Release for good").click()
    assert ada.get_by_role("status").inner_text() == "The request was released."
    assert ada.locator('[data-count="waiting_release"] b').inner_text() == "0"

    rob.goto(server + PREFIX + "/inbox")
    assert rob.locator('[data-count="released"] b').inner_text() == "1"
    rob.locator("#released").get_by_role("link", name=title).click()
    assert rob.locator(".page-head .badge").inner_text().lower() == "released"
    assert rob.get_by_role("link", name="Download released files and release record").is_visible()


def test_browser_researcher_withdraws_a_request_in_review(as_user, server):
    title = "Notes sent too early"
    rob = as_user("t-rob")
    rid = _start_request(rob, server, title)
    rob.get_by_role("link", name="Withdraw request…").click()
    assert rob.get_by_text("A withdrawn request is final").is_visible()
    rob.get_by_role("link", name="Cancel").click()  # nothing happened
    assert rob.locator(".page-head .badge").inner_text().lower() == "in review"
    rob.get_by_role("link", name="Withdraw request…").click()
    rob.get_by_role("button", name="Withdraw for good").click()
    assert rob.get_by_role("status").inner_text() == "The request was withdrawn."
    assert rob.locator(".page-head .badge").inner_text().lower() == "withdrawn"
    rita = as_user("t-rita")
    rita.goto(server + PREFIX + "/review")
    assert rita.locator("#to-review").get_by_role("link", name=title).count() == 0
    assert rita.get_by_text(f"#{rid}").count() == 0
    assert as_user.console_errors == []
