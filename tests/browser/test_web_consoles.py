"""End to end in Chromium: the consoles as people use them, with screenshots for docs/."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

PREFIX = "/services/enclave"
# Screenshots go to ENCLAVE_SCREENSHOTS (e.g. docs/screenshots to refresh the docs), else to a
# temporary folder, so an ordinary test run leaves the working tree alone.
SHOTS = Path(os.environ.get("ENCLAVE_SCREENSHOTS") or tempfile.mkdtemp(prefix="enclave-shots-"))


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_browser_public_register_needs_no_sign_in(as_user, server):
    page = as_user(None)
    page.goto(server + PREFIX + "/register")
    assert page.get_by_role("heading", name="Transparency register").is_visible()
    assert page.get_by_role("heading", name="Asthma outcomes in children").is_visible()
    assert page.get_by_text("COPD admissions").count() == 0  # proposed: not public
    shot(page, "register")
    assert as_user.console_errors == []  # e.g. no CSP violations


def test_browser_researcher_applies_and_admin_approves(as_user, server):
    rob = as_user("t-rob")
    rob.goto(server + PREFIX + "/projects")
    assert rob.get_by_role("link", name="Start or open notebook server").get_attribute("href") == "/hub/spawn/rob/asthma"
    shot(rob, "researcher-projects")
    rob.get_by_role("link", name="Apply for a new project").click()
    rob.get_by_label("Title").fill("Early warning scores in sepsis")
    rob.get_by_label("Short name").fill("sepsis-news")
    rob.get_by_label("Purpose", exact=True).fill("Test whether early warning scores find sepsis sooner.")
    rob.get_by_label("Lay summary").fill("Can routine bedside checks spot sepsis earlier?")
    rob.get_by_label("Approvals and references").fill("REC 24/AB/0001")
    rob.get_by_label("Public benefit").fill("Fewer deaths from sepsis in hospital.")
    rob.get_by_label("UK GDPR Article 6 basis").select_option("public_task")
    rob.get_by_label("UK GDPR Article 9 condition").select_option("health_or_social_care")
    rob.get_by_label("Common law duty of confidentiality").select_option("section_251")
    rob.get_by_label("Data controller").fill("Royal Infirmary NHS Trust")
    rob.get_by_label("Public contact email").fill("sepsis-study@infirmary.example")
    rob.get_by_label("Organisation").fill("Royal Infirmary")
    rob.get_by_label("Team").fill("ria")
    rob.get_by_label("Datasets wanted").fill("hes-apc\nobservations")
    rob.get_by_label("End date").fill((dt.date.today() + dt.timedelta(days=300)).isoformat())
    shot(rob, "researcher-apply")
    rob.get_by_role("button", name="Submit application").click()
    assert rob.get_by_role("status").inner_text().startswith("Your application was submitted")
    assert rob.get_by_text("proposed", exact=True).first.is_visible()

    ada = as_user("t-ada")
    ada.goto(server + PREFIX + "/admin/applications")
    entry = ada.locator("article", has_text="Early warning scores in sepsis")
    assert entry.get_by_text("hes-apc: not in the catalogue").is_visible()  # flagged for the admin
    assert entry.get_by_text("observations: not in the catalogue").is_visible()
    shot(ada, "admin-applications")
    entry.get_by_role("button", name="Approve").click()
    assert ada.get_by_role("status").inner_text() == "The project was approved."
    assert ada.url.endswith("/admin/projects/sepsis-news?done=approve")  # approval leads on to the project
    ada.get_by_role("button", name="Activate", exact=True).click()
    assert ada.locator(".badge-active").first.is_visible()
    shot(ada, "admin-project")


def test_browser_admin_dashboard_audit_and_verify(as_user, server):
    ada = as_user("t-ada")
    ada.goto(server + PREFIX + "/admin")
    assert ada.get_by_text("running notebook servers").is_visible()
    assert ada.locator("svg.chart").count() == 4
    shot(ada, "admin-dashboard")
    ada.goto(server + PREFIX + "/admin/audit")
    ada.get_by_label("Project").fill("asthma")
    ada.get_by_role("button", name="Filter").click()
    assert "project=asthma" in ada.url
    assert ada.locator("table.audit tbody tr").count() >= 3
    shot(ada, "admin-audit")
    ada.get_by_role("button", name="Verify chain").click()
    assert "The audit log is intact" in ada.get_by_role("status").inner_text()
    with ada.expect_download() as download:
        ada.goto(server + PREFIX + "/admin/audit")
        ada.get_by_role("link", name="Export CSV").click()
    assert download.value.suggested_filename == "enclave-audit.csv"


def test_browser_refusals_are_clear_pages(as_user, server):
    rob = as_user("t-rob")
    response = rob.goto(server + PREFIX + "/projects/diabetes")
    assert response.status == 403
    assert rob.get_by_role("heading", name="Not allowed").is_visible()
    assert rob.get_by_text("Type 2 diabetes").count() == 0
    shot(rob, "error-403")
    response = rob.goto(server + PREFIX + "/admin")
    assert response.status == 403
    assert rob.get_by_role("link", name="Admin").count() == 0


def test_browser_egress_request_and_review(as_user, server):
    import httpx

    api = server + PREFIX + "/api/egress"
    rob_h = {"Authorization": "token t-rob"}
    rob = as_user("t-rob")
    rob.goto(server + PREFIX + "/egress")
    rob.get_by_label("Title").fill("Admissions by age band")
    rob.get_by_role("button", name="Start a request").click()
    rob.get_by_label("outbox/admissions.csv").check()
    rob.get_by_label("outbox/notes.txt").check()
    rob.get_by_label("Group").fill("table1")
    rob.get_by_label("Context: what the files show, and for which population").fill("Admissions 2020-2024 by age band")
    rob.get_by_label("Disclosure controls applied").fill("Counts under 10 checked; none suppressed yet")
    rob.get_by_role("button", name="Add selected files").click()
    rob.get_by_role("button", name="Submit for review").click()
    assert rob.locator(".badge-changes_requested").first.is_visible()
    assert rob.get_by_text("too few contributors").is_visible()
    shot(rob, "researcher-egress-findings")
    rob.get_by_label("Exception (only if a file fails the checks and must still be reviewed)").fill(
        "The 5-9 band is published nationally.")
    rob.get_by_role("button", name="Resubmit for review").click()
    assert rob.locator(".badge-in_review").first.is_visible()
    rid = int(rob.url.split("/egress/")[1].split("?")[0])

    rita = as_user("t-rita")
    rita.goto(server + PREFIX + "/review")
    shot(rita, "reviewer-queue")
    rita.get_by_role("link", name="Admissions by age band").click()
    rita.get_by_role("link", name="admissions.csv").click()
    assert rita.locator("td.flag").all_inner_texts() == ["3"]
    shot(rita, "reviewer-file-flagged")
    rita.get_by_label("Comment (required to request changes, to approve a failed file or reject a passed one)").fill(
        "Suppress the 5-9 band or merge it with 10-14.")
    rita.get_by_role("button", name="Request changes").click()
    assert rita.get_by_role("status").inner_text() == "Your vote was recorded."
    detail = httpx.get(f"{api}/requests/{rid}", headers=rob_h).json()
    assert detail["file_list"][0]["votes"] or detail["status"] in ("in_review", "changes_requested")


def test_browser_admin_catalogue(as_user, server):
    ada = as_user("t-ada")
    ada.goto(server + PREFIX + "/admin/datasets")
    ada.get_by_role("link", name="hospital-episodes").click()
    assert ada.get_by_role("heading", name="Data dictionary (v1)").is_visible()
    assert ada.locator(".badge-live").first.is_visible()
    shot(ada, "admin-catalogue")
