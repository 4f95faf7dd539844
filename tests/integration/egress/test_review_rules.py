"""Who may do what in which state, and the rules of independent review."""

from __future__ import annotations

import pytest

from egress_world import SAFE_TABLE, World, draft, status_of, submit, to_state, vote_all
from enclave.db.models import EgressRequest
from enclave.egress import release as release_service
from enclave.egress import queues, review
from enclave.egress import service as egress
from enclave.egress.schemas import request_detail
from enclave.egress.workflow import TRANSITIONS, Owner
from enclave.enums import EgressStatus as S
from enclave.enums import ReviewDecision as D
from enclave.errors import Conflict, EnclaveError, InvalidInput, InvalidTransition, PermissionDenied
from enclave.users import get_user

OBSERVABLE = [S.DRAFT, S.IN_REVIEW, S.CHANGES_REQUESTED, S.APPROVED, S.REJECTED, S.RELEASED, S.WITHDRAWN]
ACTORS = {"rita": "author", "max": "member", "ria": "reviewer", "admin": "admin"}


def _submit(world: World, rid: int, actor: str) -> None:
    with world.uow() as s:
        egress.submit_request(s, get_user(s, actor), world.env, rid)


def _withdraw(world: World, rid: int, actor: str) -> None:
    with world.uow() as s:
        egress.withdraw_request(s, get_user(s, actor), world.env, rid)


def _vote(world: World, rid: int, actor: str) -> None:
    with world.uow() as s:
        review.vote(s, get_user(s, actor), world.env, rid, "analysis.ipynb", D.APPROVE, "fine")


def _release(world: World, rid: int, actor: str) -> None:
    with world.uow() as s:
        release_service.release_request(s, get_user(s, actor), world.env, rid)


ACTIONS = {"submit": _submit, "withdraw": _withdraw, "vote": _vote, "release": _release}


def _sources(by: Owner, target: S | None = None) -> set[S]:
    return {t.source for t in TRANSITIONS if t.by is by and (target is None or t.target is target)}


# Derived from the transition table: which action each actor may take in which state.
EXPECTED = {
    "submit": {"author": _sources(Owner.RESEARCHER, S.SUBMITTED)},
    "withdraw": {"author": _sources(Owner.RESEARCHER, S.WITHDRAWN)},
    "vote": {"reviewer": _sources(Owner.REVIEWER)},
    # The release is the system's step, triggered by an independent reviewer or an admin.
    "release": {"reviewer": _sources(Owner.SYSTEM, S.RELEASED), "admin": _sources(Owner.SYSTEM, S.RELEASED)},
}


@pytest.mark.parametrize("actor", list(ACTORS))
@pytest.mark.parametrize("action", list(ACTIONS))
@pytest.mark.parametrize("state", OBSERVABLE, ids=str)
def test_egress_every_action_in_every_state_by_every_role(world: World, state: S, action: str, actor: str) -> None:
    rid = to_state(world, state)
    allowed = state in EXPECTED[action].get(ACTORS[actor], set())
    if allowed:
        ACTIONS[action](world, rid, actor)
        assert status_of(world, rid) is not state or action == "vote"
    else:
        with pytest.raises((InvalidTransition, PermissionDenied)):
            ACTIONS[action](world, rid, actor)
        assert status_of(world, rid) is state


def test_review_self_and_same_project_review_refused(world: World) -> None:
    # rhea is a reviewer AND a member of the project; she also authors a request.
    rid = to_state(world, S.IN_REVIEW)
    with world.uow() as s, pytest.raises(PermissionDenied, match="rhea may not review .* member of project heart-study"):
        review.vote(s, get_user(s, "rhea"), world.env, rid, "analysis.ipynb", D.APPROVE, "ok")
    own = draft(world, author="rhea")
    submit(world, own, author="rhea")
    with world.uow() as s, pytest.raises(PermissionDenied, match="rhea may not review"):
        review.vote(s, get_user(s, "rhea"), world.env, own, "analysis.ipynb", D.APPROVE, "ok")
    with world.uow() as s, pytest.raises(PermissionDenied, match="needs the reviewer role"):
        review.vote(s, get_user(s, "outsider"), world.env, rid, "analysis.ipynb", D.APPROVE, "ok")
    assert status_of(world, rid) is S.IN_REVIEW


