"""Fixtures for job tests: an active project with a synthetic dataset view, its
workspace holding the repository's notebooks, and a runner on the real engine."""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from enclave.config import Settings
from enclave.db.models import JobRun
from enclave.db.session import unit_of_work
from enclave.demo.synthetic import generate
from enclave.enums import Role
from enclave.hub.access import prepare_workspace
from enclave.jobs import service
from enclave.jobs.runner import JobView, Runner
from enclave.sandbox import ContainerPolicy
from enclave.users import get_user
from tests.engine_support import write_notebook

REPO = Path(__file__).resolve().parents[3]
DATASET = "demo"


def write_view(settings: Settings, slug: str, version: int, patients: int, seed: int) -> Path:
    """A project view as the catalogue writes one: a read-only directory of Parquet tables."""
    view = settings.views_dir / slug / f"{DATASET}-v{version}"
    view.mkdir(parents=True)
    for name, frame in generate(patients, seed).tables.items():
        frame.write_parquet(view / f"{name}.parquet")
        (view / f"{name}.parquet").chmod(0o444)
    view.chmod(0o555)
    return view


@dataclass
class JobEnv:
    settings: Settings
    runner: Runner
    versions: dict[str, tuple[int, Path]]  # project slug -> (version, view path)

    def set_version(self, slug: str, version: int, patients: int, seed: int) -> None:
        self.versions[slug] = (version, write_view(self.settings, slug, version, patients, seed))

    def workspace(self, slug: str) -> Path:
        return self.settings.workspaces_dir / slug

    def write_notebook(self, slug: str, name: str, *cells: str) -> str:
        """A notebook of code cells in the workspace; returns its workspace path."""
        write_notebook(self.workspace(slug) / "notebooks" / name, cells, owner=None)
        return f"notebooks/{name}"

    def submit(self, user: str, slug: str, notebook: str, **params) -> int:
        with unit_of_work(self.settings) as session:
            return service.submit_job(session, get_user(session, user), self.settings, slug, notebook, params).id

    def rerun(self, user: str, run_id: int) -> int:
        with unit_of_work(self.settings) as session:
            return service.rerun_job(session, get_user(session, user), self.settings, run_id).id

    def run(self, run_id: int) -> service.RunProvenance:
        assert self.runner.run_next(run_id) == run_id
        return self.provenance(run_id)

    def provenance(self, run_id: int) -> service.RunProvenance:
        with unit_of_work(self.settings) as session:
            return service.get_run_provenance(session, get_user(session, "root-admin"), run_id)

    def container_name(self, run_id: int) -> str:
        with unit_of_work(self.settings) as session:
            return session.get(JobRun, run_id).container_name

    def outputs(self, run_id: int) -> Path:
        return self.workspace(self.provenance(run_id).project) / "outbox" / "jobs" / str(run_id)


@pytest.fixture
def jobs(settings: Settings, factory, session, client, image: str) -> JobEnv:
    """Projects 'cohort' (alice, bob) and 'other' (carol), active, each with a view of the
    synthetic dataset and the repository's notebooks in its workspace; a reviewer rita."""
    factory.project("cohort", "alice", "active", members=("bob",))
    factory.project("other", "carol", "active")
    factory.user("rita", Role.REVIEWER)
    session.commit()
    for slug in ("cohort", "other"):
        root = prepare_workspace(settings, slug)
        shutil.copytree(REPO / "notebooks", root / "notebooks")
        for path in [root / "notebooks", *(root / "notebooks").iterdir()]:
            os.chown(path, 1000, 100)
    policy = ContainerPolicy(image=image, mem_limit="1g", cpu_limit=1.0, job_mem_limit="1g", job_max_concurrent=2)
    env = JobEnv(settings, Runner(settings, policy, client, container_prefix=f"enclave-test-job-{uuid.uuid4().hex[:6]}-"), {})
    env.set_version("cohort", 1, patients=400, seed=1)
    env.set_version("other", 1, patients=50, seed=9)
    env.runner.views = lambda _session, project: [
        JobView(DATASET, env.versions[project.slug][1], env.versions[project.slug][0], f"sha-{project.slug}-v{env.versions[project.slug][0]}")
    ]
    return env
