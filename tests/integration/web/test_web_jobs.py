"""Jobs through the web API and pages: members submit workspace notebooks with parameters,
everyone who may see a run sees its provenance and log, reviewers rerun, and every attempt
on another project's run, or from outside the project, is refused."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from enclave.config import Settings
from enclave.db.session import unit_of_work
from enclave.jobs import service as jobs
from enclave.web.auth import SESSION_COOKIE
from tests.integration.web.world import PREFIX

from tests.integration.web.jobs_steps import API, DIGEST, h, signed_in, submit, work, xsrf_of


COHORT = {"cells": [
    {"cell_type": "markdown", "metadata": {}, "source": "# Cohort"},
    {"cell_type": "code", "execution_count": None, "metadata": {"tags": ["parameters"]}, "outputs": [],
     "source": 'label = "all"    # what the tables are called\nmin_age = 40\nratio = 1.5\nstrict = False\n'},
    {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": "print(label)"}],
    "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture
def cohort_notebook(world: Settings) -> str:
    import json

    (world.workspaces_dir / "asthma" / "notebooks" / "cohort.ipynb").write_text(json.dumps(COHORT))
    return "notebooks/cohort.ipynb"


def test_jobs_api_member_submits_and_sees_the_queued_run(client: TestClient):
    run_id = submit(client, min_age=50)
    shown = client.get(API + f"/{run_id}", headers=h("t-ria")).json()  # another member of asthma
    assert shown["status"] == "queued" and shown["parameters"] == {"min_age": 50}
    assert len(shown["notebook_sha256"]) == 64 and shown["reruns"] == []
    assert [r["id"] for r in client.get(API, headers=h("t-rob"), params={"project": "asthma"}).json()] == [run_id]
    assert client.get(API + f"/{run_id}/log", headers=h("t-rob")).text == ""
    assert client.get(API + "/notebooks/asthma", headers=h("t-rob")).json() == ["notebooks/analysis.ipynb"]


@pytest.mark.parametrize("token", ["t-eve", "t-rita", "t-ada", "t-mal"])
def test_jobs_api_only_members_submit(client: TestClient, token: str):
    response = client.post(API, headers=h(token), json={"project": "asthma", "notebook": "notebooks/analysis.ipynb"})
    assert response.status_code == 403, response.text
    assert client.get(API + "/notebooks/asthma", headers=h(token)).status_code == 403


def test_jobs_another_projects_run_is_refused_everywhere(client: TestClient):
    theirs = submit(client, "t-eve", "diabetes")
    client.cookies.set(SESSION_COOKIE, "t-rob")
    for method, path in (("get", f"/{theirs}"), ("get", f"/{theirs}/log"), ("post", f"/{theirs}/cancel"),
                         ("post", f"/{theirs}/rerun")):
        response = getattr(client, method)(API + path, headers=h("t-rob"))
        assert response.status_code == 403, (path, response.text)
    assert client.get(API, headers=h("t-rob"), params={"project": "diabetes"}).status_code == 403
    assert theirs not in [r["id"] for r in client.get(API, headers=h("t-rob")).json()]
    assert client.get(PREFIX + f"/jobs/{theirs}").status_code == 403
    assert client.get(PREFIX + "/projects/diabetes/jobs").status_code == 403
    assert client.get(API + "/999999", headers=h("t-rob")).status_code == 404
    assert client.get(API + "/0", headers=h("t-rob")).status_code == 422
    with unit_of_work(client.app.state.web.settings) as s:
        assert jobs.get_job(s, jobs.get_project(s, "diabetes").pi, theirs).status.value == "queued"


@pytest.mark.parametrize("notebook, status", [
    ("../diabetes/notebooks/analysis.ipynb", 400), ("/etc/passwd.ipynb", 400), ("outbox/x.ipynb", 400),
    ("notebooks/missing.ipynb", 404), ("notebooks/analysis.py", 400), ("a\u0000b.ipynb", 422),
])
def test_jobs_api_notebook_paths_cannot_escape(client: TestClient, notebook: str, status: int):
    response = client.post(API, headers=h("t-rob"), json={"project": "asthma", "notebook": notebook})
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and "Traceback" not in detail


def test_jobs_api_bad_parameter_names_are_one_line(client: TestClient):
    response = client.post(API, headers=h("t-rob"), json={"project": "asthma", "notebook": "notebooks/analysis.ipynb",
                                                          "parameters": {"import": 1}})
    assert response.status_code == 400 and "identifier" in response.json()["detail"]


def test_jobs_cancel_by_member_then_not_again(client: TestClient):
    run_id = submit(client)
    assert client.post(API + f"/{run_id}/cancel", headers=h("t-rita")).status_code == 403  # reviewer: not a member
    cancelled = client.post(API + f"/{run_id}/cancel", headers=h("t-ria"))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert client.post(API + f"/{run_id}/cancel", headers=h("t-rob")).status_code == 409


def test_jobs_reviewer_reruns_a_succeeded_run_and_sees_the_comparison(client: TestClient, world: Settings):
    run_id = submit(client)
    assert client.post(API + f"/{run_id}/rerun", headers=h("t-rita")).status_code == 409  # not succeeded yet
    work(world, run_id)
    rerun = client.post(API + f"/{run_id}/rerun", headers=h("t-rita"))
    assert rerun.status_code == 201 and rerun.json()["rerun_of"] == run_id
    assert client.post(API + f"/{run_id}/rerun", headers=h("t-eve")).status_code == 403
    work(world, rerun.json()["id"], comparison={"matches": True, "input_changes": [],
                                                "files": [{"path": "table.csv", "match": "identical", "detail": ""}]})
    original = client.get(API + f"/{run_id}", headers=h("t-rita")).json()
    assert [(r["id"], r["reproduced"]) for r in original["reruns"]] == [(rerun.json()["id"], True)]
    signed_in(client, "t-rita")
    page = client.get(PREFIX + f"/jobs/{run_id}").text
    assert "Rerun and compare" in page and "reproduced" in page
    rerun_page = client.get(PREFIX + f"/jobs/{rerun.json()['id']}").text
    assert "Comparison with run" in rerun_page and "identical" in rerun_page


def test_jobs_pages_form_offers_the_notebooks_parameters_as_fields(client: TestClient, cohort_notebook: str):
    signed_in(client, "t-rob")
    page = client.get(PREFIX + "/projects/asthma/jobs", params={"notebook": cohort_notebook})
    assert page.status_code == 200 and f'<option value="{cohort_notebook}" selected>' in page.text
    for field, value in (("p_label", "all"), ("p_min_age", "40"), ("p_ratio", "1.5")):
        assert re.search(rf'name="{field}" value="{re.escape(value)}"', page.text), field
    assert '<option value="false" selected>' in page.text and "what the tables are called" in page.text
    token = xsrf_of(client, "/projects/asthma/jobs")
    form = {"_xsrf": token, "notebook": cohort_notebook, "p_label": "older adults", "p_min_age": "50",
            "p_ratio": "1.5", "p_strict": "true"}
    done = client.post(PREFIX + "/projects/asthma/jobs", data=form, follow_redirects=False)
    assert done.status_code == 303, done.text
    assert "this page follows it" in client.get(done.headers["location"]).text
    run_id = int(re.search(r"/jobs/(\d+)\?", done.headers["location"]).group(1))
    run_page = client.get(PREFIX + f"/jobs/{run_id}").text
    assert "Queued: the run starts when the job worker picks it up" in run_page
    assert f'data-live-url="{PREFIX}/api/jobs/{run_id}/live"' in run_page and "/static/jobs.js" in run_page
    assert "<noscript>" in run_page  # usable without the script: it says to reload
    # Only what differs from the notebook's defaults is passed, each of its default's kind.
    assert client.get(API + f"/{run_id}", headers=h("t-rob")).json()["parameters"] == {
        "label": "older adults", "min_age": 50, "strict": True}
    listed = client.get(PREFIX + "/projects/asthma/jobs").text
    assert 'badge-queued' in listed and "min_age=50" in listed and "data-live-runs=" in listed


def test_jobs_pages_form_errors_beside_the_field_keep_what_was_typed(client: TestClient, cohort_notebook: str):
    signed_in(client, "t-rob")
    token = xsrf_of(client, "/projects/asthma/jobs")
    bad = client.post(PREFIX + "/projects/asthma/jobs", data={
        "_xsrf": token, "notebook": cohort_notebook, "p_label": "kept text", "p_min_age": "fifty", "p_ratio": "x"})
    assert bad.status_code == 400 and "Traceback" not in bad.text
    assert 'id="e_min_age">parameter min_age takes a whole number, e.g. 40, not &#39;fifty&#39;</p>' in bad.text
    assert 'id="e_ratio"' in bad.text and 'aria-invalid="true" aria-describedby="e_min_age"' in bad.text
    assert 'name="p_label" value="kept text"' in bad.text and 'name="p_min_age" value="fifty"' in bad.text
    assert client.get(API, headers=h("t-rob"), params={"project": "asthma"}).json() == []  # nothing queued
    no_token = client.post(PREFIX + "/projects/asthma/jobs", data={"notebook": cohort_notebook})
    assert no_token.status_code == 403
    signed_in(client, "t-eve")
    eve_token = xsrf_of(client, "/projects/diabetes/jobs")
    assert client.post(PREFIX + "/projects/asthma/jobs", data={"_xsrf": eve_token, "notebook": cohort_notebook},
                       ).status_code == 403
    signed_in(client, "t-rita")  # reviewers see the runs, without the form
    seen = client.get(PREFIX + "/projects/asthma/jobs")
    assert seen.status_code == 200 and "Queue the run" not in seen.text


def test_jobs_api_parameters_of_a_notebook(client: TestClient, cohort_notebook: str):
    declared = client.get(API + "/parameters/asthma", params={"notebook": cohort_notebook}, headers=h("t-ria")).json()
    assert [(p["name"], p["kind"], p["default"]) for p in declared] == [
        ("label", "text", "all"), ("min_age", "integer", 40), ("ratio", "number", 1.5), ("strict", "boolean", False)]
    refused = client.post(API, headers=h("t-rob"), json={"project": "asthma", "notebook": cohort_notebook,
                                                         "parameters": {"min_age": "50"}})
    assert refused.status_code == 400 and refused.json()["detail"] == \
        "parameter min_age takes a whole number, e.g. 40, not '50'"
    assert client.get(API + "/parameters/asthma", params={"notebook": cohort_notebook},
                      headers=h("t-eve")).status_code == 403


def test_jobs_live_endpoint_follows_status_and_log_from_an_offset(client: TestClient, world: Settings):
    run_id = submit(client)
    first = client.get(API + f"/{run_id}/live", headers=h("t-ria")).json()
    assert first == {"id": run_id, "status": "queued", "final": False, "error": None, "log": "", "next_offset": 0}
    work(world, run_id, log="Executing cell 1\nné\n")
    whole = client.get(API + f"/{run_id}/live", headers=h("t-ria")).json()
    assert whole["status"] == "succeeded" and whole["final"] and whole["log"] == "Executing cell 1\nné\n"
    size = len("Executing cell 1\nné\n".encode())
    assert whole["next_offset"] == size
    rest = client.get(API + f"/{run_id}/live", params={"offset": 17}, headers=h("t-ria")).json()
    assert rest["log"] == "né\n" and rest["next_offset"] == size
    assert client.get(API + f"/{run_id}/live", params={"offset": size}, headers=h("t-ria")).json()["log"] == ""
    theirs = submit(client, "t-eve", "diabetes")
    assert client.get(API + f"/{theirs}/live", headers=h("t-rob")).status_code == 403


def test_jobs_egress_request_citing_a_run_holds_its_outputs(client: TestClient, world: Settings):
    run_id = submit(client)
    assert client.post(API + f"/{run_id}/egress", headers=h("t-rob")).status_code == 409  # not succeeded yet
    out = world.workspaces_dir / "asthma" / "outbox" / "jobs" / str(run_id)
    out.mkdir(parents=True)
    for name in ("analysis.ipynb", "table.csv", "table.csv.evidence.json"):
        (out / name).write_text("a,b\n1,2\n" if name.endswith(".csv") else "{}")
    work(world, run_id, outputs={"analysis.ipynb": "1" * 64, "table.csv": "2" * 64, "table.csv.evidence.json": "3" * 64})
    signed_in(client, "t-rob")
    page = client.get(PREFIX + f"/jobs/{run_id}").text
    assert "Start an egress request citing this run" in page and f"jobs/{run_id}/table.csv" in page
    token = xsrf_of(client, f"/jobs/{run_id}")
    missing = client.post(PREFIX + f"/jobs/{run_id}/egress", data={"_xsrf": token, "context": "Adults by band"})
    assert missing.status_code == 400 and 'id="e_controls">say which disclosure controls were applied' in missing.text
    assert ">Adults by band</textarea>" in missing.text  # kept
    done = client.post(PREFIX + f"/jobs/{run_id}/egress", data={
        "_xsrf": token, "context": "Adults by age band", "controls": "cells under 10 suppressed"},
        follow_redirects=False)
    assert done.status_code == 303, done.text
    number = int(re.search(r"/egress/(\d+)\?done=created_from_run", done.headers["location"]).group(1))
    shown = client.get(PREFIX + f"/api/egress/requests/{number}", headers=h("t-rob")).json()
    assert shown["status"] == "draft" and shown["cited_runs"] == [run_id]
    # The table only: the executed notebook stays out, the sidecar travels with its table.
    assert [f["path"] for f in shown["file_list"]] == [f"jobs/{run_id}/table.csv"]
    assert [(g["name"], g["context"], g["controls"]) for g in shown["groups"]] == [
        (f"run-{run_id}", "Adults by age band", "cells under 10 suppressed")]  # ready to submit
    # Reviewers and other projects' members cannot start one; nor from a rerun.
    assert client.post(API + f"/{run_id}/egress", headers=h("t-rita")).status_code == 403
    assert client.post(API + f"/{run_id}/egress", headers=h("t-eve")).status_code == 403
    rerun = client.post(API + f"/{run_id}/rerun", headers=h("t-rita")).json()["id"]
    work(world, rerun)
    refused = client.post(API + f"/{rerun}/egress", headers=h("t-rob"))
    assert refused.status_code == 400 and f"start the request from run {run_id}" in refused.json()["detail"]
    signed_in(client, "t-rita")
    assert "Start an egress request" not in client.get(PREFIX + f"/jobs/{run_id}").text


def test_jobs_run_page_shows_provenance_and_the_log_escaped(client: TestClient, world: Settings):
    run_id = submit(client, min_age=40)
    work(world, run_id, outputs={"cohort_by_age.csv": "34" * 32}, log="Executing cell 1\n<script>alert(1)</script>\n")
    signed_in(client, "t-ria")
    page = client.get(PREFIX + f"/jobs/{run_id}").text
    for expected in (DIGEST, "34" * 32, "hospital-episodes", "01" * 32, "min_age=40", "Executing cell 1",
                     "&lt;script&gt;alert(1)&lt;/script&gt;"):
        assert expected in page, expected
    assert "<script>" not in page and "Cancel the run" not in page
    assert "Executing cell 1" in client.get(API + f"/{run_id}/log", headers=h("t-rob")).text