def test_review_votes_are_independent_until_own_review_is_complete(world: World) -> None:
    rid = to_state(world, S.IN_REVIEW)
    vote_all(world, rid, "rob", D.APPROVE, "rob thinks it is safe")
    with world.uow() as s:
        before = request_detail(s, get_user(s, "ria"), world.env, rid)
        author_view = request_detail(s, get_user(s, "rita"), world.env, rid)
    assert all(f.votes == [] and f.hidden_votes == 1 and f.outcome is None for f in before.file_list)
    assert all(f.votes == [] for f in author_view.file_list)
    # Half-way through her own review, ria still sees only her own vote.
    with world.uow() as s:
        review.vote(s, get_user(s, "ria"), world.env, rid, "analysis.ipynb", D.APPROVE, "ria: ok")
        partial = request_detail(s, get_user(s, "ria"), world.env, rid)
    assert all({v.reviewer for v in f.votes} <= {"ria"} for f in partial.file_list)
    with world.uow() as s:
        review.vote(s, get_user(s, "ria"), world.env, rid, "tables/by_region.csv", D.APPROVE, "ria: ok")
        after = request_detail(s, get_user(s, "ria"), world.env, rid)
    assert all({v.reviewer for v in f.votes} == {"ria", "rob"} for f in after.file_list)
    assert after.status is S.APPROVED


def test_review_comment_rules_and_vote_retry(world: World) -> None:
    # The real checker fails the small cell and passes the safe table.
    failed, passed = "small.csv", "tables/by_region.csv"
    rid = draft(world, files={failed: b"region,count\nnorth,3\nsouth,85\n", passed: SAFE_TABLE})
    assert submit(world, rid, exception="north counts hospitals") is S.IN_REVIEW
    with world.uow() as s, pytest.raises(InvalidInput, match="failed the automated checks: say why it is safe"):
        review.vote(s, get_user(s, "ria"), world.env, rid, failed, D.APPROVE, "")
    with world.uow() as s, pytest.raises(InvalidInput, match="passed the automated checks: say why it is disclosive"):
        review.vote(s, get_user(s, "ria"), world.env, rid, passed, D.REJECT, "  ")
    with world.uow() as s:
        first = review.vote(s, get_user(s, "ria"), world.env, rid, passed, D.APPROVE, "").id
    with world.uow() as s:  # the same vote again (a retry) is not a duplicate
        assert review.vote(s, get_user(s, "ria"), world.env, rid, passed, D.APPROVE, "").id == first
    with world.uow() as s, pytest.raises(Conflict, match="already voted approve"):
        review.vote(s, get_user(s, "ria"), world.env, rid, passed, D.REJECT, "changed my mind")


def test_review_disagreement_needs_a_further_reviewer(world: World) -> None:
    rid = to_state(world, S.IN_REVIEW)
    vote_all(world, rid, "ria", D.APPROVE)
    assert vote_all(world, rid, "rob", D.REJECT, "too small cells") is S.IN_REVIEW
    assert vote_all(world, rid, "rex", D.APPROVE, "cells are all over 10") is S.APPROVED


def test_review_request_changes_then_resubmit_resets_changed_files(world: World) -> None:
    rid = to_state(world, S.IN_REVIEW)
    with world.uow() as s:
        for reviewer in ("ria", "rob"):
            review.vote(s, get_user(s, reviewer), world.env, rid, "analysis.ipynb", D.APPROVE, "ok")
            review.vote(s, get_user(s, reviewer), world.env, rid, "tables/by_region.csv", D.REQUEST_CHANGES, "round to 5")
    assert status_of(world, rid) is S.CHANGES_REQUESTED
    world.write("tables/by_region.csv", b"region,count\nnorth,120\nsouth,85\n")
    assert submit(world, rid) is S.IN_REVIEW
    with world.uow() as s:
        detail = request_detail(s, get_user(s, "admin"), world.env, rid)
    files = {f.path: f for f in detail.file_list}
    assert files["analysis.ipynb"].outcome is D.APPROVE and len(files["analysis.ipynb"].votes) == 2
    assert files["tables/by_region.csv"].votes == [] and files["tables/by_region.csv"].outcome is None
    with world.uow() as s:
        for reviewer in ("ria", "rob"):
            review.vote(s, get_user(s, reviewer), world.env, rid, "tables/by_region.csv", D.APPROVE, "now rounded")
    assert status_of(world, rid) is S.APPROVED


def test_checks_hard_fail_returns_request_unless_exception(world: World) -> None:
    # A real table with a cell of 3 people: the real checker fails it.
    rid = draft(world, files={"small.csv": b"region,count\nnorth,3\nsouth,85\n"})
    assert submit(world, rid) is S.CHANGES_REQUESTED
    with world.uow() as s:
        shown = request_detail(s, get_user(s, "rita"), world.env, rid)
    assert shown.file_list[0].check_status == "fail"
    assert any(f["status"] == "fail" for f in shown.file_list[0].findings)
    assert submit(world, rid, exception="3 is a count of hospitals, not people") is S.IN_REVIEW
    with world.uow() as s:
        seen = request_detail(s, get_user(s, "ria"), world.env, rid)
    assert seen.exception_justification == "3 is a count of hospitals, not people"
    assert seen.file_list[0].check_status == "fail"


