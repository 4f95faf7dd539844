"""The egress state machine as data: every from x to x role, owners, review arithmetic."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enclave.egress.policy import EgressPolicy
from enclave.egress.review import file_outcome, request_outcome
from enclave.egress.workflow import FINAL, OWNERS, TRANSITIONS, EgressAction, Owner, transition
from enclave.enums import EgressStatus as S
from enclave.enums import ReviewDecision as D
from enclave.errors import InvalidTransition, PermissionDenied, PolicyError
from enclave.policy import load_policy_file

ALLOWED = {
    (S.DRAFT, S.SUBMITTED, Owner.RESEARCHER),
    (S.DRAFT, S.WITHDRAWN, Owner.RESEARCHER),
    (S.SUBMITTED, S.IN_REVIEW, Owner.SYSTEM),
    (S.SUBMITTED, S.CHANGES_REQUESTED, Owner.SYSTEM),
    (S.IN_REVIEW, S.APPROVED, Owner.REVIEWER),
    (S.IN_REVIEW, S.CHANGES_REQUESTED, Owner.REVIEWER),
    (S.IN_REVIEW, S.REJECTED, Owner.REVIEWER),
    (S.IN_REVIEW, S.WITHDRAWN, Owner.RESEARCHER),          # the author may withdraw a request in review
    (S.CHANGES_REQUESTED, S.SUBMITTED, Owner.RESEARCHER),
    (S.CHANGES_REQUESTED, S.WITHDRAWN, Owner.RESEARCHER),
    (S.APPROVED, S.RELEASED, Owner.SYSTEM),
}
REPO_POLICIES = Path(__file__).resolve().parents[3] / "policies"


@pytest.mark.parametrize(("source", "target", "by"), list(itertools.product(S, S, Owner)),
                         ids=lambda v: str(v))
def test_workflow_every_transition_by_every_role(source: S, target: S, by: Owner) -> None:
    if (source, target, by) in ALLOWED:
        step = transition(source, target, by)
        assert (step.source, step.target, step.by) == (source, target, by)
    elif any((source, target, other) in ALLOWED for other in Owner):
        with pytest.raises(PermissionDenied, match=f"from {source.value} to {target.value}"):
            transition(source, target, by)
    else:
        with pytest.raises(InvalidTransition, match=f"cannot become {target.value}"):
            transition(source, target, by)


def test_workflow_table_is_the_specified_one() -> None:
    assert {(t.source, t.target, t.by) for t in TRANSITIONS} == ALLOWED


def test_workflow_every_status_has_an_owner_entry_and_only_owners_move() -> None:
    assert set(OWNERS) == set(S)
    assert FINAL == {S.REJECTED, S.RELEASED, S.WITHDRAWN}
    for t in TRANSITIONS:
        # Every move is its source's owner's, except the author's right to withdraw.
        assert OWNERS[t.source] is t.by or t.action is EgressAction.WITHDRAW, f"{t.source} is moved by {t.by}"
    for status in FINAL:
        assert not [t for t in TRANSITIONS if t.source is status], "a final status must have no way out"
    for status in set(S) - FINAL:
        assert OWNERS[status] is not None


@pytest.mark.parametrize(("votes", "required", "expected"), [
    ([], 2, None),
    ([D.APPROVE], 2, None),
    ([D.APPROVE, D.APPROVE], 2, D.APPROVE),
    ([D.REJECT, D.REJECT], 2, D.REJECT),
    ([D.APPROVE, D.REJECT], 2, None),                      # disagreement: a further reviewer is needed
    ([D.APPROVE, D.REJECT, D.APPROVE], 2, D.APPROVE),       # ... whose vote makes a majority
    ([D.APPROVE, D.REJECT, D.REQUEST_CHANGES], 2, None),    # no majority yet
    ([D.APPROVE, D.APPROVE, D.APPROVE], 3, D.APPROVE),
    ([D.APPROVE, D.APPROVE], 3, None),
])
def test_review_file_outcome(votes: list[D], required: int, expected: D | None) -> None:
    assert file_outcome(votes, required) is expected


def test_review_request_outcome() -> None:
    assert request_outcome([]) is None
    assert request_outcome([D.APPROVE, None]) is None
    assert request_outcome([D.APPROVE, D.APPROVE]) is S.APPROVED
    assert request_outcome([D.APPROVE, D.REQUEST_CHANGES, D.REJECT]) is S.CHANGES_REQUESTED
    assert request_outcome([D.APPROVE, D.REJECT]) is S.REJECTED


def test_egress_policy_file_loads_and_unknown_keys_fail(tmp_path: Path) -> None:
    policy = load_policy_file(REPO_POLICIES / "egress.yaml", EgressPolicy)
    assert policy.reviews.required_for("tier3") == 3
    assert policy.reviews.required_for("unlisted-tier") == policy.reviews.default == 2
    bad = tmp_path / "egress.yaml"
    bad.write_text("reviews:\n  defualt: 2\n")
    with pytest.raises(PolicyError, match="reviews.defualt: unknown key"):
        load_policy_file(bad, EgressPolicy)
    bad.write_text("notifiers:\n  - kind: pigeon\n")
    with pytest.raises(PolicyError, match="notifiers"):
        load_policy_file(bad, EgressPolicy)


@given(st.lists(st.sampled_from(list(D)), max_size=7), st.integers(min_value=1, max_value=4))
def test_review_file_outcome_properties(votes: list[D], required: int) -> None:
    outcome = file_outcome(votes, required)
    if len(votes) < required:
        assert outcome is None  # never decided by fewer reviewers than the policy asks
    elif len(set(votes)) == 1:
        assert outcome is votes[0]  # agreement decides
    if outcome is not None:
        assert 2 * votes.count(outcome) > len(votes)  # a decision always has a strict majority
        if len(set(votes)) > 1:
            assert len(votes) > required  # disagreement needs a further reviewer
