"""Egress pages show reviewers where each file came from (the run that wrote it, and
whether it is unchanged since) and the runs a request cites; researchers answer reviewers'
comments on a returned request, and reviewers read the answers without learning how the
others voted."""

from __future__ import annotations

import hashlib
import re

import pytest
from fastapi.testclient import TestClient

from enclave.config import Settings
from enclave.web.auth import SESSION_COOKIE
from tests.integration.web.jobs_steps import submit, work, xsrf_of
from tests.integration.web.world import PREFIX

API = PREFIX + "/api/egress"
TABLE = b"region,count\nnorth,120\nsouth,85\neast,240\n"


def h(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


@pytest.fixture
def cited(client: TestClient, world: Settings) -> tuple[int, int]:
    """rob's run wrote two tables; one was edited afterwards; a request citing the run is in review."""
    run_id = submit(client)
    out = world.workspaces_dir / "asthma" / "outbox" / "jobs" / str(run_id)
    out.mkdir(parents=True)
    (out / "kept.csv").write_bytes(TABLE)
    (out / "edited.csv").write_bytes(TABLE.replace(b"240", b"245"))
    work(world, run_id, outputs={"kept.csv": hashlib.sha256(TABLE).hexdigest(),
                                 "edited.csv": hashlib.sha256(TABLE).hexdigest()})
    rid = client.post(API + "/requests", headers=h("t-rob"),
                      json={"project": "asthma", "title": "Run tables", "cited_runs": [run_id]}).json()["id"]
    paths = [f"jobs/{run_id}/kept.csv", f"jobs/{run_id}/edited.csv", "notes.txt"]
    added = client.post(API + f"/requests/{rid}/files", headers=h("t-rob"),
                        json={"paths": paths, "group": "t1", "context": "Counts by region", "controls": "none"})
    assert added.status_code == 200, added.text
    sent = client.post(API + f"/requests/{rid}/submit", headers=h("t-rob"), json={"exception": "published counts"})
    assert sent.json()["status"] == "in_review", sent.text
    return rid, run_id


def test_provenance_reviewer_sees_the_run_and_whether_each_file_is_unchanged(client: TestClient, cited):
    rid, run_id = cited
    client.cookies.set(SESSION_COOKIE, "t-rita")
    overview = client.get(PREFIX + f"/review/{rid}").text
    assert f'href="{PREFIX}/jobs/{run_id}"' in overview and "Cited job runs" in overview
    kept = client.get(PREFIX + f"/review/{rid}/file", params={"path": f"jobs/{run_id}/kept.csv"}).text
    assert f"Written by <a href=\"{PREFIX}/jobs/{run_id}\">run {run_id}</a>" in kept and "badge-unchanged" in kept
    edited = client.get(PREFIX + f"/review/{rid}/file", params={"path": f"jobs/{run_id}/edited.csv"}).text
    assert "badge-changed" in edited and "differs from what the run recorded" in edited
    notes = client.get(PREFIX + f"/review/{rid}/file", params={"path": "notes.txt"}).text
    assert "Not written by a job run" in notes
    assert client.get(PREFIX + f"/jobs/{run_id}").status_code == 200  # the run page is one click away


def test_provenance_author_sees_it_on_the_request_page(client: TestClient, cited):
    rid, run_id = cited
    client.cookies.set(SESSION_COOKIE, "t-rob")
    page = client.get(PREFIX + f"/egress/{rid}").text
    assert page.count("badge-unchanged") == 1 and page.count("badge-changed") == 1
    assert "Cited job runs" in page and f"/jobs/{run_id}" in page


def test_provenance_cannot_cite_another_projects_run(client: TestClient):
    theirs = submit(client, "t-eve", "diabetes")
    refused = client.post(API + "/requests", headers=h("t-rob"),
                          json={"project": "asthma", "cited_runs": [theirs]})
    assert refused.status_code == 400 and "not a run of project asthma" in refused.json()["detail"]


@pytest.fixture
def returned(client: TestClient, cited) -> tuple[int, int]:
    rid, run_id = cited
    for reviewer, comment in (("t-rita", "round to 5"), ("t-rudy", "suppress small cells")):
        for f in client.get(API + f"/requests/{rid}", headers=h(reviewer)).json()["file_list"]:
            voted = client.post(API + f"/requests/{rid}/votes", headers=h(reviewer),
                                json={"path": f["path"], "decision": "request_changes", "comment": comment})
            assert voted.status_code == 200, voted.text
    assert client.get(API + f"/requests/{rid}", headers=h("t-rob")).json()["status"] == "changes_requested"
    return rid, run_id


def test_reply_from_the_request_page_is_shown_to_reviewers(client: TestClient, returned):
    rid, run_id = returned
    path = f"jobs/{run_id}/kept.csv"
    client.cookies.set(SESSION_COOKIE, "t-rob")
    assert "Reply to the reviewers" in client.get(PREFIX + f"/egress/{rid}").text
    token = xsrf_of(client, f"/egress/{rid}")
    assert client.post(PREFIX + f"/egress/{rid}/reply", data={"path": path, "message": "Rounded."}).status_code == 403
    done = client.post(PREFIX + f"/egress/{rid}/reply", data={"_xsrf": token, "path": path,
                                                               "message": "Rounded to 5 <b>now</b>."},
                       follow_redirects=False)
    assert done.status_code == 303
    assert "Rounded to 5 &lt;b&gt;now&lt;/b&gt;." in client.get(done.headers["location"]).text
    client.cookies.set(SESSION_COOKIE, "t-rita")
    review = client.get(PREFIX + f"/review/{rid}/file", params={"path": path}).text
    assert "Replies from the researchers" in review and "Rounded to 5 &lt;b&gt;now&lt;/b&gt;." in review


@pytest.mark.parametrize("token, status", [("t-ria", 201), ("t-eve", 403), ("t-rita", 403), ("t-ada", 403)])
def test_reply_api_members_only(client: TestClient, returned, token: str, status: int):
    rid, run_id = returned
    response = client.post(API + f"/requests/{rid}/replies", headers=h(token),
                           json={"path": "notes.txt", "message": "It is a log line, not data."})
    assert response.status_code == status, response.text


def test_reply_in_review_is_refused_and_hides_votes_from_a_reviewer_yet_to_vote(client: TestClient, returned):
    rid, run_id = returned
    path = f"jobs/{run_id}/kept.csv"
    assert client.post(API + f"/requests/{rid}/replies", headers=h("t-rob"),
                       json={"path": path, "message": "Rounded."}).status_code == 201
    again = client.post(API + f"/requests/{rid}/submit", headers=h("t-rob"), json={"exception": "published counts"})
    assert again.json()["status"] == "in_review"
    assert client.post(API + f"/requests/{rid}/replies", headers=h("t-rob"),
                       json={"path": path, "message": "More."}).status_code == 409
    assert client.post(API + f"/requests/{rid}/votes", headers=h("t-rita"),
                       json={"path": path, "decision": "approve", "comment": "now fine, rounded"}).status_code == 200
    seen = next(f for f in client.get(API + f"/requests/{rid}", headers=h("t-rudy")).json()["file_list"]
                if f["path"] == path)
    assert seen["votes"] == [] and seen["hidden_votes"] == 1 and [r["message"] for r in seen["replies"]] == ["Rounded."]
    client.cookies.set(SESSION_COOKIE, "t-rudy")
    page = client.get(PREFIX + f"/review/{rid}/file", params={"path": path}).text
    assert "Rounded." in page and "now fine, rounded" not in page and not re.search(r"<b>rita</b>", page)
