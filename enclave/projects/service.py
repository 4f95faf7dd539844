"""Project service: applications, lifecycle moves and members."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from enclave.audit import AuditAction, append_event
from enclave.clock import today
from enclave.db.models import Membership, Project, User
from enclave.enums import ProjectStatus, Role
from enclave.errors import Conflict, InvalidInput, InvalidTransition, NotFound, PermissionDenied
from enclave.permissions import check_admin, check_not_member, check_role, is_member
from enclave.projects.lifecycle import FINAL, ProjectAction, actions_from, transition_for
from enclave.projects.tiers import TierPolicy
from enclave.register.details import (
    FIELD_WORDS,
    RegisterChanges,
    RegisterDetails,
    RegisterField,
    missing_columns,
    missing_fields,
    option_of,
)
from enclave.register.policy import RegisterPolicy
from enclave.users import get_user

SLUG_RE = re.compile(r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$")


def get_project(session: Session, slug: str) -> Project:
    project = session.scalars(select(Project).where(Project.slug == slug)).one_or_none()
    if project is None:
        raise NotFound(f"no project {slug!r}: see 'enclave project list'", field="project",
                       web=f"there is no project {slug!r}")
    return project


def create_project(
    session: Session,
    actor: User,
    tiers: TierPolicy,
    *,
    slug: str,
    title: str,
    pi: str,
    lay_summary: str,
    end_date: dt.date,
    start_date: dt.date | None = None,
    purpose: str = "",
    lawful_basis: str = "",
    organisation: str = "",
    tier: str | None = None,
    register: RegisterDetails | None = None,
) -> Project:
    """Apply for a project (status proposed); the PI becomes its first member.

    ``register`` holds what the public register publishes (public benefit, lawful basis,
    data controller, contact); without it the register says "not stated"."""
    check_role(actor, {Role.RESEARCHER, Role.ADMIN}, "propose projects")
    if not SLUG_RE.match(slug or ""):
        raise InvalidInput(
            f"project slug {slug!r} is not allowed: use 3-40 lower-case letters, digits and '-', starting with a letter",
            field="slug",
        )
    if not title.strip():
        raise InvalidInput("give the project a title with --title", field="title", web="give the project a title")
    if not lay_summary.strip():
        raise InvalidInput("give a lay summary with --lay-summary: the public register shows it", field="lay_summary",
                           web="give a lay summary: the public register shows it")
    if end_date <= today():
        raise InvalidInput(f"the end date {end_date} is in the past: give a future date", field="end_date")
    start = start_date or today()
    if end_date <= start:
        raise InvalidInput(f"the end date {end_date} must be after the start date {start}", field="end_date")
    tier = tier or tiers.default_tier
    if tier not in tiers.tiers:
        raise InvalidInput(f"unknown tier {tier!r}: choose one of {', '.join(sorted(tiers.tiers))}")
    if session.scalars(select(Project.id).where(Project.slug == slug)).first() is not None:
        raise Conflict(f"a project {slug!r} already exists: choose another slug", field="slug",
                       web=f"a project {slug!r} already exists: choose another short name")
    pi_user = get_user(session, pi)
    check_role(pi_user, {Role.RESEARCHER}, "lead a project")
    _check_can_join(pi_user)
    project = Project(
        slug=slug, title=title.strip(), lay_summary=lay_summary.strip(), purpose=purpose, lawful_basis=lawful_basis,
        organisation=organisation, start_date=start, end_date=end_date, tier=tier, pi=pi_user,
        created_by_id=actor.id, status=ProjectStatus.PROPOSED, **(register.model_dump() if register else {}),
    )
    project.memberships.append(Membership(user=pi_user, added_by_id=actor.id))
    session.add(project)
    session.flush()
    append_event(session, actor, AuditAction.PROJECT_CREATE, project=project, target=f"project:{slug}",
                 details={"title": project.title, "pi": pi, "tier": tier, "end_date": end_date,
                          "register": register.model_dump(mode="json") if register else None})
    return project


def transition_project(
    session: Session, actor: User, slug: str, action: ProjectAction, reason: str | None = None,
    *, register_policy: RegisterPolicy | None = None,
) -> Project:
    """Move a project through its lifecycle, if the table of transitions allows it.

    Approval also needs the register fields the site requires (``register_policy``'s
    ``required_at_approval``; without a policy, all of them): the register lists every
    approved project, and never one without its public-interest statement."""
    project = get_project(session, slug)
    move = transition_for(project.status, action)
    if move is None:
        allowed = ", ".join(a.value for a in actions_from(project.status)) or "nothing (it is final)"
        raise InvalidTransition(
            f"project {slug} is {project.status.value}: it cannot be {_past(action)}; allowed now: {allowed}"
        )
    check_role(actor, move.roles, f"{action.value} projects")
    if move.forbids_members:
        check_not_member(actor, project, f"{action.value} project {slug}")
    if move.needs_reason and not (reason or "").strip():
        raise InvalidInput(f"say why with --reason: {action.value} needs a reason, which is recorded", field="reason",
                           web=f"give a reason: {action.value} needs a reason, which is recorded")
    if move.target is ProjectStatus.APPROVED:
        check_register_complete(project, register_policy)
    old = project.status
    project.status = move.target
    project.status_reason = reason.strip() if reason else None
    append_event(session, actor, AuditAction.PROJECT_TRANSITION, project=project, target=f"project:{slug}",
                 details={"action": action, "from": old, "to": move.target, "reason": project.status_reason})
    session.flush()
    return project


def required_at_approval(policy: RegisterPolicy | None) -> list[RegisterField]:
    """The register fields approval needs: the site's policy, or all of them."""
    return list(policy.required_at_approval) if policy is not None else list(RegisterField)


