"""In Chromium: a researcher picks a workspace notebook on the project's jobs page, gets its
own parameters as fields, and queues a run the page then follows."""

from __future__ import annotations

import pytest

from tests.browser.test_web_consoles import PREFIX, shot

pytestmark = pytest.mark.browser


def test_browser_researcher_submits_a_job_and_sees_it_queued(as_user, server):
    rob = as_user("t-rob")
    rob.goto(server + PREFIX + "/projects/asthma")
    rob.get_by_role("link", name="Jobs").click()
    assert rob.get_by_role("heading", name="Run a notebook").is_visible()
    rob.get_by_label("Notebook in the workspace").select_option("notebooks/analysis.ipynb")
    field = rob.locator("#p_min_age")  # from the notebook's cell tagged 'parameters'
    assert field.input_value() == "18"
    field.fill("50")
    shot(rob, "jobs-submit")
    rob.get_by_role("button", name="Queue the run").click()
    assert rob.get_by_role("status").first.inner_text().startswith("The run is queued")
    assert rob.locator(".page-head .badge").inner_text().lower() == "queued"
    assert rob.get_by_text("min_age=50").first.is_visible()
    assert rob.locator(".live-hint").first.is_visible()  # the script follows the run
    shot(rob, "jobs-run-queued")
    rob.get_by_role("link", name="Jobs of asthma").click()
    assert rob.locator("tbody tr").first.locator(".badge").inner_text().lower() == "queued"
    assert as_user.console_errors == []
