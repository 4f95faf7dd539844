"""In Chromium: a researcher browses the catalogue and applies (a mistake shown beside its
field, nothing typed lost); an admin approves, activates and grants only some columns and
rows of a dataset (a bad row filter shown beside it, the ticks and values kept)."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.browser.test_web_consoles import PREFIX, shot

pytestmark = pytest.mark.browser


def test_browser_admin_from_application_to_a_minimised_grant(as_user, server):
    end = (dt.date.today() + dt.timedelta(days=300)).isoformat()
    eve = as_user("t-eve")
    eve.goto(server + PREFIX + "/catalogue")
    eve.get_by_role("link", name="hospital-episodes").click()
    assert eve.get_by_role("heading", name="Data dictionary (v1)").is_visible()
    assert eve.get_by_text("Whole days in hospital").is_visible()
    shot(eve, "researcher-catalogue")
    eve.get_by_role("link", name="Apply for a project using it").click()
    assert eve.get_by_label("Datasets wanted").input_value() == "hospital-episodes"
    eve.get_by_label("Title").fill("Length of stay after hip fracture")
    eve.get_by_label("Short name").fill("hip-stay")
    eve.get_by_label("Purpose", exact=True).fill("Why some patients stay longer after a hip fracture.")
    eve.get_by_label("Lay summary").fill("What keeps people in hospital after breaking a hip?")
    eve.get_by_label("Approvals and references").fill("REC 25/XY/0002")
    eve.get_by_label("Public benefit").fill("Shorter, safer hospital stays.")
    eve.get_by_label("UK GDPR Article 6 basis").select_option("public_task")
    eve.get_by_label("UK GDPR Article 9 condition").select_option("research_and_statistics")
    eve.get_by_label("Common law duty of confidentiality").select_option("section_251")
    eve.get_by_label("Data controller").fill("University Hospital NHS Trust")
    eve.get_by_label("Public contact email").fill("hip-study@hospital.example")
    eve.get_by_label("Team").fill("nobody-here")
    eve.get_by_label("End date").fill(end)
    eve.get_by_role("button", name="Submit application").click()
    # The mistake is shown beside its field, in the web's words; everything typed is kept.
    team_error = eve.locator("#team-error")
    assert "no enclave user named 'nobody-here'" in team_error.inner_text()
    assert eve.get_by_label("Team").get_attribute("aria-invalid") == "true"
    assert eve.get_by_label("Title").input_value() == "Length of stay after hip fracture"
    assert eve.get_by_label("UK GDPR Article 9 condition").input_value() == "research_and_statistics"
    assert eve.get_by_label("End date").input_value() == end
    assert "--" not in eve.locator("main").inner_text() and "enclave user list" not in eve.content()
    shot(eve, "researcher-apply-error")
    eve.get_by_label("Team").fill("")
    eve.get_by_role("button", name="Submit application").click()
    assert eve.get_by_role("status").inner_text().startswith("Your application was submitted")

    ada = as_user("t-ada")
    ada.goto(server + PREFIX + "/admin/applications")
    entry = ada.locator("article", has_text="Length of stay after hip fracture")
    assert entry.get_by_role("link", name="hospital-episodes").is_visible()  # in the catalogue: no flag
    entry.get_by_role("button", name="Approve").click()
    assert ada.get_by_role("status").inner_text() == "The project was approved."
    steps = ada.locator("section.next-steps")
    assert steps.get_by_text("Activate the project").is_visible()
    shot(ada, "admin-next-steps")
    steps.get_by_role("button", name="Activate now").click()
    assert ada.get_by_role("status").inner_text() == "The project is now active."
    ada.locator("section.next-steps").get_by_role("link", name="Grant hospital-episodes").click()
    assert ada.get_by_label("Project", exact=True).input_value() == "hip-stay"

    until = (dt.date.today() + dt.timedelta(days=120)).isoformat()
    ada.get_by_label("Access until (last day)").fill(until)
    for column in ("admission_id", "patient_id", "admission_method", "length_of_stay_days"):
        ada.locator(f'input[name="columns"][value="admissions.{column}"]').check()
    assert ada.locator('input[name="columns"][value="patients.nhs_number"]').count() == 0  # never grantable
    ada.get_by_label("Row filter for admissions (optional)").fill("length_of_stay_days >>= 2")
    ada.get_by_role("button", name="Grant access").click()
    filter_error = ada.locator("#filter-admissions-error")
    assert "row filter for admissions is not a SQL expression" in filter_error.inner_text()
    assert ada.get_by_label("Row filter for admissions (optional)").input_value() == "length_of_stay_days >>= 2"
    assert ada.locator('input[name="columns"][value="admissions.admission_method"]').is_checked()
    assert not ada.locator('input[name="columns"][value="admissions.specialty"]').is_checked()
    assert ada.get_by_label("Access until (last day)").input_value() == until
    assert ada.get_by_label("Project", exact=True).input_value() == "hip-stay"
    shot(ada, "admin-grant-error")
    ada.get_by_label("Row filter for admissions (optional)").fill("length_of_stay_days >= 2 AND admission_method = 'emergency'")
    ada.get_by_role("button", name="Grant access").click()
    assert ada.get_by_role("status").inner_text() == "The grant was added and its view materialised."
    row = ada.locator("tr", has=ada.get_by_role("link", name="hip-stay"))
    assert row.locator(".badge-live").is_visible()

    ada.goto(server + PREFIX + "/admin/audit?action=grant.add&project=hip-stay")
    details = ada.locator("table.audit tbody tr").first.locator("td.details")
    assert "admissions.admission_method" in details.inner_text()
    assert "admissions: length_of_stay_days >= 2 AND admission_method = 'emergency'" in details.inner_text()
    shot(ada, "admin-audit-grant")
    ada.goto(server + PREFIX + "/admin")
    assert ada.get_by_role("heading", name="Service against target").is_visible()
    # No script or style was refused (CSP); the two forms sent back were answered 400 on purpose.
    assert [e for e in as_user.console_errors if "status of 400" not in e] == []
