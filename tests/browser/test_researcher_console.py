"""In Chromium against a real JupyterHub (the demo enclave, the repository's configuration,
the job worker as the hub service it is in production): a researcher starts and stops a
project server from the console, then runs the cohort notebook as a job with parameters
from the jobs page, follows it on the run page as it runs, and starts an egress request
citing the run, all without a shell. Screenshots: console-*.png in ENCLAVE_SCREENSHOTS."""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import select

from enclave.db.models import AuditEvent, EgressRequest, JobRun
from enclave.db.session import unit_of_work
from enclave.web.servers import ServerEvent
from tests.browser.test_journey import CONSOLE, Hub, _signed_in, hub  # noqa: F401 - the hub fixture
from tests.browser.test_web_consoles import shot

pytestmark = [pytest.mark.browser, pytest.mark.docker, pytest.mark.slow]

SERVER_WAIT_MS = 240_000  # a server start on a busy 2-core machine
JOB_WAIT_MS = 600_000  # a papermill run in a fresh container, queued behind others' runs


def _cardio(page):  # type: ignore[no-untyped-def]
    return page.locator("article", has=page.locator("#p-cardio"))


def _events(hub: Hub, action: str) -> list[tuple[str, str | None]]:
    with unit_of_work(hub.settings) as session:
        return [(e.actor, e.target) for e in session.scalars(select(AuditEvent).where(AuditEvent.action == action))]


def test_console_researcher_starts_and_stops_a_project_server(browser, hub: Hub) -> None:
    ada = _signed_in(browser, hub, "ada")
    ada.goto(f"{hub.url}{CONSOLE}/projects")
    cardio = _cardio(ada)
    assert cardio.locator(".server .badge").inner_text().lower() == "stopped"
    cardio.get_by_role("button", name="Start server").click()
    # The hub starts it; the page refreshes itself while it is starting.
    _cardio(ada).locator(".server .badge-running").wait_for(timeout=SERVER_WAIT_MS)
    assert hub.servers("ada")["cardio"]["ready"]
    assert _cardio(ada).get_by_role("link", name="Open JupyterLab").get_attribute("href") == "/user/ada/cardio/"
    shot(ada, "console-server-running")
    assert _events(hub, ServerEvent.START_REQUESTED) == [("ada", "server:ada/cardio")]

    _cardio(ada).get_by_role("button", name="Stop server").click()
    _cardio(ada).locator(".server .badge-stopped").wait_for(timeout=SERVER_WAIT_MS)
    deadline = time.monotonic() + 60
    while "cardio" in hub.servers("ada") and time.monotonic() < deadline:
        time.sleep(1)
    assert "cardio" not in hub.servers("ada")
    assert _cardio(ada).get_by_role("button", name="Start server").is_visible()
    assert _events(hub, ServerEvent.STOP_REQUESTED) == [("ada", "server:ada/cardio")]
    ada.context.close()


def test_console_researcher_runs_a_job_with_parameters_to_an_egress_request(browser, hub: Hub) -> None:
    ada = _signed_in(browser, hub, "ada")
    ada.goto(f"{hub.url}{CONSOLE}/projects/cardio")
    ada.get_by_role("link", name="Jobs").click()
    # Choosing the notebook shows its own parameters, each field at the notebook's default.
    ada.get_by_label("Notebook in the workspace").select_option("notebooks/cohort_analysis.ipynb")
    min_age = ada.locator("#p_min_age")
    min_age.wait_for(timeout=30_000)
    assert min_age.input_value() == "40" and ada.locator("#p_dataset").input_value() == "demo"
    min_age.fill("fifty")
    ada.get_by_role("button", name="Queue the run").click()
    assert ada.locator("#e_min_age").inner_text() == "parameter min_age takes a whole number, e.g. 40, not 'fifty'"
    assert ada.locator("#p_min_age").input_value() == "fifty"  # what was typed is kept
    ada.locator("#p_min_age").fill("50")
    ada.locator("#p_max_age").fill("90")
    shot(ada, "console-job-parameters")
    ada.get_by_role("button", name="Queue the run").click()
    ada.wait_for_url(re.compile(rf".*{CONSOLE}/jobs/\d+\?done=job_queued"), timeout=30_000)
    run_id = int(re.search(r"/jobs/(\d+)", ada.url).group(1))
    run_page = ada.url.split("?")[0]

    # The page follows the run by itself (nobody reloads it here) and, once the run has
    # ended, shows what the server draws for a finished run.
    ada.get_by_role("button", name="Start an egress request citing this run").wait_for(timeout=JOB_WAIT_MS)
    assert ada.locator("#run-status .badge").inner_text().lower() == "succeeded"
    assert ada.url.split("?")[0] == run_page
    assert ada.get_by_text("The run is queued").count() == 0  # the queued message went with the run's end
    assert "Executing" in ada.locator("#job-log").inner_text()
    assert ada.get_by_text("min_age=50").first.is_visible() and ada.get_by_text("max_age=90").first.is_visible()
    outputs = ada.locator("#outputs")
    assert outputs.get_by_text("cohort_by_age_band_sex.csv", exact=True).is_visible()
    shot(ada, "console-job-succeeded")

    ada.get_by_label("Context: what the files show, and for which population").fill(
        "Cardio patients aged 50-90 by age band and sex; mean length of stay by admission method")
    ada.get_by_label("Disclosure controls applied").fill("enclave.safe: cells under the threshold suppressed")
    ada.get_by_role("button", name="Start an egress request citing this run").click()
    ada.wait_for_url(re.compile(rf".*{CONSOLE}/egress/\d+\?done=created_from_run"), timeout=30_000)
    request_id = int(re.search(r"/egress/(\d+)", ada.url).group(1))
    assert ada.locator(".file-entry", has_text=f"outbox/jobs/{run_id}/cohort_by_age_band_sex.csv").count() == 1
    assert ada.locator(".file-entry", has_text=".evidence.json").count() == 0  # evidence goes with its table
    shot(ada, "console-egress-from-run")
    with unit_of_work(hub.settings) as session:
        request = session.get(EgressRequest, request_id)
        assert request.details_json["cited_runs"] == [run_id] and request.author.name == "ada"
        assert sorted(f.relpath for f in request.files) == [
            f"jobs/{run_id}/cohort_by_age_band_sex.csv", f"jobs/{run_id}/length_of_stay_by_method.csv"]
        assert [(g.name, g.controls) for g in request.groups] == [
            (f"run-{run_id}", "enclave.safe: cells under the threshold suppressed")]
        run = session.get(JobRun, run_id)
        assert run.parameters_json == {"min_age": 50, "max_age": 90} and run.submitted_by.name == "ada"
    ada.context.close()
