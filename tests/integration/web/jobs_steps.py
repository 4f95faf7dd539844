"""Job steps for the web tests: submit through the API, and record what the worker would
(the container itself is exercised in tests/docker)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from enclave.config import Settings
from enclave.db.session import unit_of_work
from enclave.jobs import service as jobs
from enclave.web.auth import SESSION_COOKIE
from tests.integration.web.world import PREFIX

API = PREFIX + "/api/jobs"
DIGEST = "sha256:" + "ab" * 32


def h(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


def submit(client: TestClient, token: str = "t-rob", project: str = "asthma", **params) -> int:
    response = client.post(API, headers=h(token), json={"project": project, "notebook": "notebooks/analysis.ipynb",
                                                         "parameters": params})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def work(settings: Settings, run_id: int, outputs: dict[str, str] | None = None, log: str = "",
         comparison: dict | None = None) -> None:
    """What the worker records for a run (the container itself is tested in tests/docker)."""
    with unit_of_work(settings) as s:
        run = jobs.claim_next(s, 5, run_id)
        jobs.start_run(s, run, image="enclave-notebook:latest", image_digest=DIGEST, container_name=f"job-{run_id}",
                       views=[{"dataset": "hospital-episodes", "version": 1, "version_sha256": "cd" * 32,
                               "files": {"episodes.parquet": "ef" * 32}, "sha256": "01" * 32}],
                       limits={"timeout_seconds": 600, "mem_limit": "1g", "network": "none"})
    path = jobs.log_path(settings, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(log)
    with unit_of_work(settings) as s:
        jobs.finish_run(s, s.get(jobs.JobRun, run_id), succeeded=True, exit_code=0,
                        outputs=outputs or {"table.csv": "12" * 32}, comparison=comparison)


def signed_in(client: TestClient, token: str) -> TestClient:
    client.cookies.set(SESSION_COOKIE, token)
    return client


def xsrf_of(client: TestClient, page: str) -> str:
    found = re.search(r'name="_xsrf" value="([0-9a-f]+)"', client.get(PREFIX + page).text)
    assert found, "page has no XSRF field"
    return found.group(1)