def check_register_complete(project: Project, policy: RegisterPolicy | None) -> None:
    """Raise InvalidTransition naming the register fields ``project`` still lacks for approval."""
    fields = missing_fields(project, required_at_approval(policy))
    if not fields:
        return
    words = _and([FIELD_WORDS[f] for f in fields])
    is_, them = ("is", "it") if len(fields) == 1 else ("are", "them")
    options = " ".join(f"{option_of(c)} ..." for c in missing_columns(project, fields))
    raise InvalidTransition(
        f"project {project.slug} cannot be approved: the public register needs its {words}, which {is_} missing; "
        f"add {them} with 'enclave project register-details {project.slug} {options}', then approve it",
        web=f"this project cannot be approved yet: the public register needs its {words}, which {is_} missing; "
            f"add {them} in the register details form on the project's page, then approve it")


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def amend_register(session: Session, actor: User, slug: str, changes: RegisterChanges) -> Project:
    """Add or change the register details of a proposed project (its PI, whoever proposed
    it, or an admin): what the public register will publish once it is approved. An
    approved project's entry is what the admin approved, so it changes no more here."""
    project = get_project(session, slug)
    if not (actor.has_role(Role.ADMIN) or actor.id in (project.pi_id, project.created_by_id)):
        raise PermissionDenied(f"{actor.name} may not change the register details of {slug}: only its PI, "
                               "whoever proposed it, or an admin may")
    if project.status is not ProjectStatus.PROPOSED:
        raise InvalidTransition(f"project {slug} is {project.status.value}: its register details are fixed once "
                                "it is decided; only a proposed project's may change")
    given = changes.given()
    changed = {k: v for k, v in given.items() if getattr(project, k) != v}
    if not changed:
        raise InvalidInput(f"the register details of {slug} already say that: nothing to change")
    for column, value in changed.items():
        setattr(project, column, value)
    session.flush()
    append_event(session, actor, AuditAction.PROJECT_REGISTER, project=project, target=f"project:{slug}",
                 details={"changed": changes.model_dump(mode="json", include=set(changed))})
    return project


def _past(action: ProjectAction) -> str:
    return {"approve": "approved", "reject": "rejected", "activate": "activated",
            "suspend": "suspended", "close": "closed"}[action.value]


def _check_can_join(user: User) -> None:
    if not user.training_valid_on(today()):
        when = f"expired on {user.training_expires}" if user.training_expires else "is not recorded"
        raise PermissionDenied(
            f"{user.name}'s training {when}: record current training with "
            f"'enclave user training {user.name} --expires YYYY-MM-DD' first"
        )


def add_member(session: Session, actor: User, slug: str, name: str) -> Membership:
    """Add a researcher to a project (admins only; training must be current)."""
    check_admin(actor, "add project members")
    project = get_project(session, slug)
    if project.status in FINAL:
        raise InvalidTransition(f"project {slug} is {project.status.value}: it takes no new members")
    user = get_user(session, name)
    check_role(user, {Role.RESEARCHER}, "join a project")
    if is_member(user, project):
        raise Conflict(f"{name} is already a member of {slug}", field="user")
    _check_can_join(user)
    membership = Membership(user=user, added_by_id=actor.id)
    project.memberships.append(membership)
    session.flush()
    append_event(session, actor, AuditAction.MEMBER_ADD, project=project, target=f"user:{name}")
    return membership


def remove_member(session: Session, actor: User, slug: str, name: str) -> None:
    """Remove a member (admins only); the PI stays while the project is open."""
    check_admin(actor, "remove project members")
    project = get_project(session, slug)
    user = get_user(session, name)
    membership = next((m for m in project.memberships if m.user_id == user.id), None)
    if membership is None:
        raise NotFound(f"{name} is not a member of {slug}")
    if user.id == project.pi_id:
        raise InvalidInput(f"{name} is the principal investigator of {slug}: a project keeps its PI")
    project.memberships.remove(membership)
    session.flush()
    append_event(session, actor, AuditAction.MEMBER_REMOVE, project=project, target=f"user:{name}")


def list_projects(session: Session, actor: User) -> list[Project]:
    """Admins and reviewers see every project; researchers see their own."""
    projects = list(session.scalars(select(Project).order_by(Project.slug)))
    if actor.roles & {Role.ADMIN, Role.REVIEWER}:
        return projects
    return [p for p in projects if is_member(actor, p)]


def projects_of(session: Session, user: User, status: ProjectStatus | None = None) -> list[Project]:
    """The projects where ``user`` is a member (optionally in one status)."""
    query = select(Project).join(Membership).where(Membership.user_id == user.id).order_by(Project.slug)
    if status is not None:
        query = query.where(Project.status == status)
    return list(session.scalars(query).unique())


def check_can_view(actor: User, project: Project) -> None:
    """Admins and reviewers see every project; researchers only their own."""
    if actor.roles & {Role.ADMIN, Role.REVIEWER} or is_member(actor, project):
        return
    raise PermissionDenied(f"{actor.name} may not see project {project.slug}: they are not a member")
