"""Every lifecycle move from every status by every role: allowed exactly when the table says."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from enclave.audit import list_events, verify_chain
from enclave.clock import today
from enclave.enums import ProjectStatus, Role
from enclave.errors import InvalidInput, InvalidTransition, PermissionDenied
from enclave.projects import service
from enclave.projects.lifecycle import TRANSITIONS, ProjectAction, transition_for

ROLES = [Role.ADMIN, Role.REVIEWER, Role.RESEARCHER]
CASES = list(itertools.product(ProjectStatus, ProjectAction, ROLES))


def _reach(factory, status: ProjectStatus):
    if status is ProjectStatus.REJECTED:
        project = factory.project("study", pi="pi")
        service.transition_project(factory.session, factory.admin, "study", ProjectAction.REJECT, reason="no")
        return project
    return factory.project("study", pi="pi", status=status.value)


@pytest.mark.parametrize(("status", "action", "role"), CASES, ids=[f"{s}-{a}-{r}" for s, a, r in CASES])
def test_transition_allowed_only_by_table_and_role(factory, status, action, role):
    _reach(factory, status)
    actor = factory.user("actor", role)
    move = transition_for(status, action)
    before = len(list(list_events(factory.session, project="study")))
    if move is None:
        with pytest.raises(InvalidTransition, match=f"is {status.value}"):
            service.transition_project(factory.session, actor, "study", action, reason="because")
    elif role not in move.roles:
        with pytest.raises(PermissionDenied, match="needs the admin role"):
            service.transition_project(factory.session, actor, "study", action, reason="because")
    else:
        project = service.transition_project(factory.session, actor, "study", action, reason="because")
        assert project.status is move.target
        events = list(list_events(factory.session, project="study"))
        assert len(events) == before + 1
        assert events[-1].details["to"] == move.target.value and events[-1].actor == "actor"
        return
    assert service.get_project(factory.session, "study").status is status
    assert len(list(list_events(factory.session, project="study"))) == before


def test_transition_table_reaches_every_status():
    reached = {ProjectStatus.PROPOSED} | {t.target for t in TRANSITIONS}
    assert reached == set(ProjectStatus)


def test_approve_refused_for_admin_who_is_member(factory):
    factory.user("dual", Role.ADMIN, Role.RESEARCHER)
    factory.project("study", pi="pi", members=("dual",))
    with pytest.raises(PermissionDenied, match="separation of duties"):
        service.transition_project(factory.session, factory.get("dual"), "study", ProjectAction.APPROVE)
    # Another admin who is not a member may.
    other = factory.user("other-admin", Role.ADMIN)
    assert service.transition_project(factory.session, other, "study", ProjectAction.APPROVE).status is ProjectStatus.APPROVED


def test_approve_refused_for_admin_who_is_pi(factory):
    factory.user("pi-admin", Role.ADMIN, Role.RESEARCHER)
    factory.project("study", pi="pi-admin")
    with pytest.raises(PermissionDenied, match="member of project study"):
        service.transition_project(factory.session, factory.get("pi-admin"), "study", ProjectAction.APPROVE)


@pytest.mark.parametrize("action", [ProjectAction.SUSPEND, ProjectAction.REJECT])
def test_transition_needs_reason(factory, action):
    factory.project("study", pi="pi", status="active" if action is ProjectAction.SUSPEND else "proposed")
    with pytest.raises(InvalidInput, match="--reason"):
        service.transition_project(factory.session, factory.admin, "study", action, reason="  ")


def test_add_member_refused_when_training_expired(factory):
    factory.project("study", pi="pi", status="active")
    factory.user("lapsed", Role.RESEARCHER, training=today() - dt.timedelta(days=1))
    with pytest.raises(PermissionDenied, match="training expired"):
        service.add_member(factory.session, factory.admin, "study", "lapsed")
    assert "lapsed" not in service.get_project(factory.session, "study").member_names


def test_add_member_refused_when_training_unknown(factory):
    from enclave.users import add_user

    factory.project("study", pi="pi", status="active")
    add_user(factory.session, factory.admin, "unknown-training", {Role.RESEARCHER}, None)
    with pytest.raises(PermissionDenied, match="not recorded"):
        service.add_member(factory.session, factory.admin, "study", "unknown-training")


def test_add_member_refused_for_non_admin_and_reviewer(factory):
    factory.project("study", pi="pi", status="active")
    factory.user("rev", Role.REVIEWER)
    with pytest.raises(PermissionDenied):
        service.add_member(factory.session, factory.get("pi"), "study", "rev")
    with pytest.raises(PermissionDenied, match="researcher role"):
        service.add_member(factory.session, factory.admin, "study", "rev")


def test_project_lifecycle_audit_chain_verifies(factory):
    factory.project("study", pi="pi", status="closed", members=("m1",))
    report = verify_chain(factory.session)
    assert report.ok and report.checked >= 6


def test_list_projects_researcher_sees_only_own(factory):
    factory.project("mine", pi="alice")
    factory.project("theirs", pi="bob")
    assert [p.slug for p in service.list_projects(factory.session, factory.get("alice"))] == ["mine"]
    assert {p.slug for p in service.list_projects(factory.session, factory.admin)} == {"mine", "theirs"}
    with pytest.raises(PermissionDenied):
        service.check_can_view(factory.get("alice"), service.get_project(factory.session, "theirs"))
