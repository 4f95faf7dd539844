"""The inbox badge counts in SQL (``inbox_counts``) what the inbox builds request by request:
for every person, at every step of a world that passes through every state (votes on some
files and then all, a resubmitted round, a download, a member leaving the project), the
counts are the inbox's, and each SQL form of an access rule agrees with its check on every
request. On SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import exists, select

from egress_world import World, draft, submit, to_state, vote_all
from enclave.db.models import EgressRequest
from enclave.egress import access, inbox
from enclave.egress import release as release_service
from enclave.egress import review as review_service
from enclave.egress.votes import has_completed_review, where_completed_review
from enclave.enums import EgressStatus as S
from enclave.enums import ReviewDecision as D
from enclave.projects import service as projects
from enclave.users import get_user

PEOPLE = ["rita", "max", "ria", "rob", "rex", "rhea", "admin", "outsider"]
RULES = [(access.where_follow, access.can_follow), (access.where_submit, access.can_submit),
         (access.where_review, access.can_review), (access.where_release, access.can_release)]


def _agree(world: World, step: str) -> dict[str, int]:
    """Each person's SQL counts equal their inbox's; returns the totals by person."""
    totals = {}
    with world.uow() as s:
        requests = s.scalars(select(EgressRequest).order_by(EgressRequest.id)).all()
        for name in PEOPLE:
            actor = get_user(s, name)
            built = inbox.inbox(s, actor)
            assert inbox.inbox_counts(s, actor) == built.counts, (step, name)
            totals[name] = inbox.inbox_total(s, actor)
            for request in requests:
                def holds(where) -> bool:  # type: ignore[no-untyped-def]
                    return bool(s.scalar(select(exists().where(EgressRequest.id == request.id, where))))

                for where, can in RULES:
                    assert holds(where(actor)) == can(actor, request), (step, name, request.id, where.__name__)
                assert holds(where_completed_review(actor)) == has_completed_review(s, actor, request), (
                    step, name, request.id)
    return totals


def _scenario(world: World, tmp_path: Path) -> None:
    returned = to_state(world, S.CHANGES_REQUESTED)
    in_review = to_state(world, S.IN_REVIEW)
    approved = to_state(world, S.APPROVED)
    released = to_state(world, S.RELEASED)
    to_state(world, S.WITHDRAWN)
    draft(world)
    by_max = draft(world, author="max")
    submit(world, by_max, author="max")
    totals = _agree(world, "every state")
    assert totals["ria"] > 0 and totals["rita"] > 0 and totals["outsider"] == 0

    # ria votes on one file of two: it still waits on her; then on the other: it does not.
    with world.uow() as s:
        first = sorted(f.relpath for f in s.get(EgressRequest, in_review).files)[0]
    with world.uow() as s:
        review_service.vote(s, get_user(s, "ria"), world.env, in_review, first, D.APPROVE, "checked: safe")
    assert _agree(world, "one file voted")["ria"] == totals["ria"]
    vote_all(world, in_review, "ria")
    assert _agree(world, "every file voted")["ria"] == totals["ria"] - 1

    # A resubmitted request starts a new round: earlier votes no longer count.
    submit(world, returned)
    _agree(world, "resubmitted")
    with world.uow() as s:
        release_service.download_release(s, get_user(s, "max"), world.env, released, tmp_path / "got")
    _agree(world, "downloaded")
    with world.uow() as s:
        release_service.release_request(s, get_user(s, "rex"), world.env, approved)
    _agree(world, "released")
    # rhea leaves the project: she is independent now, so its requests wait on her review.
    with world.uow() as s:
        projects.remove_member(s, get_user(s, "admin"), world.slug, "rhea")
    assert _agree(world, "member left")["rhea"] > 0


def test_inbox_counts_are_the_inbox_in_every_state_on_sqlite(world: World, tmp_path: Path) -> None:
    _scenario(world, tmp_path)


@pytest.mark.postgres
def test_inbox_counts_are_the_inbox_in_every_state_on_postgresql(pg_world: World, tmp_path: Path) -> None:
    _scenario(pg_world, tmp_path)
