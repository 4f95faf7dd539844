"""An enclave with one synthetic dataset granted to two projects, built once per session.

Researchers' tables are made with enclave.safe over the project's real view, as a notebook
would (``ENCLAVE_DATA_ROOT`` points at a folder holding the view as ``demo``). The replay
runs the container's own code (``enclave.safe.replay.recompute``) in this process over the
same views; ``tests/docker/egress/test_differencing_replay.py`` runs it in a real container.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from enclave.catalog import service as catalog
from enclave.clock import today
from enclave.config import Settings
from enclave.db.models import EgressRequest
from enclave.db.session import unit_of_work, upgrade
from enclave.demo.synthetic import generate, write_csv
from enclave.egress import replay
from enclave.egress import service as egress
from enclave.egress.policy import EgressEnv
from enclave.egress.quarantine import outbox_dir
from enclave.enums import Role
from enclave.projects import service as projects
from enclave.projects.lifecycle import ProjectAction
from enclave.projects.tiers import load_tiers
from enclave.safe.replay import ReplayInput, recompute
from enclave.users import add_user, get_user
from tests.register_support import EXAMPLE_REGISTER

REPO = Path(__file__).resolve().parents[3]
PROJECTS = {"cardio": "alice", "renal": "bob"}


class LocalReplayer:
    """The replay's code run in this process over the project's views (no container)."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.payloads: list[bytes] = []  # what a container would have been given

    def verify(self, submitted, sidecar, name, views, disclosure, project, patient_columns=None):  # type: ignore[no-untyped-def]
        return replay.verify(submitted, sidecar, name, views, disclosure, project, self.run, 64 << 20, patient_columns)

    def run(self, payload: bytes, views: list[Any]) -> bytes:
        self.payloads.append(payload)
        root = self.scratch / uuid.uuid4().hex
        root.mkdir(parents=True)
        for view in views:
            (root / view.dataset).symlink_to(view.path)
        return recompute(ReplayInput.model_validate_json(payload), root).model_dump_json().encode()


@dataclass
class Enclave:
    settings: Settings
    env: EgressEnv
    data_roots: dict[str, Path]
    monkeypatch: pytest.MonkeyPatch

    def outbox(self, slug: str) -> Path:
        path = outbox_dir(self.settings, slug)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def as_project(self, slug: str) -> None:
        """Make enclave.safe read ``slug``'s view, as that project's server would."""
        self.monkeypatch.setenv("ENCLAVE_DATA_ROOT", str(self.data_roots[slug]))

    def save(self, slug: str, name: str, result: Any) -> Path:
        return result.save(self.outbox(slug) / name)

    def submit(self, slug: str, *relpaths: str, env: EgressEnv | None = None) -> tuple[int, dict[str, dict]]:
        """Create and submit a request (with a justification, so it reaches review even when
        a check fails); its files' check results."""
        env = env or self.env
        author = PROJECTS[slug]
        with unit_of_work(self.settings) as s:
            actor = get_user(s, author)
            request = egress.create_request(s, actor, env, slug, "tables")
            egress.add_files(s, actor, env, request.id, list(relpaths), "tables", context="cohort tables",
                             controls="suppression by enclave.safe")
            rid = request.id
        with unit_of_work(self.settings) as s:
            egress.submit_request(s, get_user(s, author), env, rid, exception="compared by hand if need be")
        with unit_of_work(self.settings) as s:
            request = s.get(EgressRequest, rid)
            return rid, {f.relpath: dict(f.check_json or {}) for f in request.files}


def differencing(result: dict) -> dict | None:
    found = [f for f in result["findings"] if f["rule"] == "differencing"]
    assert len(found) <= 1
    return found[0] if found else None


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("differencing")
    home = root / "home"
    settings = Settings(home=home, db_url=f"sqlite:///{home / 'enclave.db'}", policies_dir=REPO / "policies")
    upgrade(settings)
    year = today() + dt.timedelta(days=365)
    with unit_of_work(settings) as s:
        admin = add_user(s, None, "admin", {Role.ADMIN})
        for slug, pi in PROJECTS.items():
            add_user(s, admin, pi, {Role.RESEARCHER}, year)
            projects.create_project(s, admin, load_tiers(settings.policies_dir), slug=slug, title=f"Project {slug}",
                                    pi=pi, lay_summary="Outcomes.", end_date=today() + dt.timedelta(days=300),
                                    register=EXAMPLE_REGISTER)
            projects.transition_project(s, admin, slug, ProjectAction.APPROVE)
            projects.transition_project(s, admin, slug, ProjectAction.ACTIVATE)
        for name in ("rita", "rex"):
            add_user(s, admin, name, {Role.REVIEWER}, year)
    # A fixed enclave-wide key makes each run's record keys, and so the noise, the same.
    keys = home / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    (keys / "differencing.key").write_bytes(bytes(range(32)))
    (keys / "differencing.key").chmod(0o600)
    source = root / "source"
    write_csv(generate(2000, seed=5), source)
    with unit_of_work(settings) as s:
        catalog.ingest_dataset(s, get_user(s, "admin"), settings, source, "demo", description="synthetic")
    for slug in PROJECTS:
        with unit_of_work(settings) as s:
            catalog.add_grant(s, get_user(s, "admin"), settings, slug, "demo", expires=today() + dt.timedelta(days=30))
    for slug in PROJECTS:
        with unit_of_work(settings) as s:
            [(name, path)] = catalog.active_views(s, projects.get_project(s, slug))
        data = root / f"data-{slug}"
        data.mkdir()
        (data / name).symlink_to(path)
    return root


@pytest.fixture
def enclave(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Enclave:
    home = tmp_path / "home"
    shutil.copytree(template / "home", home, symlinks=True)
    monkeypatch.setenv("ENCLAVE_HOME", str(home))
    monkeypatch.setenv("ENCLAVE_POLICIES", str(REPO / "policies"))
    monkeypatch.delenv("ENCLAVE_DB_URL", raising=False)
    monkeypatch.setenv("ENCLAVE_DATASETS", json.dumps({"demo": "1"}))
    settings = Settings.from_env()
    env = replace(EgressEnv.load(settings), replayer=LocalReplayer(tmp_path / "replay"))
    world = Enclave(settings, env, {slug: template / f"data-{slug}" for slug in PROJECTS}, monkeypatch)
    world.as_project("cardio")
    return world
