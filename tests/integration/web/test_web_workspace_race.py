"""The job-submission race through the web API: a member swaps a workspace folder with a
link to another project's folder in a loop (renameat2 RENAME_EXCHANGE) while submitting
and listing. No answer is a 500 and nothing of the other project is ever read or listed."""

from __future__ import annotations

import hashlib
import json

from fastapi.testclient import TestClient

from enclave.config import Settings
from enclave.db.models import JobRun
from enclave.db.session import unit_of_work
from tests.integration.web.jobs_steps import API, h
from tests.integration.web.world import NOTEBOOK, PREFIX
from tests.link_race import swapping

TRIES = 300
THEIRS = json.dumps({"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                                "source": ["secret = 'diabetes'"]}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def test_web_jobs_submit_race_never_answers_500_nor_reads_another_project(client: TestClient, world: Settings):
    own, other = world.workspaces_dir / "asthma", world.workspaces_dir / "diabetes"
    (other / "notebooks" / "analysis.ipynb").write_text(THEIRS)
    (other / "notebooks" / "diabetes-secret.ipynb").write_text(THEIRS)
    (own / "evil").symlink_to(other / "notebooks")
    statuses: dict[int, int] = {}
    run_ids: list[int] = []
    listed: set[str] = set()
    with swapping(own / "notebooks", own / "evil"):
        for i in range(TRIES):
            response = client.post(API, headers=h("t-rob"),
                                   json={"project": "asthma", "notebook": "notebooks/analysis.ipynb"})
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 201:
                run_ids.append(response.json()["id"])
            else:
                assert response.status_code == 400, response.text
            if i % 10 == 0:
                shown = client.get(API + "/notebooks/asthma", headers=h("t-rob"))
                assert shown.status_code == 200, shown.text
                listed.update(shown.json())
    assert set(statuses) <= {201, 400} and sum(statuses.values()) == TRIES, statuses
    assert statuses.get(400, 0) > 0 and statuses.get(201, 0) > 0, statuses
    with unit_of_work(world) as session:
        digests = {session.get(JobRun, run_id).notebook_sha256 for run_id in run_ids}
    assert digests == {hashlib.sha256(NOTEBOOK.encode()).hexdigest()}, "a stored notebook is not the project's own"
    # The own folder shows under either name while swapped; the other project's never does.
    assert listed and not any("diabetes-secret" in path for path in listed), listed


def test_web_outbox_listing_race_never_answers_500_nor_lists_another_project(client: TestClient, world: Settings):
    own, other = world.workspaces_dir / "asthma", world.workspaces_dir / "diabetes"
    (other / "outbox").mkdir(exist_ok=True)
    (other / "outbox" / "diabetes-secret.csv").write_text("id,value\n1,2\n")
    (own / "evil").symlink_to(other / "outbox")
    statuses: dict[int, int] = {}
    with swapping(own / "outbox", own / "evil"):
        for _ in range(TRIES // 3):
            response = client.get(PREFIX + "/api/egress/outbox/asthma", headers=h("t-rob"))
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code in (200, 400), response.text
            assert "diabetes-secret" not in response.text
    assert statuses.get(200, 0) > 0, statuses


def test_web_listings_leave_out_linked_folders_and_files(client: TestClient, world: Settings):
    own, other = world.workspaces_dir / "asthma", world.workspaces_dir / "diabetes"
    (other / "outbox").mkdir(exist_ok=True)
    (other / "outbox" / "diabetes-secret.csv").write_text("id,value\n1,2\n")
    (other / "notebooks" / "diabetes-secret.ipynb").write_text(THEIRS)
    (own / "outbox" / "linked-folder").symlink_to(other / "outbox")
    (own / "outbox" / "linked.csv").symlink_to(other / "outbox" / "diabetes-secret.csv")
    (own / "notebooks" / "linked-folder").symlink_to(other / "notebooks")
    (own / "notebooks" / "linked.ipynb").symlink_to(other / "notebooks" / "diabetes-secret.ipynb")
    outbox = client.get(PREFIX + "/api/egress/outbox/asthma", headers=h("t-rob"))
    notebooks = client.get(API + "/notebooks/asthma", headers=h("t-rob"))
    assert outbox.status_code == 200 and notebooks.status_code == 200
    assert {f["path"] for f in outbox.json()} == {"admissions.csv", "notes.txt"}
    assert notebooks.json() == ["notebooks/analysis.ipynb"]
