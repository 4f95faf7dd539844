"""Egress through the web API and pages: outbox to release, findings inline, flagged
cells highlighted for reviewers, and every cross-project or wrong-role attempt refused."""

from __future__ import annotations

import io
import re
import zipfile

import pytest
from fastapi.testclient import TestClient

from enclave.web.auth import SESSION_COOKIE
from tests.integration.web.world import PREFIX

API = PREFIX + "/api/egress"


def h(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


@pytest.fixture
def in_review(client: TestClient) -> int:
    """rob's request with a failing table, resubmitted with an exception: now in review."""
    rid = client.post(API + "/requests", headers=h("t-rob"), json={"project": "asthma", "title": "Table 1"}).json()["id"]
    added = client.post(API + f"/requests/{rid}/files", headers=h("t-rob"),
                        json={"paths": ["admissions.csv", "notes.txt"], "group": "table1",
                              "context": "Admissions by age band, 2020-2024", "controls": "none"})
    assert added.status_code == 200, added.text
    first = client.post(API + f"/requests/{rid}/submit", headers=h("t-rob"), json={})
    assert first.json()["status"] == "changes_requested"  # hard fail: back to the author
    again = client.post(API + f"/requests/{rid}/submit", headers=h("t-rob"),
                        json={"exception": "The 5-9 band is a published national figure."})
    assert again.json()["status"] == "in_review", again.text
    return rid


def test_egress_findings_are_shown_to_the_author(client: TestClient, in_review: int):
    detail = client.get(API + f"/requests/{in_review}", headers=h("t-rob")).json()
    table = next(f for f in detail["file_list"] if f["path"] == "admissions.csv")
    assert table["check_status"] == "fail"
    assert table["findings"][0]["locations"] == ["line 3, column 'admissions'"]
    client.cookies.set(SESSION_COOKIE, "t-rob")
    page = client.get(PREFIX + f"/egress/{in_review}").text
    assert "too few contributors" in page and "line 3, column &#39;admissions&#39;" in page


def test_egress_reviewer_page_highlights_flagged_cells(client: TestClient, in_review: int):
    assert [r["id"] for r in client.get(API + "/queue", headers=h("t-rita")).json()] == [in_review]
    client.cookies.set(SESSION_COOKIE, "t-rita")
    page = client.get(PREFIX + f"/review/{in_review}/file", params={"path": "admissions.csv"}).text
    flagged = re.findall(r'<td class="flag"[^>]*>([^<]*)</td>', page)
    assert flagged == ["3"]  # only the small count, not 120 or 85
    assert "The 5-9 band is a published national figure." in client.get(PREFIX + f"/review/{in_review}").text


def test_egress_two_reviewers_approve_then_release_and_members_download(client: TestClient, in_review: int):
    for reviewer in ("t-rita", "t-rudy"):
        for path in ("admissions.csv", "notes.txt"):
            vote = client.post(API + f"/requests/{in_review}/votes", headers=h(reviewer),
                               json={"path": path, "decision": "approve", "comment": "published figure"})
            assert vote.status_code == 200, vote.text
    assert client.get(API + f"/requests/{in_review}", headers=h("t-rob")).json()["status"] == "approved"
    overview = client.get(PREFIX + f"/review/{in_review}", headers=h("t-rita")).text
    assert overview.count('class="badge badge-approve">approved</span>') == 2
    assert client.post(API + f"/requests/{in_review}/release", headers=h("t-rob")).status_code == 403
    released = client.post(API + f"/requests/{in_review}/release", headers=h("t-rita"))
    assert released.status_code == 200 and released.json()["status"] == "released"
    for outsider in ("t-rita", "t-eve", "t-ada"):  # reviewers and admins do not take files home
        assert client.get(API + f"/requests/{in_review}/download", headers=h(outsider)).status_code == 403
    for member in ("t-rob", "t-ria"):
        download = client.get(API + f"/requests/{in_review}/download", headers=h(member))
        assert download.status_code == 200
        names = set(zipfile.ZipFile(io.BytesIO(download.content)).namelist())
        assert names == {"files/admissions.csv", "files/notes.txt", "release.json"}
    register = client.get(PREFIX + "/api/register").json()
    assert next(e for e in register if e["slug"] == "asthma")["released_outputs"] == 2


def test_egress_other_team_and_wrong_roles_are_refused(client: TestClient, in_review: int):
    assert client.get(API + f"/requests/{in_review}", headers=h("t-eve")).status_code == 403
    assert client.get(API + "/outbox/asthma", headers=h("t-eve")).status_code == 403
    assert client.get(API + "/outbox/asthma", headers=h("t-rita")).status_code == 403
    assert client.post(API + "/requests", headers=h("t-eve"), json={"project": "asthma"}).status_code == 403
    assert client.post(API + f"/requests/{in_review}/withdraw", headers=h("t-eve")).status_code == 403
    assert client.post(API + f"/requests/{in_review}/files", headers=h("t-ria"),
                       json={"paths": ["notes.txt"], "group": "x"}).status_code in (403, 409)
    # The author and project members may not vote; nor may someone without the hub's reviewer role.
    for token in ("t-rob", "t-ria", "t-eve"):
        vote = client.post(API + f"/requests/{in_review}/votes", headers=h(token),
                           json={"path": "notes.txt", "decision": "approve"})
        assert vote.status_code == 403
    client.cookies.set(SESSION_COOKIE, "t-eve")
    assert client.get(PREFIX + f"/egress/{in_review}").status_code == 403
    assert client.get(PREFIX + "/review").status_code == 403
    assert client.get(API + "/requests/999999", headers=h("t-rob")).status_code == 404


@pytest.mark.parametrize("path", ["../../enclave.db", "/etc/passwd", ".hidden", "a/../../x"])
def test_egress_outbox_paths_cannot_escape(client: TestClient, path: str):
    rid = client.post(API + "/requests", headers=h("t-rob"), json={"project": "asthma"}).json()["id"]
    response = client.post(API + f"/requests/{rid}/files", headers=h("t-rob"), json={"paths": [path], "group": "g"})
    assert response.status_code in (400, 404)
    assert "\n" not in response.json()["detail"]


def test_egress_reviewer_cannot_review_own_project(client: TestClient, in_review: int, world):
    from enclave.db.session import unit_of_work
    from enclave.users import set_roles, get_user
    from enclave.enums import Role
    from enclave.projects import service as projects

    with unit_of_work(world) as s:
        ada = get_user(s, "ada")
        set_roles(s, ada, "rudy", {Role.REVIEWER, Role.RESEARCHER})
        projects.add_member(s, ada, "asthma", "rudy")
    assert client.get(API + "/queue", headers=h("t-rudy")).json() == []
    client.cookies.set(SESSION_COOKIE, "t-rudy")
    assert client.get(PREFIX + f"/review/{in_review}/file", params={"path": "admissions.csv"}).status_code == 403


PNG_1PX = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def test_egress_reviewer_sees_notebook_flags_and_images_but_no_raw_download(client: TestClient, world):
    import base64
    import json

    outbox = world.workspaces_dir / "asthma" / "outbox"
    notebook = {"cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# Results"]},
        {"cell_type": "code", "metadata": {}, "execution_count": 1, "source": ["df.head()"],
         "outputs": [{"output_type": "stream", "name": "stdout", "text": ["patient 943 476 5919 admitted\n"]}]}],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (outbox / "analysis.ipynb").write_text(json.dumps(notebook))
    (outbox / "figure.png").write_bytes(base64.b64decode(PNG_1PX))
    rid = client.post(API + "/requests", headers=h("t-rob"), json={"project": "asthma"}).json()["id"]
    client.post(API + f"/requests/{rid}/files", headers=h("t-rob"),
                json={"paths": ["analysis.ipynb", "figure.png"], "group": "g", "context": "c", "controls": "c"})
    client.post(API + f"/requests/{rid}/submit", headers=h("t-rob"), json={})
    assert client.post(API + f"/requests/{rid}/submit", headers=h("t-rob"),
                       json={"exception": "checked by hand"}).json()["status"] == "in_review"
    client.cookies.set(SESSION_COOKIE, "t-rita")
    page = client.get(PREFIX + f"/review/{rid}/file", params={"path": "analysis.ipynb"})
    assert page.status_code == 200
    cells = re.findall(r'<div class="nb-cell ([^"]*)">', page.text)
    assert cells == ["", "nb-flag"]  # the checker's "cell 2" is the second cell
    assert "NHS number" in page.text
    image = client.get(PREFIX + f"/review/{rid}/file", params={"path": "figure.png"})
    # Shown from its canonical form: re-encoded, the same pixel.
    shown = re.search(r'src="data:image/png;base64,([^"]+)"', image.text)
    assert shown is not None
    from io import BytesIO

    from PIL import Image

    pixels = [Image.open(BytesIO(base64.b64decode(d))).convert("RGBA").getpixel((0, 0)) for d in (shown.group(1), PNG_1PX)]
    assert pixels[0] == pixels[1]
    # No route hands a quarantined file to the reviewer's machine before release.
    assert client.get(API + f"/requests/{rid}/download", headers=h("t-rita")).status_code == 403
    assert "content-disposition" not in image.headers