def test_submit_needs_context_and_controls(world: World) -> None:
    rid = draft(world, context="", controls="")
    with pytest.raises(InvalidInput, match="group main has no context and no controls"):
        submit(world, rid)
    with world.uow() as s:
        egress.set_group(s, get_user(s, "rita"), world.env, rid, "main", context="counts by region")
    with pytest.raises(InvalidInput, match="group main has no controls"):
        submit(world, rid)
    assert status_of(world, rid) is S.DRAFT
    empty = draft(world, files={})
    with pytest.raises(InvalidInput, match="has no files"):
        submit(world, empty)


def test_create_needs_membership_and_active_project(world: World) -> None:
    with world.uow() as s, pytest.raises(PermissionDenied, match="not a member of project heart-study"):
        egress.create_request(s, get_user(s, "outsider"), world.env, world.slug)
    with world.uow() as s, pytest.raises(PermissionDenied, match="needs the researcher role"):
        egress.create_request(s, get_user(s, "ria"), world.env, world.slug)
    from enclave.projects import service as projects
    from enclave.projects.lifecycle import ProjectAction

    with world.uow() as s:
        projects.transition_project(s, get_user(s, "admin"), world.slug, ProjectAction.SUSPEND, "audit")
    with world.uow() as s, pytest.raises(InvalidTransition, match="egress needs an active project"):
        egress.create_request(s, get_user(s, "rita"), world.env, world.slug)


def test_released_request_is_immutable(world: World) -> None:
    rid = to_state(world, S.RELEASED)
    world.write("extra.csv", b"a,b\n1,2\n")
    attempts = [
        lambda s: egress.add_files(s, get_user(s, "rita"), world.env, rid, ["extra.csv"], "main"),
        lambda s: egress.set_group(s, get_user(s, "rita"), world.env, rid, "main", context="changed"),
        lambda s: egress.remove_file(s, get_user(s, "rita"), world.env, rid, "analysis.ipynb"),
        lambda s: egress.submit_request(s, get_user(s, "rita"), world.env, rid),
        lambda s: egress.withdraw_request(s, get_user(s, "rita"), world.env, rid),
        lambda s: review.vote(s, get_user(s, "rex"), world.env, rid, "analysis.ipynb", D.REJECT, "late"),
        lambda s: release_service.release_request(s, get_user(s, "rob"), world.env, rid),
    ]
    for attempt in attempts:
        with world.uow() as s, pytest.raises(EnclaveError):
            attempt(s)
    with world.uow() as s:
        request: EgressRequest = egress.get_request(s, rid)
        assert request.status is S.RELEASED and len(request.files) == 2


def test_visibility_reviewers_see_submitted_requests_outsiders_none(world: World) -> None:
    drafted = draft(world)
    submitted = to_state(world, S.IN_REVIEW)
    with world.uow() as s:
        seen = {name: [r.id for r in egress.list_requests(s, get_user(s, name))]
                for name in ("rita", "max", "ria", "admin", "outsider")}
        with pytest.raises(PermissionDenied, match="still a draft"):
            egress.view_request(s, get_user(s, "ria"), drafted)
        with pytest.raises(PermissionDenied, match="not in project heart-study"):
            egress.view_request(s, get_user(s, "outsider"), submitted)
    assert seen == {"rita": [drafted, submitted], "max": [drafted, submitted], "ria": [submitted],
                    "admin": [drafted, submitted], "outsider": []}


def test_reviewer_sees_the_projects_earlier_requests_and_released_files(world: World) -> None:
    earlier = to_state(world, S.RELEASED)
    current = to_state(world, S.IN_REVIEW)
    with world.uow() as s:
        detail = request_detail(s, get_user(s, "rex"), world.env, current)
    history = {h.id: h for h in detail.project_history}
    assert earlier in history and history[earlier].status is S.RELEASED
    assert {f["path"] for f in history[earlier].files} == {"tables/by_region.csv", "analysis.ipynb"}
    assert all(f["sha256"] for f in history[earlier].files)


def test_review_queue_lists_what_a_reviewer_may_still_review(world: World) -> None:
    rid = to_state(world, S.IN_REVIEW)
    to_state(world, S.DRAFT)
    with world.uow() as s:
        assert [r.id for r in queues.review_queue(s, get_user(s, "ria"))] == [rid]
        assert queues.review_queue(s, get_user(s, "rhea")) == []  # a member of the project
    vote_all(world, rid, "ria")
    with world.uow() as s:
        assert queues.review_queue(s, get_user(s, "ria")) == []
        assert [r.id for r in queues.review_queue(s, get_user(s, "rob"))] == [rid]
        with pytest.raises(PermissionDenied, match="needs the reviewer role"):
            queues.review_queue(s, get_user(s, "rita"))
