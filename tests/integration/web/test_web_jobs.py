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


def test_jobs_api_member_submits_and_sees_the_queued_run(client: TestClient):
    run_id = submit(client, min_age=50, label="adults")
    shown = client.get(API + f"/{run_id}", headers=h("t-ria")).json()  # another member of asthma
    assert shown["status"] == "queued" and shown["parameters"] == {"min_age": 50, "label": "adults"}
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


def test_jobs_pages_member_submits_from_the_form_with_parameters(client: TestClient):
    signed_in(client, "t-rob")
    page = client.get(PREFIX + "/projects/asthma/jobs")
    assert page.status_code == 200 and '<option value="notebooks/analysis.ipynb">' in page.text
    assert "<script" not in page.text and "starts when the job worker picks it up" in page.text
    token = xsrf_of(client, "/projects/asthma/jobs")
    form = {"_xsrf": token, "notebook": "notebooks/analysis.ipynb",
            "param_name": ["min_age", "label", "", ""], "param_value": ["50", "older adults", "", ""]}
    done = client.post(PREFIX + "/projects/asthma/jobs", data=form, follow_redirects=False)
    assert done.status_code == 303, done.text
    assert "it starts when the job worker picks it up" in client.get(done.headers["location"]).text
    run_id = int(re.search(r"/jobs/(\d+)\?", done.headers["location"]).group(1))
    assert "Queued: the run starts when the job worker picks it up" in client.get(PREFIX + f"/jobs/{run_id}").text
    assert client.get(API + f"/{run_id}", headers=h("t-rob")).json()["parameters"] == {"min_age": 50,
                                                                                      "label": "older adults"}
    listed = client.get(PREFIX + "/projects/asthma/jobs").text
    assert 'badge-queued' in listed and "min_age=50" in listed


def test_jobs_pages_form_refuses_bad_rows_missing_xsrf_and_outsiders(client: TestClient):
    signed_in(client, "t-rob")
    token = xsrf_of(client, "/projects/asthma/jobs")
    bad = client.post(PREFIX + "/projects/asthma/jobs", data={"_xsrf": token, "notebook": "notebooks/analysis.ipynb",
                                                              "param_name": ["", "2x"], "param_value": ["5", "1"]})
    assert bad.status_code == 400 and "NAME=VALUE" in bad.text and "Traceback" not in bad.text
    no_token = client.post(PREFIX + "/projects/asthma/jobs", data={"notebook": "notebooks/analysis.ipynb"})
    assert no_token.status_code == 403
    signed_in(client, "t-eve")
    eve_token = xsrf_of(client, "/projects/diabetes/jobs")
    assert client.post(PREFIX + "/projects/asthma/jobs", data={"_xsrf": eve_token, "notebook": "notebooks/analysis.ipynb"},
                       ).status_code == 403
    signed_in(client, "t-rita")  # reviewers see the runs, without the form
    seen = client.get(PREFIX + "/projects/asthma/jobs")
    assert seen.status_code == 200 and "Queue the run" not in seen.text


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
