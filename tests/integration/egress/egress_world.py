"""Egress test world: an active project with a researcher, reviewers and outbox files,
and the workflow's steps. Everything goes through the service layer, in tmp_path.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from enclave.clock import today
from enclave.config import Settings
from enclave.db.session import unit_of_work
from enclave.egress.policy import EgressEnv
from enclave.egress.quarantine import outbox_dir
from enclave.enums import Role
from enclave.projects import service as projects
from enclave.projects.lifecycle import ProjectAction
from enclave.projects.tiers import load_tiers
from enclave.users import add_user
from tests.register_support import EXAMPLE_REGISTER

SAFE_TABLE = b"region,count\nnorth,120\nsouth,85\neast,240\n"
NOTEBOOK = b'{"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# Method\\n", "Counts by region."]}], ' \
           b'"metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
# The notebook as released: its canonical form (enclave.egress.canonical), sources joined,
# a generated cell id, keys sorted. The table is canonical already.
NOTEBOOK_RELEASED = (json.dumps({"cells": [{"cell_type": "markdown", "id": "cell-1", "metadata": {},
                                            "source": "# Method\nCounts by region."}],
                                 "metadata": {}, "nbformat": 4, "nbformat_minor": 5},
                                indent=1, sort_keys=True) + "\n").encode()


@dataclass
class World:
    settings: Settings
    env: EgressEnv
    slug: str = "heart-study"

    @property
    def outbox(self) -> Path:
        return outbox_dir(self.settings, self.slug)

    def write(self, relpath: str, data: bytes) -> Path:
        path = self.outbox / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def uow(self):  # type: ignore[no-untyped-def]
        return unit_of_work(self.settings)


def build_world(settings: Settings, slug: str = "heart-study") -> World:
    """Users: admin; researchers rita (author) and max (member); reviewers ria, rob, rex;
    rhea (reviewer AND member of the project); an active project ``slug``."""
    year = today() + dt.timedelta(days=365)
    with unit_of_work(settings) as s:
        admin = add_user(s, None, "admin", {Role.ADMIN})
        for name in ("rita", "max", "outsider"):
            add_user(s, admin, name, {Role.RESEARCHER}, year)
        for name in ("ria", "rob", "rex"):
            add_user(s, admin, name, {Role.REVIEWER}, year)
        add_user(s, admin, "rhea", {Role.REVIEWER, Role.RESEARCHER}, year)
        projects.create_project(s, admin, load_tiers(settings.policies_dir), slug=slug, title="Heart study", pi="rita",
                                lay_summary="Outcomes after heart attacks.", end_date=today() + dt.timedelta(days=300),
                                register=EXAMPLE_REGISTER)
        for name in ("max", "rhea"):
            projects.add_member(s, admin, slug, name)
        projects.transition_project(s, admin, slug, ProjectAction.APPROVE)
        projects.transition_project(s, admin, slug, ProjectAction.ACTIVATE)
    world = World(settings=settings, env=EgressEnv.load(settings), slug=slug)
    world.outbox.mkdir(parents=True, exist_ok=True)
    return world


# --- steps through the service layer -------------------------------------------------------

from enclave.db.models import EgressRequest  # noqa: E402
from enclave.egress import release as release_service  # noqa: E402
from enclave.egress import review as review_service  # noqa: E402
from enclave.egress import service as egress  # noqa: E402
from enclave.enums import EgressStatus, ReviewDecision  # noqa: E402
from enclave.users import get_user  # noqa: E402

FILES = {"tables/by_region.csv": SAFE_TABLE, "analysis.ipynb": NOTEBOOK}
RELEASED = {"tables/by_region.csv": SAFE_TABLE, "analysis.ipynb": NOTEBOOK_RELEASED}


def draft(world: World, files: dict[str, bytes] | None = None, author: str = "rita", group: str = "main",
          context: str = "Counts of patients by region, all adults 2020-2024",
          controls: str = "cells under 10 suppressed; counts rounded to 5") -> int:
    files = FILES if files is None else files
    for relpath, data in files.items():
        world.write(relpath, data)
    with world.uow() as s:
        actor = get_user(s, author)
        request = egress.create_request(s, actor, world.env, world.slug, "Regional counts")
        if files:
            egress.add_files(s, actor, world.env, request.id, list(files), group, context, controls)
        return request.id


def submit(world: World, rid: int, author: str = "rita", exception: str | None = None) -> EgressStatus:
    with world.uow() as s:
        return egress.submit_request(s, get_user(s, author), world.env, rid, exception).status


def vote_all(world: World, rid: int, reviewer: str, decision: ReviewDecision = ReviewDecision.APPROVE,
             comment: str = "checked: safe") -> EgressStatus:
    with world.uow() as s:
        paths = [f.relpath for f in egress.get_request(s, rid).files]
    for path in paths:
        with world.uow() as s:
            review_service.vote(s, get_user(s, reviewer), world.env, rid, path, decision, comment)
    return status_of(world, rid)


def release(world: World, rid: int, actor: str = "ria") -> EgressRequest:
    with world.uow() as s:
        return release_service.release_request(s, get_user(s, actor), world.env, rid)


def status_of(world: World, rid: int) -> EgressStatus:
    with world.uow() as s:
        return egress.get_request(s, rid).status


def to_state(world: World, state: EgressStatus) -> int:
    """A request in ``state``, reached through the real steps."""
    rid = draft(world)
    if state is EgressStatus.DRAFT:
        return rid
    if state is EgressStatus.WITHDRAWN:
        with world.uow() as s:
            egress.withdraw_request(s, get_user(s, "rita"), world.env, rid)
        return rid
    submit(world, rid)
    if state is EgressStatus.IN_REVIEW:
        return rid
    decision = {EgressStatus.CHANGES_REQUESTED: ReviewDecision.REQUEST_CHANGES,
                EgressStatus.REJECTED: ReviewDecision.REJECT}.get(state, ReviewDecision.APPROVE)
    vote_all(world, rid, "ria", decision)
    vote_all(world, rid, "rob", decision)
    if state is EgressStatus.RELEASED:
        release(world, rid)
    assert status_of(world, rid) is state
    return rid
