"""Egress requests whose tables carry reproduced evidence, made through the service layer.

The researcher's tables are built with ``enclave.safe`` over the project's real view (as a
notebook would, with ``ENCLAVE_DATA_ROOT`` pointing at it). On submit, the evidence is
re-run by the replay's own code (``enclave.safe.replay.recompute``) in this process: the
container around it (its isolation, limits and failure modes) is what
``tests/docker/egress/test_evidence_replay.py`` proves on a real engine; these tests are
about what reviewers see of the result.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
from sqlalchemy import select

from enclave.catalog import service as catalog
from enclave.config import Settings
from enclave.db.models import Grant, User
from enclave.db.session import unit_of_work
from enclave.egress import service as egress
from enclave.egress.policy import EgressEnv, EvidencePolicy
from enclave.egress.quarantine import outbox_dir
from enclave.egress.replay import Replayer, ViewIdentity
from enclave.projects.service import get_project
from enclave.safe import crosstab, query
from enclave.safe.replay import ReplayInput, recompute

SLUG = "asthma"
DATASET = "hospital-episodes"
API = "/services/enclave/api/egress"


@dataclasses.dataclass
class InProcessReplayer(Replayer):
    """Runs the replay's code here, over links to the views, instead of in a container."""

    def run(self, payload: bytes, views: list[ViewIdentity]) -> bytes:
        with tempfile.TemporaryDirectory() as root:
            for view in views:
                (Path(root) / view.dataset).symlink_to(view.path)
            return recompute(ReplayInput.model_validate_json(payload), Path(root)).model_dump_json().encode()


def env_with_replay(settings: Settings) -> EgressEnv:
    env = EgressEnv.load(settings)
    return dataclasses.replace(env, replayer=InProcessReplayer(None, EvidencePolicy(), None))  # type: ignore[arg-type]


@contextmanager
def notebook_session(settings: Settings, monkeypatch) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """What a workspace announces: the view mounted under the data root, its dataset version."""
    with unit_of_work(settings) as s:
        [(name, path)] = catalog.active_views(s, get_project(s, SLUG))
        grant = s.scalars(select(Grant).where(Grant.project_id == get_project(s, SLUG).id)).first()
        version = grant.dataset_version.version
    with tempfile.TemporaryDirectory() as root:
        (Path(root) / name).symlink_to(path)
        monkeypatch.setenv("ENCLAVE_DATA_ROOT", root)
        monkeypatch.setenv("ENCLAVE_DATASETS", json.dumps({name: str(version)}))
        yield


def save_tables(settings: Settings, monkeypatch, names: dict[str, dict]) -> None:  # type: ignore[no-untyped-def]
    """Save crosstabs of the patients (name -> crosstab keyword arguments) to the outbox."""
    env = EgressEnv.load(settings)
    with notebook_session(settings, monkeypatch):
        for name, kwargs in names.items():
            data = query(DATASET, "patients")
            if kwargs.pop("young", False):
                data = data.filter(pl.col("deprivation_decile") <= 5)
            crosstab(data, policy=env.disclosure, **kwargs).save(outbox_dir(settings, SLUG) / name)


def submit(settings: Settings, author: str, title: str, paths: list[str], context: str, controls: str,
           exception: str | None = None) -> int:
    """A request of ``author`` with ``paths`` in one group, submitted (evidence re-run)."""
    env = env_with_replay(settings)
    with unit_of_work(settings) as s:
        actor = s.scalars(select(User).where(User.name == author)).one()
        request = egress.create_request(s, actor, env, SLUG, title)
        egress.add_files(s, actor, env, request.id, paths, "tables", context=context, controls=controls)
        request_id = request.id
    with unit_of_work(settings) as s:
        actor = s.scalars(select(User).where(User.name == author)).one()
        egress.submit_request(s, actor, env, request_id, exception)
    return request_id


def approve_and_release(client, request_id: int, paths: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Two reviewers approve every file through the API; one releases the request."""
    for token in ("t-rita", "t-rudy"):
        for path in paths:
            vote = client.post(f"{API}/requests/{request_id}/votes", headers={"Authorization": f"token {token}"},
                               json={"path": path, "decision": "approve", "comment": "safe as saved"})
            assert vote.status_code == 200, vote.text
    released = client.post(f"{API}/requests/{request_id}/release", headers={"Authorization": "token t-rita"})
    assert released.status_code == 200, released.text
