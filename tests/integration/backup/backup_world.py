"""A busy enclave to back up: a dataset version, a project with a view, released and
pending egress requests, a job record running, workspace files. Built through the
service layer in tmp_path (paths in the database point into this very home)."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

from sqlalchemy import select

from enclave.catalog import service as catalog
from enclave.clock import today
from enclave.config import Settings
from enclave.db.models import (AuditEvent, DatasetVersion, EgressRequest, EgressReview, Grant, JobRun, Project,
                               User)
from enclave.db.session import unit_of_work, upgrade
from enclave.demo.synthetic import generate, write_csv
from enclave.jobs import service as jobs
from enclave.users import get_user

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "egress"))
from egress_world import World, build_world, draft, release, submit, to_state, vote_all  # noqa: E402

PASSPHRASE = "correct horse battery staple"
NOTEBOOK = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


def make_enclave(home: Path, policies: Path, db_url: str | None = None) -> World:
    settings = Settings(home=home, db_url=db_url or f"sqlite:///{home / 'enclave.db'}", policies_dir=policies)
    upgrade(settings)
    world = build_world(settings)
    source = home.parent / "source-data"
    write_csv(generate(60, seed=3), source)
    with unit_of_work(settings) as s:
        admin = get_user(s, "admin")
        catalog.ingest_dataset(s, admin, settings, source, "hospital")
    with unit_of_work(settings) as s:
        catalog.add_grant(s, get_user(s, "admin"), settings, world.slug, "hospital",
                          expires=today() + dt.timedelta(days=100))
    from enclave.enums import EgressStatus
    for _ in range(2):
        to_state(world, EgressStatus.RELEASED)
    to_state(world, EgressStatus.IN_REVIEW)
    world.write("notes/big.bin", os.urandom(300_000))
    (world.outbox.parent / "analysis.ipynb").write_bytes(NOTEBOOK)
    with unit_of_work(settings) as s:
        run = jobs.submit_job(s, get_user(s, "rita"), settings, world.slug, "analysis.ipynb")
    with unit_of_work(settings) as s:
        claimed = jobs.claim_next(s, concurrency=4)
        assert claimed is not None
        jobs.start_run(s, claimed, image="enclave-notebook:test", image_digest="sha256:" + "0" * 64,
                       container_name=f"job-{claimed.id}", views=[], limits={})
    log = jobs.log_path(settings, run.id)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("cell 1 ran\n")
    return world


def state_of(settings: Settings) -> dict[str, list]:
    """Everything a restore must keep, without ids of the store or paths of the home."""
    with unit_of_work(settings) as s:
        return {
            "users": sorted((u.name, sorted(u.roles)) for u in s.scalars(select(User))),
            "projects": sorted((p.slug, p.status.value) for p in s.scalars(select(Project))),
            "requests": sorted((r.id, r.status.value, r.title, [(f.relpath, f.sha256) for f in r.files])
                               for r in s.scalars(select(EgressRequest))),
            "votes": sorted((v.request_id, v.file_id, v.reviewer.name, v.decision.value, v.round)
                            for v in s.scalars(select(EgressReview))),
            "jobs": sorted((j.id, j.status.value, j.notebook_sha256) for j in s.scalars(select(JobRun))),
            "grants": sorted((g.id, g.project.slug, g.dataset_version.sha256, g.expires_at.isoformat(),
                              g.view_path is not None) for g in s.scalars(select(Grant))),
            "versions": sorted((v.dataset.name, v.version, v.sha256) for v in s.scalars(select(DatasetVersion))),
            "audit": [(e.seq, e.hash) for e in s.scalars(select(AuditEvent).order_by(AuditEvent.seq))],
        }


__all__ = ["World", "draft", "release", "submit", "to_state", "vote_all", "make_enclave", "state_of", "PASSPHRASE"]
